"""The diamond-square plasma fractal behind the ``fog`` corruption (ImageNet-C's ``plasma_fractal``)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

UniformSource = Callable[[tuple[int, ...], float], Tensor]
"""``uniform(shape, bound)`` -> float64 tensor of draws from U(-bound, bound)."""


def torch_uniform(generator: torch.Generator) -> UniformSource:
    def draw(shape: tuple[int, ...], bound: float) -> Tensor:
        return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    return draw


def plasma_fractal(mapsize: int, wibble_decay: float, uniform: UniformSource) -> Tensor:
    """A (mapsize, mapsize) float64 height map in [0, 1]; ``mapsize`` a power of two.

    Same steps and draw order as the reference: per scale, a square step and two diamond steps, each
    adding ``wibble * U(-wibble, wibble)`` (wibble starts at 100 and is divided by ``wibble_decay``).
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"plasma mapsize must be a power of two, got {mapsize}")
    grid = torch.zeros(mapsize, mapsize, dtype=torch.float64)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        return total / 4 + wibble * uniform(tuple(total.shape), wibble)

    while step >= 2:
        half = step // 2
        corners = grid[0:mapsize:step, 0:mapsize:step]
        square = corners + torch.roll(corners, shifts=-1, dims=0)
        square = square + torch.roll(square, shifts=-1, dims=1)
        grid[half:mapsize:step, half:mapsize:step] = wibbled_mean(square)

        centres = grid[half:mapsize:step, half:mapsize:step]
        corners = grid[0:mapsize:step, 0:mapsize:step]
        left = (centres + torch.roll(centres, shifts=1, dims=0)) + (corners + torch.roll(corners, shifts=-1, dims=1))
        grid[0:mapsize:step, half:mapsize:step] = wibbled_mean(left)
        top = (centres + torch.roll(centres, shifts=1, dims=1)) + (corners + torch.roll(corners, shifts=-1, dims=0))
        grid[half:mapsize:step, 0:mapsize:step] = wibbled_mean(top)
        step //= 2
        wibble /= wibble_decay

    grid -= grid.min()
    return grid / grid.max()
