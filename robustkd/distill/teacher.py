"""A frozen teacher prepared for fast inference: BatchNorm folded into the preceding convolutions.

A frozen teacher's BatchNorm layers are affine maps with fixed statistics, so they can be folded into the
convolution before them (``torch.fx.experimental.optimization.fuse``): one memory pass fewer per layer,
about 1.3x faster teacher forwards on this CPU (resnet56, batch 128). Logits agree with the unfused teacher
to float32 rounding. Networks torch.fx cannot trace (VGG's pooling depends on the input size) are kept
as they are.
"""

from __future__ import annotations

import copy

from torch.fx.experimental.optimization import fuse

from robustkd.models import Normalized

FROZEN_MARK = "robustkd_frozen_teacher"  # attribute set on frozen teachers: whether BatchNorm was folded


def frozen_teacher(teacher: Normalized, fuse_bn: bool = True) -> tuple[Normalized, bool]:
    """An eval-mode, gradient-free copy of ``teacher``; returns it and whether BatchNorm was folded.

    Idempotent: a teacher this function returned comes back as it is (a cohort shares one frozen teacher
    among its students' tasks).
    """
    if getattr(teacher, FROZEN_MARK, None) is not None:
        return teacher, getattr(teacher, FROZEN_MARK)
    teacher = teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    if not fuse_bn:
        return _mark(teacher, False)
    try:
        fused = fuse(copy.deepcopy(teacher.net).eval(), inplace=True)
    except Exception:  # torch.fx raises many error types on untraceable Python (TraceError, TypeError, ...)
        return _mark(teacher, False)
    folded = Normalized(fused, teacher.mean.flatten().tolist(), teacher.std.flatten().tolist()).eval()
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return _mark(folded, True)


def _mark(teacher: Normalized, folded: bool) -> tuple[Normalized, bool]:
    setattr(teacher, FROZEN_MARK, folded)
    return teacher, folded


def check_teacher_matches(teacher_meta: dict, teacher_path: object, dataset: str, num_classes: int,
                          *, whom: str = "the student trains") -> None:
    """Raise RobustKDError unless the teacher (its sidecar ``teacher_meta``) was trained on ``dataset`` with
    ``num_classes`` classes: the one teacher/model compatibility check of distillation and evaluation.
    ``whom`` names the other side in the message (``the students train``, ``… is evaluated``)."""
    from robustkd.errors import RobustKDError

    if teacher_meta["dataset"] != dataset or int(teacher_meta["num_classes"]) != int(num_classes):
        raise RobustKDError(f"teacher {teacher_path} was trained on {teacher_meta['dataset']} "
                            f"({teacher_meta['num_classes']} classes); {whom} on {dataset} ({num_classes} classes)")
