"""The distillation task: a frozen teacher (always in eval mode, no gradients) and a trained student."""

from __future__ import annotations

from typing import Any

import torch

from robustkd.distill.methods import Method
from robustkd.distill.teacher import frozen_teacher
from robustkd.models import Normalized
from robustkd.train.task import TrainingTask


class DistillationTask(TrainingTask):
    """``forward(x, y)`` -> (student logits, named losses). Loss terms are computed in float32 even under
    autocast (correlations and ranks of half-precision logits lose too much); float64 logits stay float64."""

    def __init__(self, student: Normalized, teacher: Normalized, method: Method, teacher_meta: dict[str, Any],
                 fuse_teacher: bool = True) -> None:
        super().__init__(student)
        self.teacher, fused = frozen_teacher(teacher, fuse_teacher)
        self.method = method
        self.teacher_meta = {**teacher_meta, "batchnorm_folded": fused}

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Epoch ``epoch`` (from 1) of ``epochs`` begins: schedules inside the method (DKD's warm-up) follow it."""
        self.method.start_epoch(epoch, epochs)

    def train(self, mode: bool = True) -> DistillationTask:
        super().train(mode)
        self.teacher.eval()  # BN statistics and any dropout of the teacher stay frozen
        return self

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``teacher_logits`` (float32, (B, C)): the teacher's output on ``inputs`` when the caller already has
        it (a cohort runs the teacher once per batch for all its students); computed here otherwise."""
        student_logits = self.student(inputs)
        if not self.method.uses_teacher:
            teacher_logits = None
        elif teacher_logits is None:
            teacher_logits = self.teacher_logits(inputs)
        with torch.autocast(inputs.device.type, enabled=False):
            wide = student_logits if student_logits.dtype == torch.float64 else student_logits.float()
            losses = self.method.losses(wide, teacher_logits, labels)
        return student_logits, losses

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's logits on ``inputs``, as float32."""
        return self.teacher(inputs).float()

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method.name,
            "method_options": self.method.recorded_options,
            "teacher": self.teacher_meta,
        }
