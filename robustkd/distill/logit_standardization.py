"""Logit standardisation (Sun et al., CVPR 2024): the logits of teacher and student are each z-scored per sample
before the softmax of a logit-based distillation loss, so the student matches the teacher's logit *relations*
rather than their range (the temperature no longer has to be shared by both).

    standardize(z) = (z - mean(z)) / (std(z) + 1e-7)       per row, std with Bessel's correction

as the authors' code computes it. ``kd+ls``: ``ce_weight * CE + ls_weight * T^2 * KL(softmax(standardize(z_t) / T)
|| softmax(standardize(z_s) / T))`` with the authors' CIFAR-100 settings (their README's
``--logit-stand --base-temp 2 --kd-weight 9`` over mdistiller's KD config, CE weight 0.1): ``ls_temperature`` 2,
``ls_weight`` 9, CE weight 0.1. The cross-entropy term uses the raw logits.
"""

from __future__ import annotations

import torch


def standardize(logits: torch.Tensor) -> torch.Tensor:
    """(B, C) -> (B, C): each row minus its mean, over its (unbiased) standard deviation plus 1e-7."""
    return (logits - logits.mean(dim=1, keepdim=True)) / (logits.std(dim=1, keepdim=True) + 1e-7)
