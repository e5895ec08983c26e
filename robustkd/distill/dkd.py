"""Decoupled knowledge distillation (Zhao et al., CVPR 2022): KD split into a target and a non-target term.

With ``p = softmax(z / T)`` of teacher and student, the target term (TCKD) is the KL divergence between the
binary distributions ``(p_target, 1 - p_target)``, and the non-target term (NCKD) the KL divergence between the
distributions over the other classes alone (the softmax of the logits with the target class removed):

    DKD = T^2 * (alpha * KL(b_t || b_s) + beta * KL(q_t || q_s)),   averaged over the batch,

and the student's loss is ``ce_weight * CE + warm-up(epoch) * DKD`` with a linear warm-up
``min(epoch / warmup_epochs, 1)`` (epochs counted from 1). The reference implementation's CIFAR-100 defaults
(mdistiller, resnet32x4 -> resnet8x4): CE weight 1, alpha 1, beta 8, T 4, a warm-up of 20 of its 240 epochs;
here the warm-up is that fraction of the run's own schedule (``dkd_warmup_fraction`` = 20 / 240), so a 30-epoch run
warms up over 2.5 epochs. Written from the paper's definition; checked against an independent numpy computation
in tests/test_distill_losses.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each ``T^2 *`` a KL divergence averaged over the batch; (B, C) logits, (B,) labels."""
    classes = student_logits.shape[1]
    # column j of "others" is class j, or j + 1 from the target on: each row without its target class, in class
    # order (a gather, not a boolean mask: static shapes, so a compiled step has no graph break here)
    columns = torch.arange(classes - 1, device=labels.device)
    others_index = columns + (columns[None, :] >= labels[:, None]).long()

    def log_distributions(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = logits / temperature
        total = torch.logsumexp(scaled, dim=1)
        others = scaled.gather(1, others_index)
        target = scaled.gather(1, labels[:, None]).squeeze(1)
        binary = torch.stack([target - total, torch.logsumexp(others, dim=1) - total], dim=1)
        return binary, F.log_softmax(others, dim=1)

    log_b_s, log_q_s = log_distributions(student_logits)
    log_b_t, log_q_t = log_distributions(teacher_logits)
    tckd = F.kl_div(log_b_s, log_b_t, reduction="batchmean", log_target=True)
    nckd = F.kl_div(log_q_s, log_q_t, reduction="batchmean", log_target=True)
    return tckd * temperature**2, nckd * temperature**2


def warmup_factor(epoch: int, epochs: int, fraction: float) -> float:
    """``min(epoch / (fraction * epochs), 1)`` for epoch 1..epochs (1 with no warm-up)."""
    length = fraction * epochs
    return 1.0 if length <= 0 else min(epoch / length, 1.0)
