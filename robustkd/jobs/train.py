"""The training job: a model trained from labels (a teacher, a baseline), planned, then run.

``plan_training`` resolves the config (defaults < recipe < file < flags, or the saved config to resume) and
decides, under ``Mode.SKIP_FINISHED``, whether the run folder's run is finished, interrupted or absent;
``run_training`` carries the plan out. Nothing here prints except through ``announce``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustkd.jobs.run_plan import Action, Mode, RunPlan, check_mode, check_stop_after, refusals_name_the_holder
from robustkd.train.command import TrainRunConfig, config_for_resume, skip_finished_plan, train_command
from robustkd.train.config import read_config_file, resolve_config


@dataclass
class TrainRequest:
    """A ``robustkd train`` as asked: config values (TrainRunConfig fields; None = not given), an optional
    config file (or ``file_values``, checked as a config file's keys: a study's table), the run folder and
    how to treat it."""

    values: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    run_dir: Path | None = None
    mode: Mode = Mode.NEW
    file_values: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrainOutcome:
    """The run folder and its last metrics row (empty when skipped as finished)."""

    run_dir: Path
    row: dict[str, Any]
    skipped: bool = False


@refusals_name_the_holder
def plan_training(request: TrainRequest) -> RunPlan[TrainRunConfig]:
    """The config to train with and what to do with the run folder (refuses a folder holding another run)."""
    check_mode(request.mode, request.run_dir)
    if request.mode is Mode.RESUME:
        return RunPlan(Action.RESUME, request.run_dir,
                       config_for_resume(TrainRunConfig, request.run_dir, request.values))  # type: ignore[arg-type]
    file_values = read_config_file(request.config_file) if request.config_file else dict(request.file_values or {})
    config = resolve_config(TrainRunConfig, file_values, request.values)
    if request.mode is Mode.NEW:
        return RunPlan(Action.START, request.run_dir, config)  # type: ignore[arg-type]
    decided = skip_finished_plan(TrainRunConfig, config, request.run_dir)
    if decided is None:
        return RunPlan(Action.SKIP, request.run_dir, config)  # type: ignore[arg-type]
    config, resume = decided
    return RunPlan(Action.RESUME if resume else Action.START, request.run_dir, config)  # type: ignore[arg-type]


def run_training(plan: RunPlan[TrainRunConfig], *, data_dir: str | Path | None = None, stop_after: int | None = None,
                 allow_embedded: bool = False, announce: Callable[[str], None] = print) -> TrainOutcome:
    """Carry ``plan`` out: nothing when finished, else train (resuming when the plan says so)."""
    check_stop_after(stop_after)
    if plan.action is Action.SKIP:
        return TrainOutcome(Path(plan.run_dir), {}, skipped=True)  # type: ignore[arg-type]
    run, row = train_command(plan.payload, run_dir=plan.run_dir, data_dir=None if data_dir is None else str(data_dir),
                             resume=plan.resume, stop_after=stop_after, allow_embedded=allow_embedded,
                             announce=announce)
    return TrainOutcome(run.path, row)
