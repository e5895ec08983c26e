"""A distillation run's config: a training config plus the teacher, the method and its options.

The run itself (alone or in a cohort) is robustkd/distill/cohort_command.py; planning is robustkd/jobs/distill.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustkd.distill.options import DistillOptions
from robustkd.errors import RobustKDError
from robustkd.train.config import TrainConfig


@dataclass
class DistillConfig(TrainConfig):
    """A training config plus the teacher checkpoint, the method spec and its options (``model`` = student)."""

    model: str = "resnet8x4"
    teacher: str = ""
    method: str = "kd"
    method_options: dict[str, Any] = field(default_factory=dict)
    teacher_sha256: str = ""
    fuse_teacher: bool = True

    def validate(self) -> DistillConfig:
        super().validate()
        if not self.teacher:
            raise RobustKDError("distill: --teacher CKPT is required")
        DistillOptions.from_mapping(self.method_options)
        return self


def teacher_summary(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    return {
        "path": str(path), "sha256": meta["weights_sha256"], "architecture": meta["architecture"],
        "dataset": meta["dataset"], "num_classes": meta["num_classes"],
        "test_top1": meta.get("metrics", {}).get("test_top1"),
    }
