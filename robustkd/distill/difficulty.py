"""Per-sample difficulty in [0, 1] from the teacher, used by CMKD to weight its two correlation terms.

- ``entropy``: entropy of softmax(z_t) divided by log C (0 = one-hot certain, 1 = uniform).
- ``true_prob``: 1 - the teacher's probability of the true class (0 = certain and right).
- ``none``: 1/2 for every sample (with any weighting, equal weights).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DIFFICULTY_MEASURES = ("entropy", "true_prob", "none")


def sample_difficulty(teacher_logits: torch.Tensor, labels: torch.Tensor, measure: str) -> torch.Tensor:
    """(B, C) teacher logits, (B,) labels -> (B,) difficulty in [0, 1], without gradient."""
    with torch.no_grad():
        if measure == "entropy":
            log_p = F.log_softmax(teacher_logits.float(), dim=1)
            entropy = -(log_p.exp() * log_p).sum(dim=1)
            return (entropy / math.log(teacher_logits.shape[1])).clamp(0.0, 1.0)
        if measure == "true_prob":
            p = F.softmax(teacher_logits.float(), dim=1)
            return (1.0 - p.gather(1, labels[:, None]).squeeze(1)).clamp(0.0, 1.0)
        if measure == "none":
            return torch.full((teacher_logits.shape[0],), 0.5, device=teacher_logits.device)
    raise ValueError(f"unknown difficulty measure {measure!r}; expected one of {', '.join(DIFFICULTY_MEASURES)}")
