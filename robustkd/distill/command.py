"""``robustkd distill``: a student trained from a frozen teacher checkpoint with a named method."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustkd.checkpoint import load_checkpoint
from robustkd.data import dataset_info, resolve_data_dir
from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.distill.task import DistillationTask
from robustkd.errors import RobustKDError
from robustkd.models import build_model
from robustkd.train.command import execute, prepare_run
from robustkd.train.config import TrainConfig
from robustkd.train.run_dir import RunDirectory


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


def canonical_method(config: DistillConfig) -> str:
    """The canonical name of ``config.method`` (what the run's saved config records)."""
    return parse_method(config.method, DistillOptions.from_mapping(config.method_options)).name


def teacher_summary(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    return {
        "path": str(path), "sha256": meta["weights_sha256"], "architecture": meta["architecture"],
        "dataset": meta["dataset"], "num_classes": meta["num_classes"],
        "test_top1": meta.get("metrics", {}).get("test_top1"),
    }


def distill_command(
    config: DistillConfig, *, run_dir: Path | None, data_dir: str | None, resume: bool, stop_after: int | None,
    allow_embedded: bool, announce: Callable[[str], None] = print,
) -> tuple[RunDirectory, dict[str, Any]]:
    info = dataset_info(config.dataset)
    options = DistillOptions.from_mapping(config.method_options)
    method = parse_method(config.method, options)
    teacher = load_checkpoint(Path(config.teacher))
    meta = teacher.meta
    if meta["dataset"] != config.dataset or int(meta["num_classes"]) != info.num_classes:
        raise RobustKDError(
            f"teacher {config.teacher} was trained on {meta['dataset']} ({meta['num_classes']} classes); "
            f"the student trains on {config.dataset} ({info.num_classes} classes)"
        )
    if config.teacher_sha256 and config.teacher_sha256 != teacher.sha256:
        raise RobustKDError(f"teacher {config.teacher} changed since this run started (sha256 {teacher.sha256[:12]}…, "
                            f"expected {config.teacher_sha256[:12]}…)")
    config.teacher_sha256 = teacher.sha256
    config.method = method.name
    run, placement = prepare_run(config, run_dir, resume, prefix=f"{method.name}-")
    student = build_model(config.model, info.num_classes, info.mean, info.std)
    task = DistillationTask(student, teacher.model, method, teacher_summary(meta, Path(config.teacher)),
                            fuse_teacher=config.fuse_teacher)
    row = execute(config, task, run, placement, data_dir=resolve_data_dir(data_dir), resume=resume,
                  stop_after=stop_after, allow_embedded=allow_embedded, extra_meta={"kind": "distill"}, announce=announce)
    return run, row
