"""How faithfully a student keeps its teacher's inter-class relations, from the two models' test logits.

Per sample (rows of (N, C) logits): Pearson, Spearman (Pearson of average-tie ranks) and Kendall tau-b
correlation between teacher and student logits over the classes; top-5 overlap (|top5_T & top5_S| / 5);
top-1 agreement; KL(teacher || student) at temperature 1. Over the test set: the C x C class-correlation
matrices (correlation of two classes' logits across samples) of teacher and student, and their distance
||R_T - R_S||_F / C. Kendall is computed here in torch (vectorised over samples, O(C^2) per sample) and
tested against scipy.stats.kendalltau.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from robustkd.distill.correlation import pearson_rows
from robustkd.distill.soft_rank import exact_rank


def spearman_rows(a: Tensor, b: Tensor) -> Tensor:
    return pearson_rows(exact_rank(a.double()), exact_rank(b.double()), eps=0.0)


def kendall_tau_b_rows(a: Tensor, b: Tensor, chunk: int = 256) -> Tensor:
    """(N, C), (N, C) -> (N,) Kendall tau-b per row pair (ties handled as in scipy's default)."""
    out = []
    for start in range(0, len(a), chunk):
        x, y = a[start:start + chunk].double(), b[start:start + chunk].double()
        sx = torch.sign(x.unsqueeze(2) - x.unsqueeze(1))
        sy = torch.sign(y.unsqueeze(2) - y.unsqueeze(1))
        upper = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device), diagonal=1)
        concordance = (sx * sy)[:, upper].sum(1)
        untied_x = (sx[:, upper] != 0).sum(1).double()
        untied_y = (sy[:, upper] != 0).sum(1).double()
        out.append(concordance / torch.sqrt(untied_x * untied_y))
    return torch.cat(out)


def class_correlation_matrix(logits: Tensor) -> Tensor:
    """(N, C) -> (C, C) Pearson correlation between classes' logits across the N samples."""
    return torch.corrcoef(logits.double().T)


@dataclass(frozen=True)
class RelationResult:
    per_sample: dict[str, Tensor]
    teacher_matrix: Tensor
    student_matrix: Tensor

    def summary(self) -> dict[str, float]:
        metrics = {name: float(values.mean()) for name, values in self.per_sample.items()}
        for name in ("pearson", "spearman", "kendall"):
            metrics[f"{name}_median"] = float(self.per_sample[name].median())
        size = self.teacher_matrix.shape[0]
        metrics["class_correlation_distance"] = float(torch.linalg.norm(self.teacher_matrix - self.student_matrix)) / size
        return metrics


def relation_fidelity(teacher_logits: Tensor, student_logits: Tensor) -> RelationResult:
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                         f"{tuple(student_logits.shape)} differ in shape")
    teacher, student = teacher_logits.double(), student_logits.double()
    k = min(5, teacher.shape[1])
    top_teacher = teacher.topk(k, dim=1).indices
    top_student = student.topk(k, dim=1).indices
    overlap = (top_teacher.unsqueeze(2) == top_student.unsqueeze(1)).any(2).double().sum(1) / k
    kl = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), reduction="none", log_target=True).sum(1)
    per_sample = {
        "pearson": pearson_rows(teacher, student, eps=0.0),
        "spearman": spearman_rows(teacher, student),
        "kendall": kendall_tau_b_rows(teacher, student),
        "top5_overlap": overlap,
        "top1_agreement": top_teacher[:, 0].eq(top_student[:, 0]).double(),
        "kl_teacher_student": kl,
    }
    return RelationResult(per_sample, class_correlation_matrix(teacher), class_correlation_matrix(student))
