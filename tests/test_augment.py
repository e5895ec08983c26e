"""Batched crop+flip equals torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip in distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from scipy.stats import chisquare

from robustkd.data.augment import add_gaussian_noise, random_crop_flip


def _coordinate_image() -> torch.Tensor:
    """Channel 0 holds row + 1, channel 1 column + 1, channel 2 ones: every crop reveals its offset."""
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    return torch.stack([rows + 1, cols + 1, torch.ones(32, 32)])


def _torchvision_outcomes(image: torch.Tensor) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every output torchvision's RandomCrop(32, padding=4) + flip can produce, keyed by (top, left, flip)."""
    padded = TF.pad(image, [4, 4, 4, 4], fill=0)
    outcomes = {}
    for top in range(9):
        for left in range(9):
            crop = TF.crop(padded, top, left, 32, 32)
            outcomes[(top, left, False)] = crop
            outcomes[(top, left, True)] = TF.hflip(crop)
    return outcomes


def _offset_and_flip(output: torch.Tensor) -> tuple[int, int, bool]:
    """(top, left, flip) read off the centre pixels, which no 4-pixel offset moves into the padding."""
    src_row, src_col = int(output[0, 16, 16]) - 1, int(output[1, 16, 16]) - 1
    flip = bool(output[1, 16, 17] < output[1, 16, 16])
    left = src_col - 31 + 16 + 4 if flip else src_col - 16 + 4
    return src_row - 16 + 4, left, flip


def test_every_output_is_a_torchvision_outcome_and_all_162_are_uniform() -> None:
    image = _coordinate_image()
    outcomes = _torchvision_outcomes(image)
    generator = torch.Generator().manual_seed(0)
    augmented = random_crop_flip(image.expand(16200, -1, -1, -1).contiguous(), generator)
    keys = [_offset_and_flip(output) for output in augmented]
    for output, key in zip(augmented[:300], keys[:300]):  # bit-exact against torchvision's own crop and flip
        assert torch.equal(output, outcomes[key])
    counts = np.array([keys.count(key) for key in outcomes])
    assert counts.sum() == 16200 and (counts > 0).all()
    assert chisquare(counts).pvalue > 1e-3  # uniform over the 9 x 9 offsets x 2 flips, as torchvision draws them


def test_deterministic_for_a_seed_and_works_on_uint8() -> None:
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    first = random_crop_flip(images, torch.Generator().manual_seed(7))
    second = random_crop_flip(images, torch.Generator().manual_seed(7))
    other = random_crop_flip(images, torch.Generator().manual_seed(8))
    assert first.dtype == torch.uint8 and first.shape == images.shape
    assert torch.equal(first, second) and not torch.equal(first, other)


def test_gaussian_noise_has_the_requested_sigma() -> None:
    images = torch.full((64, 3, 32, 32), 0.5)
    noisy = add_gaussian_noise(images, 0.25, torch.Generator().manual_seed(0))
    assert (noisy - images).std().item() == pytest.approx(0.25, rel=0.02)
    assert torch.equal(add_gaussian_noise(images, 0.0, torch.Generator()), images)
