"""Ranks of each row of a (B, C) tensor: exact (average ranks for ties, as scipy) and differentiable.

Differentiable ranks use the pairwise-sigmoid relaxation

    soft_rank(x)_i = 1 + sum_{j != i} sigmoid((x_i - x_j) / strength)

computed on the z-scored row (so ``strength`` is in units of the row's standard deviation and the ranks do
not depend on the logits' offset or scale). As ``strength -> 0`` it tends to the exact ranks 1..C, with tied
entries getting their average rank (sigmoid(0) = 1/2) as in ``scipy.stats.rankdata``. It is pure torch, runs
on any device, and its forward and backward are computed in batch chunks with an analytic gradient, so
memory stays O(chunk x C^2) instead of keeping a (B, C, C) graph: for C=1000 a 128-sample batch would
otherwise hold 0.5 GB per activation. ``torchsort.soft_rank`` (Blondel et al. 2020, O(C log C)) is an
optional accelerator with a different regularisation (its ``regularization_strength``).
"""

from __future__ import annotations

import torch

ZSCORE_EPS = 1e-12  # added to the variance: constant rows map to zeros with finite gradients
_CHUNK_ELEMENTS = 1 << 24  # pairwise entries per chunk (64 MB in float32)


def zscore_rows(x: torch.Tensor, eps: float = ZSCORE_EPS) -> torch.Tensor:
    """(B, C) -> rows with mean 0 and standard deviation 1 (a constant row becomes all zeros)."""
    centred = x - x.mean(dim=1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(dim=1, keepdim=True) + eps)


def _rows_per_chunk(width: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(width * width, 1))


@torch.no_grad()
def exact_rank(x: torch.Tensor) -> torch.Tensor:
    """(B, C) -> float ranks in [1, C] per row (float32, or float64 for float64 input); ties get their average
    rank. O(C log C) per row.

    For each entry, the sorted row holds ``left`` smaller entries and ``right - left`` equal ones, so its
    average rank is ``(left + 1 + right) / 2``.
    """
    ordered = x.sort(dim=1).values.contiguous()
    values = x.contiguous()
    left = torch.searchsorted(ordered, values, right=False)
    right = torch.searchsorted(ordered, values, right=True)
    # float32 at least: bf16 / fp16 cannot hold every rank above 256 / 2048 classes exactly
    wide = torch.promote_types(x.dtype, torch.float32) if x.is_floating_point() else torch.float32
    return (left + right + 1).to(wide) / 2.0


class _PairwiseSoftRank(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        scaled = x / strength  # scale the (B, C) input once, not the (B, C, C) differences
        ctx.save_for_backward(scaled)
        ctx.strength = strength
        ranks = torch.empty_like(x)
        step = _rows_per_chunk(x.shape[1])
        for start in range(0, x.shape[0], step):
            block = scaled[start : start + step]
            pairwise = torch.sigmoid(block[:, :, None] - block[:, None, :])
            ranks[start : start + step] = pairwise.sum(dim=2) + 0.5  # the j = i term contributes 1/2
        return ranks

    @staticmethod
    def backward(ctx, grad_ranks: torch.Tensor):
        (scaled,) = ctx.saved_tensors
        grad_x = torch.empty_like(scaled)
        step = _rows_per_chunk(scaled.shape[1])
        for start in range(0, scaled.shape[0], step):
            block, grad = scaled[start : start + step], grad_ranks[start : start + step]
            s = torch.sigmoid(block[:, :, None] - block[:, None, :])
            slope = torch.addcmul(s, s, s, value=-1.0)  # s (1 - s), symmetric in (i, j)
            # d r_i / d x_k = (delta_ik * sum_j slope_ij - slope_ik) / strength
            grad_x[start : start + step] = grad * slope.sum(dim=2) - torch.bmm(grad[:, None, :], slope).squeeze(1)
        return grad_x / ctx.strength, None


def soft_rank(x: torch.Tensor, strength: float = 0.1, backend: str = "sigmoid") -> torch.Tensor:
    """Differentiable ranks of each row of ``x`` (B, C), computed on z-scored rows (half inputs in float32).

    ``backend``: 'sigmoid' (pure torch, default) or 'torchsort' (needs the optional torchsort package).
    """
    if strength <= 0:
        raise ValueError(f"soft-rank strength must be positive, got {strength}")
    z = zscore_rows(x if x.dtype in (torch.float32, torch.float64) else x.float())
    if backend == "sigmoid":
        return _PairwiseSoftRank.apply(z, strength)
    if backend == "torchsort":
        try:
            import torchsort
        except ImportError:
            raise ImportError("backend 'torchsort' needs the torchsort package; use backend 'sigmoid'") from None
        return torchsort.soft_rank(z, regularization_strength=strength)
    raise ValueError(f"unknown soft-rank backend {backend!r}; expected 'sigmoid' or 'torchsort'")
