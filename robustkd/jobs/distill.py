"""The distillation job: one student or a cohort, planned, then run through one code path.

A request names methods, students and seeds. One member and no ``seeds`` list is a solo run (a cohort of
one in the solo layout: the run folder is the student's own run directory); anything else is a cohort
(``<folder>/cohort.json`` and a run directory per member). Either way the members' configs are resolved by
the same rule (defaults < recipe < file < flags, then the member's student, method, seed and options) and
trained by ``robustkd.distill.cohort_command.cohort_command``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustkd.data import resolve_data_dir
from robustkd.distill.cohort_command import (
    PlannedMember,
    cohort_command,
    is_cohort_dir,
    plan_members,
    plan_resume,
)
from robustkd.distill.cohort_command import skip_finished_plan as cohort_skip_finished_plan
from robustkd.distill.cohort_spec import MemberSpec, cohort_members
from robustkd.distill.command import DistillConfig
from robustkd.errors import RobustKDError
from robustkd.jobs.run_plan import Action, Mode, RunPlan, check_mode, check_stop_after, refusals_name_the_holder
from robustkd.train.command import config_for_resume
from robustkd.train.command import skip_finished_plan as solo_skip_finished_plan
from robustkd.train.config import read_config_file

DEFAULT_METHOD = "kd"
DEFAULT_STUDENT = "resnet8x4"


@dataclass
class DistillRequest:
    """A ``robustkd distill`` as asked.

    ``values``: DistillConfig fields (None = not given), ``teacher`` and ``fuse_teacher`` included;
    ``methods`` / ``students``: comma-separated lists (``ce,kd,cmkd[cmkd_spearman=0.5]``, ``resnet8,wrn_16_2``);
    ``seeds``: a cohort's seeds (None: the single ``values["seed"]``); ``options``: method options given for
    every member (``--kd-temperature``), over the config file's ``[method_options]``; ``file_values``:
    config-file keys given as a mapping (a study's recipe table) instead of ``config_file``.
    """

    values: dict[str, Any] = field(default_factory=dict)
    methods: str | None = None
    students: str | None = None
    seeds: list[int] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    run_dir: Path | None = None
    mode: Mode = Mode.NEW
    file_values: dict[str, Any] | None = None


@dataclass(frozen=True)
class Distillation:
    """The members to train and whether they use the solo layout (one student, no cohort file)."""

    members: list[PlannedMember]
    solo: bool


@dataclass(frozen=True)
class DistillOutcome:
    """The run (or cohort) folder and, per member name, its last metrics row or ``{"diverged": message}``
    (empty when the plan was to skip a finished run)."""

    folder: Path
    rows: dict[str, dict[str, Any]]
    solo: bool
    skipped: bool = False

    def member_dir(self, name: str) -> Path:
        return self.folder if self.solo else self.folder / name


@refusals_name_the_holder
def plan_distillation(request: DistillRequest) -> RunPlan[Distillation]:
    """The members with their resolved configs, the layout, and what to do with the folder."""
    check_mode(request.mode, request.run_dir)
    if request.mode is Mode.RESUME:
        solo = not is_cohort_dir(request.run_dir)  # a solo run's folder has no cohort file
        return RunPlan(Action.RESUME, request.run_dir, Distillation(_resumed_members(request, solo), solo))
    if request.seeds is not None and request.values.get("seed") is not None:
        raise RobustKDError("--seed and --seeds: give one (a cohort takes --seeds 0,1,2)")
    members = _new_members(request)
    solo = request.seeds is None and len(members) == 1  # one student without a seed list: a solo run
    if request.mode is Mode.NEW:
        return RunPlan(Action.START, request.run_dir, Distillation(members, solo))
    if solo:
        decided = solo_skip_finished_plan(DistillConfig, members[0].config, request.run_dir)
        if decided is None:
            return RunPlan(Action.SKIP, request.run_dir, Distillation(members, solo))
        config, resume = decided
        members = [PlannedMember(members[0].spec, config)]  # type: ignore[arg-type]
    else:
        cohort_decided = cohort_skip_finished_plan(members, request.run_dir)
        if cohort_decided is None:
            return RunPlan(Action.SKIP, request.run_dir, Distillation(members, solo))
        members, resume = cohort_decided
    return RunPlan(Action.RESUME if resume else Action.START, request.run_dir, Distillation(members, solo))


def _new_members(request: DistillRequest) -> list[PlannedMember]:
    file_values = read_config_file(request.config_file) if request.config_file else dict(request.file_values or {})
    file_options = file_values.pop("method_options", {})
    if not isinstance(file_options, dict):
        raise RobustKDError(f"--config: [method_options] must be a table of option = value, got {file_options!r}")
    # an empty --method '' / --student '' is refused (an empty entry), not taken as "not given"
    methods = request.methods if request.methods is not None else file_values.pop("method", None) or DEFAULT_METHOD
    students = request.students if request.students is not None else file_values.pop("model", None) or DEFAULT_STUDENT
    file_values.pop("method", None)
    file_values.pop("model", None)
    if request.seeds is not None:
        seeds = request.seeds
    else:
        seed = request.values.get("seed")
        seed = seed if seed is not None else file_values.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise RobustKDError(f"config: seed={seed!r}; expected a non-negative integer")
        seeds = [seed]
    base_options = {**file_options, **request.options}
    specs = cohort_members(str(methods), str(students), seeds, base_options)
    return plan_members(specs, file_values, request.values, base_options)


def _resumed_members(request: DistillRequest, solo: bool) -> list[PlannedMember]:
    if request.seeds is not None:
        raise RobustKDError(f"--resume continues the {'run with its saved seed' if solo else 'cohort with its saved seeds'}; "
                            "drop --seeds")
    # Everything given must equal the saved config (only epochs and device may change): a method or student
    # named on the command line is compared too, and refused when it differs.
    values = {**request.values, "method": request.methods, "method_options": request.options or None}
    if request.students is not None:
        values["model"] = request.students
    if not solo:
        return plan_resume(request.run_dir, values)  # type: ignore[arg-type]
    config = config_for_resume(DistillConfig, request.run_dir, values)  # type: ignore[arg-type]
    spec = MemberSpec(config.model, config.method, config.seed, {})  # type: ignore[attr-defined]
    return [PlannedMember(spec, config)]  # type: ignore[arg-type]


def run_distillation(plan: RunPlan[Distillation], *, data_dir: str | Path | None = None, stop_after: int | None = None,
                     allow_embedded: bool = False, announce: Callable[[str], None] = print) -> DistillOutcome:
    """Carry ``plan`` out: nothing when finished, else train every member (resuming where the plan says)."""
    check_stop_after(stop_after)
    distillation = plan.payload
    if plan.action is Action.SKIP:
        return DistillOutcome(Path(plan.run_dir), {}, distillation.solo, skipped=True)  # type: ignore[arg-type]
    folder, rows = cohort_command(distillation.members, cohort_dir=plan.run_dir, data_dir=resolve_data_dir(data_dir),
                                  resume=plan.resume, stop_after=stop_after, allow_embedded=allow_embedded,
                                  solo=distillation.solo, announce=announce)
    return DistillOutcome(folder, rows, distillation.solo)
