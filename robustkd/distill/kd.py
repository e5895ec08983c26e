"""Hinton knowledge distillation: ``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, averaged over the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, C) logits each -> scalar; the ``T^2`` factor keeps gradient magnitudes comparable across T."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2
