"""Batched training augmentation on the batch's own device.

``random_crop_flip`` is equivalent in distribution to torchvision's ``RandomCrop(32, padding=4)`` followed
by ``RandomHorizontalFlip()``: each image gets an independent offset uniform over the 9 x 9 positions of
the zero-padded image and an independent fair flip. Deterministic for a given ``torch.Generator``.
"""

from __future__ import annotations

import torch


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Crop (N, C, H, W) ``images`` back to H x W from a zero-padded copy at random offsets, then flip half.

    Random numbers are drawn on ``generator``'s device; works for uint8 and float tensors alike.
    """
    n, _, height, width = images.shape
    device = images.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=generator.device).to(device)
    flips = torch.rand(n, generator=generator, device=generator.device).to(device) < 0.5
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    rows = offsets[0, :, None] + torch.arange(height, device=device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(width, device=device)  # (N, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch_index = torch.arange(n, device=device)[:, None, None]
    # Advanced indexing on (N, H', W', C) gathers every crop at once.
    cropped = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2)


def add_gaussian_noise(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``images + N(0, sigma^2)`` in input space ([0, 1] units), not clipped, as in Cohen et al. (2019)."""
    if sigma <= 0:
        return images
    noise = torch.randn(images.shape, generator=generator, device=generator.device, dtype=images.dtype)
    return images + sigma * noise.to(images.device)
