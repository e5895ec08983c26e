"""CMKD: correlation matching on values (Pearson) and on class rankings (Spearman), weighted per sample.

For student logits z_s and teacher logits z_t (B, C), labels y, temperature tau:

    p_s = softmax(z_s / tau),  p_t = softmax(z_t / tau)
    P_i = 1 - pearson(p_s,i, p_t,i)                                  (values, across classes)
    S_i = 1 - pearson(softrank(zscore(z_s,i)), rank(z_t,i))           (rankings, across classes)
    d_i = difficulty(z_t,i, y_i) in [0, 1]     w_s,i = 2 d_i^k,  w_p,i = 2 (1 - d_i^k)   (rank_hard)
    L   = tau^2 * ( a_p * mean_i w_p,i P_i + a_s * mean_i w_s,i S_i + a_intra * I )

with I the DIST intra-class term on (p_s, p_t). ``value_hard`` swaps w_s and w_p; ``equal`` sets both to 1.
Ranks of z equal ranks of p (softmax is monotone), so the Spearman term needs no temperature.
"""

from __future__ import annotations

import torch

from robustkd.distill.correlation import inter_class_loss, intra_class_loss, pearson_rows
from robustkd.distill.difficulty import sample_difficulty
from robustkd.distill.soft_rank import exact_rank, soft_rank


def spearman_loss_rows(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, strength: float,
    backend: str = "sigmoid", teacher_ranks: str = "exact",
) -> torch.Tensor:
    """(B, C) each -> (B,) ``1 - pearson(soft ranks of the student, ranks of the teacher)`` per sample."""
    student = soft_rank(student_logits, strength, backend)
    with torch.no_grad():
        teacher = exact_rank(teacher_logits) if teacher_ranks == "exact" else soft_rank(teacher_logits, strength, backend)
    return 1.0 - pearson_rows(student, teacher.to(student.dtype))


def term_weights(difficulty: torch.Tensor, weighting: str, power: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) difficulty -> (w_pearson, w_spearman), each (B,), summing to 2 per sample."""
    if weighting == "equal":
        ones = torch.ones_like(difficulty)
        return ones, ones
    hard = difficulty.pow(power)
    if weighting == "rank_hard":
        return 2.0 * (1.0 - hard), 2.0 * hard
    if weighting == "value_hard":
        return 2.0 * hard, 2.0 * (1.0 - hard)
    raise ValueError(f"unknown weighting {weighting!r}")


def cmkd_losses(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *, tau: float,
    pearson_scale: float, spearman_scale: float, intra_scale: float, strength: float, backend: str,
    teacher_ranks: str, difficulty: str, weighting: str, power: float,
) -> dict[str, torch.Tensor]:
    """The named CMKD terms (already scaled by tau^2 and their coefficients, without the overall weight)."""
    p_student = (student_logits / tau).softmax(dim=1)
    p_teacher = (teacher_logits / tau).softmax(dim=1)
    w_pearson, w_spearman = term_weights(sample_difficulty(teacher_logits, labels, difficulty), weighting, power)
    losses = {}
    if pearson_scale > 0:
        losses["pearson"] = tau**2 * pearson_scale * (w_pearson * inter_class_loss(p_student, p_teacher)).mean()
    if spearman_scale > 0:
        spearman = spearman_loss_rows(student_logits, teacher_logits, strength, backend, teacher_ranks)
        losses["spearman"] = tau**2 * spearman_scale * (w_spearman * spearman).mean()
    if intra_scale > 0:
        losses["intra"] = tau**2 * intra_scale * intra_class_loss(p_student, p_teacher)
    return losses
