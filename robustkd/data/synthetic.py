"""A small learnable synthetic dataset for tests: class-dependent coloured gratings plus noise.

Class ``k`` draws an oriented sinusoidal grating whose angle, frequency and colour depend on ``k``, with a
random phase, a random brightness/contrast, and Gaussian pixel noise, so a tiny CNN separates the classes
within seconds but not perfectly from a single pixel. Deterministic for a given seed.
"""

from __future__ import annotations

import math

import torch

from robustkd.data.dataset import ImageDataset

SYNTHETIC_MEAN = (0.5, 0.5, 0.5)
SYNTHETIC_STD = (0.25, 0.25, 0.25)


def make_synthetic(
    split: str, num_classes: int = 10, per_class: int | None = None, size: int = 32, seed: int = 0
) -> ImageDataset:
    """``per_class`` images of each class (default 100 train / 20 test), shape (N, 3, size, size) uint8."""
    per_class = per_class if per_class is not None else (100 if split == "train" else 20)
    generator = torch.Generator().manual_seed(seed * 2 + (0 if split == "train" else 1))
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    count = len(labels)

    angle = labels.float() * math.pi / num_classes
    frequency = 2.0 + (labels % 3).float()
    phase = torch.rand(count, generator=generator) * 2 * math.pi
    coords = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    projected = xx[None] * torch.cos(angle)[:, None, None] + yy[None] * torch.sin(angle)[:, None, None]
    grating = torch.sin(2 * math.pi * frequency[:, None, None] * projected + phase[:, None, None])

    hue = labels.float() / num_classes * 2 * math.pi
    colour = torch.stack([torch.cos(hue), torch.cos(hue - 2.094), torch.cos(hue + 2.094)], 1) * 0.5 + 0.5
    contrast = 0.25 + 0.15 * torch.rand(count, 1, 1, 1, generator=generator)
    brightness = 0.35 + 0.3 * torch.rand(count, 1, 1, 1, generator=generator)
    images = brightness + contrast * grating[:, None] * (0.4 + colour[:, :, None, None])
    images = images + 0.08 * torch.randn(images.shape, generator=generator)
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    classes = tuple(f"class_{index}" for index in range(num_classes))
    return ImageDataset("synthetic", split, pixels, labels, classes, SYNTHETIC_MEAN, SYNTHETIC_STD, f"synthetic(seed={seed})")
