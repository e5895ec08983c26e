"""Every distillation run: one student alone or a cohort of students in one process, one code path.

    <cohort>/cohort.json            the members (name, student, method, seed, overrides) and their status
    <cohort>/<member>/              an ordinary run directory per member (config.json, metrics, state,
                                    model.safetensors + model.json), resumable on its own as a solo run

A solo ``robustkd distill`` is a cohort of one in the *solo layout*: the member's run directory is the run
folder itself and there is no ``cohort.json`` (the folder looks exactly as it always did). Everything else
- teacher check, shared frozen teacher, data, the epoch loop (``CohortTrainer``), saves and resume - is the
same code, which is why a cohort member is bit-identical to the same student trained alone.

Each member's ``config.json`` is exactly the config of the equivalent solo ``robustkd distill`` command,
and its sidecar records the cohort. ``--resume --run-dir <cohort>`` continues every unfinished member from
its own last state; members killed before their first epoch start afresh. A cohort folder in which no
member has finished an epoch holds nothing worth keeping: a new cohort may replace it.

The folder a command trains into is held for it (``.robustkd.lock``, robustkd/utils/folder_lock.py): a second
command into the same folder is refused while the first runs; a solo run in a member folder of a cohort holds
the cohort folder too. The lock file is bookkeeping, never part of a run or a member.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustkd.checkpoint import load_checkpoint
from robustkd.data import dataset_info, make_loader
from robustkd.data.loader import TensorBatchLoader
from robustkd.distill.cohort import CohortMember, CohortTrainer
from robustkd.distill.cohort_spec import MemberSpec
from robustkd.distill.command import DistillConfig, teacher_summary
from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.distill.task import DistillationTask
from robustkd.distill.teacher import check_teacher_matches, frozen_teacher
from robustkd.errors import RobustKDError
from robustkd.models import build_model
from robustkd.train.distributed import close_placement, init_placement
from robustkd.train.command import default_run_dir
from robustkd.train.compiled_step import compiled_inference
from robustkd.train.run_dir import RunDirectory
from robustkd.train.skip_finished import check_same_run, run_state
from robustkd.train.sidecar import training_sidecar
from robustkd.train.student_run import StudentRun
from robustkd.utils.atomic import is_leftover_temporary, write_json_atomic
from robustkd.utils.folder_lock import FolderLock, clear_folder, is_lock_file, lock_folder
from robustkd.utils.seeding import enable_determinism, seed_everything

COHORT_FILE = "cohort.json"
COHORT_FORMAT = "robustkd-cohort-1"
# Fields every member must share: they decide the batches (per seed), the test set and the epoch loop.
SHARED_FIELDS = ("dataset", "batch_size", "noise_sd", "train_limit", "holdout", "test_limit", "epochs", "channels_last", "compile",
                 "amp", "device", "deterministic", "teacher", "fuse_teacher")


@dataclass(frozen=True)
class PlannedMember:
    spec: MemberSpec
    config: DistillConfig


def is_cohort_dir(path: Path | None) -> bool:
    return path is not None and (Path(path) / COHORT_FILE).is_file()


def default_cohort_dir(members: list[PlannedMember]) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    first = members[0].config
    students = "+".join(dict.fromkeys(member.spec.student for member in members))
    return Path("runs") / f"cohort-{students}-{first.dataset}-{first.recipe}-{stamp}"


def read_cohort(cohort_dir: Path) -> dict[str, Any]:
    """The cohort file of ``cohort_dir`` (checked for its format and member list)."""
    path = Path(cohort_dir) / COHORT_FILE
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RobustKDError(f"--resume: cannot read {path} ({exc})") from None
    if not isinstance(content, dict) or content.get("format") != COHORT_FORMAT or not isinstance(content.get("members"), list):
        raise RobustKDError(f"--resume: {path} is not a robustkd cohort file (format {COHORT_FORMAT})")
    return content


def _check_shared(members: list[PlannedMember]) -> None:
    first = members[0]
    for member in members[1:]:
        for name in SHARED_FIELDS:
            if getattr(member.config, name) != getattr(first.config, name):
                raise RobustKDError(f"cohort: {member.spec.name} has {name}={getattr(member.config, name)!r} but "
                                    f"{first.spec.name} has {getattr(first.config, name)!r}; a cohort shares {name}")


def _holds_no_finished_epoch(cohort_dir: Path) -> bool:
    """True if ``cohort_dir`` holds only robustkd cohort files (and temporaries of writes a kill cut short)
    and no member finished an epoch."""
    for entry in cohort_dir.iterdir():
        if entry.name == COHORT_FILE or is_leftover_temporary(entry) or is_lock_file(entry):
            continue
        if not entry.is_dir() or RunDirectory(entry).latest_state() is not None:
            return False
        if any(item.name != "config.json" and not is_leftover_temporary(item) and not is_lock_file(item)
               for item in entry.iterdir()):
            return False
    return True


def _prepare_folder(cohort_dir: Path, resume: bool) -> None:
    if resume:
        if not is_cohort_dir(cohort_dir):
            raise RobustKDError(f"--resume: {cohort_dir} holds no cohort ({COHORT_FILE} is missing)")
        return
    if cohort_dir.exists() and not cohort_dir.is_dir():
        raise RobustKDError(f"--run-dir {cohort_dir} is a file; expected a folder for the cohort")
    if cohort_dir.is_dir() and any(cohort_dir.iterdir()):
        if not _holds_no_finished_epoch(cohort_dir):
            raise RobustKDError(f"run directory {cohort_dir} already holds a run; pass --resume to continue it or "
                                f"choose another --run-dir")
        clear_folder(cohort_dir)  # a cohort killed before any member finished its first epoch (keeps the lock)
    cohort_dir.mkdir(parents=True, exist_ok=True)


def _lock_folders(folder: Path, solo: bool) -> list[FolderLock]:
    """Hold the folder a command trains into; a solo run in a cohort's member folder holds the cohort too (a
    cohort command trains its members)."""
    locks: list[FolderLock] = []
    try:
        if solo and is_cohort_dir(folder.parent):
            locks.append(lock_folder(folder.parent, option="--run-dir", what="cohort"))
        locks.append(lock_folder(folder, option="--run-dir", what="run" if solo else "cohort"))
    except BaseException:
        for lock in reversed(locks):
            lock.release()
        raise
    return locks


def cohort_command(
    members: list[PlannedMember], *, cohort_dir: Path | None, data_dir: Path, resume: bool, stop_after: int | None,
    allow_embedded: bool, solo: bool = False, announce: Callable[[str], None] = print,
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Train (or resume) the members; returns their folder and, per member name, its last metrics row or
    ``{"diverged": message}``.

    ``solo`` (one member): the solo layout - ``cohort_dir`` is the member's own run directory (default
    ``runs/<method>-<student>-...``), no cohort file, and a diverging student ends the run with its error.
    """
    if not members:
        raise RobustKDError("cohort: no members")
    if solo and len(members) != 1:
        raise RobustKDError(f"distill: the solo layout holds one student, got {len(members)}")
    _check_shared(members)
    first = members[0].config
    info = dataset_info(first.dataset)
    teacher = load_checkpoint(Path(first.teacher))
    check_teacher_matches(teacher.meta, first.teacher, first.dataset, info.num_classes,
                          whom="the student trains" if solo else "the students train")
    for member in members:
        if member.config.teacher_sha256 and member.config.teacher_sha256 != teacher.sha256:
            raise RobustKDError(f"teacher {first.teacher} changed since this {'run' if solo else 'cohort'} started "
                                f"(sha256 {teacher.sha256[:12]}…, expected {member.config.teacher_sha256[:12]}…)")
        member.config.teacher_sha256 = teacher.sha256
    if solo:
        cohort_dir = Path(cohort_dir or default_run_dir(first, prefix=f"{first.method}-"))
    else:
        cohort_dir = Path(cohort_dir or default_cohort_dir(members))
    placement = init_placement(first.device)
    locks: list[FolderLock] = []
    prepared = False  # the folder was accepted as this command's: only then may a failure clean it
    try:
        if first.deterministic:
            enable_determinism()
        if placement.is_main:  # under torchrun only rank 0 writes the folder, and holds it
            locks = _lock_folders(cohort_dir, solo)
            if solo:
                RunDirectory.create(cohort_dir, resume=resume)
            else:
                _prepare_folder(cohort_dir, resume)
            prepared = True
        status = read_cohort(cohort_dir).get("status", {}) if resume and not solo else {}
        record = {"format": COHORT_FORMAT, "teacher": teacher_summary(teacher.meta, Path(first.teacher)),
                  "members": [{"name": m.spec.name, "student": m.spec.student, "method": m.spec.method,
                               "seed": m.spec.seed, "overrides": m.spec.overrides} for m in members],
                  "status": status}
        if placement.is_main:
            for member in members:
                run = RunDirectory(_member_dir(cohort_dir, member, solo))
                if not run.config_path.is_file():
                    run.path.mkdir(parents=True, exist_ok=True)
                    run.write_config(member.config.to_dict())
            if not solo:
                write_json_atomic(cohort_dir / COHORT_FILE, record)
        return cohort_dir, _train(members, cohort_dir, record, teacher, placement, info, data_dir=data_dir,
                                  stop_after=stop_after, allow_embedded=allow_embedded, solo=solo,
                                  announce=announce)
    except BaseException:
        # only a folder this process holds and accepted is cleaned: a refused one (another run's checkpoint,
        # which has no training state) stays as it was
        if placement.is_main and not resume and locks and prepared:
            if solo:
                RunDirectory(cohort_dir).discard()
            elif cohort_dir.is_dir() and _holds_no_finished_epoch(cohort_dir):
                clear_folder(cohort_dir, remove=True)  # the folder goes when its lock is released
        raise
    finally:
        close_placement(placement)
        for lock in reversed(locks):
            lock.release()


