"""Pearson-correlation losses as in DIST (Huang et al. 2022) and its authors' code.

``pearson_rows(a, b)``: per-row Pearson correlation, computed as the cosine similarity of the mean-centred
rows with ``eps = 1e-8`` added to the product of norms (exactly the authors' formula, so a constant row gives
correlation 0 instead of NaN). Inter-class relation: rows are samples (correlation across classes);
intra-class relation: rows are classes (correlation across the batch).
"""

from __future__ import annotations

import torch

PEARSON_EPS = 1e-8


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = PEARSON_EPS) -> torch.Tensor:
    """(N, D), (N, D) -> (N,) Pearson correlation of each row pair."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_loss(p_student: torch.Tensor, p_teacher: torch.Tensor) -> torch.Tensor:
    """(B, C) each -> (B,) ``1 - pearson`` per sample across classes."""
    return 1.0 - pearson_rows(p_student, p_teacher)


def intra_class_loss(p_student: torch.Tensor, p_teacher: torch.Tensor) -> torch.Tensor:
    """(B, C) each -> scalar: mean over classes of ``1 - pearson`` across the batch."""
    return (1.0 - pearson_rows(p_student.t(), p_teacher.t())).mean()
