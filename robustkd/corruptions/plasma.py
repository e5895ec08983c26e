"""The diamond-square plasma fractal behind the ``fog`` corruption (ImageNet-C's ``plasma_fractal``)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

UniformSource = Callable[[tuple[int, ...], float], Tensor]
"""``uniform(shape, bound)`` -> float64 draws from U(-bound, bound) of ``shape`` (batch dimensions first)."""


def plasma_draw_count(mapsize: int) -> int:
    """How many U(-1, 1) draws one map consumes: per scale, a square and two diamond steps."""
    count, step = 0, mapsize
    while step >= 2:
        count += 3 * (mapsize // step) ** 2
        step //= 2
    return count


def replay_uniform(unit_draws: Tensor) -> UniformSource:
    """A source that hands out given U(-1, 1) draws (B, plasma_draw_count) in order, scaled by ``bound``."""
    position = 0

    def draw(shape: tuple[int, ...], bound: float) -> Tensor:
        nonlocal position
        size = shape[-2] * shape[-1]
        values = unit_draws[:, position:position + size].reshape(len(unit_draws), *shape[-2:])
        position += size
        return values * bound
    return draw


def plasma_fractal(mapsize: int, wibble_decay: float, uniform: UniformSource) -> Tensor:
    """(B, mapsize, mapsize) float64 height maps in [0, 1], on the device of ``uniform``'s draws; ``mapsize``
    a power of two.

    Same steps and draw order as the reference: per scale, a square step and two diamond steps, each
    adding ``wibble * U(-wibble, wibble)`` (wibble starts at 100 and is divided by ``wibble_decay``).
    The batch size is read from the first draw.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"plasma mapsize must be a power of two, got {mapsize}")
    grid: Tensor | None = None
    step = mapsize
    wibble = 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        return total / 4 + wibble * uniform(tuple(total.shape), wibble)

    while step >= 2:
        half = step // 2
        if grid is None:
            # The first square step averages four zero corners: only the draw remains. Its batch size and
            # device are the draws', so nothing here is made on a fixed device.
            first = wibble * uniform((1, 1, 1), wibble)
            grid = torch.zeros(first.shape[0], mapsize, mapsize, dtype=first.dtype, device=first.device)
            grid[:, half::step, half::step] = first
        else:
            corners = grid[:, 0::step, 0::step]
            square = corners + torch.roll(corners, shifts=-1, dims=1)
            square = square + torch.roll(square, shifts=-1, dims=2)
            grid[:, half::step, half::step] = wibbled_mean(square)
        centres = grid[:, half::step, half::step]
        corners = grid[:, 0::step, 0::step]
        left = (centres + torch.roll(centres, shifts=1, dims=1)) + (corners + torch.roll(corners, shifts=-1, dims=2))
        grid[:, 0::step, half::step] = wibbled_mean(left)
        top = (centres + torch.roll(centres, shifts=1, dims=2)) + (corners + torch.roll(corners, shifts=-1, dims=1))
        grid[:, half::step, 0::step] = wibbled_mean(top)
        step //= 2
        wibble /= wibble_decay

    flat = grid.flatten(1)
    flat = flat - flat.min(1, keepdim=True).values
    return (flat / flat.max(1, keepdim=True).values).view_as(grid)