def _member_dir(folder: Path, member: PlannedMember, solo: bool) -> Path:
    return folder if solo else folder / member.spec.name


def _train(members: list[PlannedMember], cohort_dir: Path, record: dict[str, Any], teacher, placement, info, *,
           data_dir: Path, stop_after: int | None, allow_embedded: bool, solo: bool,
           announce: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    first = members[0].config
    quiet = announce if placement.is_main else (lambda _: None)
    common = dict(rank=placement.rank, world_size=placement.world_size, channels_last=first.channels_last,
                  allow_embedded=allow_embedded, announce=quiet)
    loaders: dict[int, Any] = {}
    for seed in dict.fromkeys(member.config.seed for member in members):
        earlier = next(iter(loaders.values()), None)
        if isinstance(earlier, TensorBatchLoader):  # one copy of the data set for every seed
            loaders[seed] = TensorBatchLoader(earlier.dataset, first.batch_size, placement.device, train=True, seed=seed,
                                              noise_sd=first.noise_sd, rank=placement.rank,
                                              world_size=placement.world_size, channels_last=first.channels_last)
            loaders[seed].split_images = earlier.split_images
        else:
            loaders[seed] = make_loader(first.dataset, "train", data_dir, first.batch_size, placement.device, train=True,
                                        seed=seed, noise_sd=first.noise_sd, limit=first.train_limit,
                                        holdout=first.holdout, **common)
    test_loader = make_loader(first.dataset, "test", data_dir, 500, placement.device, train=False,
                              limit=first.test_limit, **common)
    any_loader = next(iter(loaders.values()))
    source = getattr(getattr(any_loader, "dataset", None), "source", f"folders:{data_dir}")
    shared_teacher, _ = frozen_teacher(teacher.model, first.fuse_teacher)
    shared_teacher.to(placement.device)
    names = [member.spec.name for member in members]
    cohort_members = []
    for planned in members:
        config, spec = planned.config, planned.spec
        seed_everything(config.seed)  # same seed, same architecture -> same initial weights
        student = build_model(config.model, info.num_classes, info.mean, info.std)
        method = parse_method(config.method, DistillOptions.from_mapping(config.method_options))
        task = DistillationTask(student, shared_teacher, method, teacher_summary(teacher.meta, Path(config.teacher)),
                                fuse_teacher=config.fuse_teacher)
        run = RunDirectory(_member_dir(cohort_dir, planned, solo))
        in_cohort = {} if solo else {"cohort": {"path": str(cohort_dir), "member": spec.name, "members": names}}
        meta = training_sidecar(config, info, data_source=source,
                                n_train=len(any_loader) * config.batch_size * placement.world_size,
                                train_images=len(any_loader.dataset), split_images=any_loader.split_images,
                                task_description=task.describe(), kind="distill", **in_cohort)
        student_run = StudentRun(config, task, run, placement, meta, isolate_rng=True)
        member = CohortMember(spec.name, config.seed, student_run, method.uses_teacher,
                              diverged=record["status"].get(spec.name))
        if member.diverged:
            quiet(f"{spec.name}: stopped earlier ({member.diverged}); not resumed")
        elif run.latest_state() is not None:
            epoch = student_run.resume()
            quiet(f"resuming {run.path} after epoch {epoch}" if solo else f"{spec.name}: resuming after epoch {epoch}")
        cohort_members.append(member)
    uses_teacher = [member for member in cohort_members if member.uses_teacher]
    teacher_logits = uses_teacher[0].run.task.teacher_logits if uses_teacher else (lambda inputs: None)
    if uses_teacher and first.compile:  # the shared teacher forward compiled too (robustkd/train/compiled_step.py)
        teacher_logits = compiled_inference(teacher_logits, placement.device)

    def on_diverged(member: CohortMember) -> None:
        record["status"][member.name] = member.diverged
        if placement.is_main:
            write_json_atomic(cohort_dir / COHORT_FILE, record)

    if not solo:
        quiet(f"cohort {cohort_dir}: {len(cohort_members)} students ({', '.join(names)}); "
              f"teacher {teacher.meta['architecture']} runs once per batch for each seed")
    trainer = CohortTrainer(cohort_members, loaders, test_loader, teacher_logits, placement, first.epochs,
                            announce=quiet, on_diverged=on_diverged, stop_on_divergence=solo)
    trainer.fit(stop_after)
    return {member.name: ({"diverged": member.diverged} if member.diverged else
                          (member.run.history[-1] if member.run.history else {})) for member in cohort_members}


def plan_members(specs: list[MemberSpec], file_values: dict[str, Any], cli_values: dict[str, Any],
                 base_options: dict[str, Any]) -> list[PlannedMember]:
    """Each member's config, resolved exactly as the solo command with its student, method and seed would be."""
    from robustkd.train.config import resolve_config

    planned = []
    for spec in specs:
        values = {**cli_values, "model": spec.student, "method": spec.method, "seed": spec.seed,
                  "method_options": {**base_options, **spec.overrides}}
        planned.append(PlannedMember(spec, resolve_config(DistillConfig, dict(file_values), values)))
    return planned


def plan_resume(cohort_dir: Path, cli_values: dict[str, Any]) -> list[PlannedMember]:
    """The members of an existing cohort with their saved configs (only epochs and device may change)."""
    from robustkd.train.command import config_for_resume

    planned = []
    for entry in read_cohort(cohort_dir)["members"]:
        try:
            spec = MemberSpec(str(entry["student"]), str(entry["method"]), int(entry["seed"]), dict(entry["overrides"]))
        except (KeyError, TypeError, ValueError):
            raise RobustKDError(f"--resume: {Path(cohort_dir) / COHORT_FILE} has a malformed member entry {entry!r}") from None
        member_dir = Path(cohort_dir) / spec.name
        if not (member_dir / "config.json").is_file():
            raise RobustKDError(f"--resume: {member_dir / 'config.json'} is missing; the cohort folder is damaged")
        planned.append(PlannedMember(spec, config_for_resume(DistillConfig, member_dir, cli_values)))
    return planned


def skip_finished_plan(members: list[PlannedMember], cohort_dir: Path | None) -> tuple[list[PlannedMember], bool] | None:
    """``--skip-finished`` for a cohort: None if ``cohort_dir`` holds this cohort with every member finished;
    else (members, resume): the saved members (epochs and device from the flags) to resume an unfinished
    cohort, or ``members`` to start one where ``cohort_dir`` holds no cohort.

    Refused (RobustKDError): a cohort with other members than the flags describe, or a member whose saved
    config differs from the flags (see robustkd.train.skip_finished).
    """
    if cohort_dir is None:
        raise RobustKDError("--skip-finished needs --run-dir naming the cohort to start, resume or skip")
    if not is_cohort_dir(cohort_dir):
        return members, False
    saved = [str(entry.get("name")) for entry in read_cohort(cohort_dir)["members"] if isinstance(entry, dict)]
    wanted = [member.spec.name for member in members]
    if sorted(saved) != sorted(wanted):
        extra, missing = sorted(set(saved) - set(wanted)), sorted(set(wanted) - set(saved))
        raise RobustKDError(f"--skip-finished: cohort {cohort_dir} holds other members than the flags describe "
                            f"(only in the folder: {', '.join(extra) or 'none'}; only in the flags: "
                            f"{', '.join(missing) or 'none'}); use another --run-dir")
    states = []
    for member in members:
        member_dir = Path(cohort_dir) / member.spec.name
        state = run_state(member_dir)
        if state == "absent":
            raise RobustKDError(f"--skip-finished: {member_dir / 'config.json'} is missing; the cohort folder is damaged")
        check_same_run(member.config, member_dir)
        states.append(state)
    if all(state == "finished" for state in states):
        return None
    return plan_resume(cohort_dir, {"epochs": members[0].config.epochs, "device": members[0].config.device}), True
