"""``robustkd train``: wire config, data, model, run directory and the loop together."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustkd.checkpoint import load_checkpoint
from robustkd.data import dataset_info, make_loader, resolve_data_dir
from robustkd.errors import RobustKDError
from robustkd.models import Normalized, build_model
from robustkd.train.config import TrainConfig, load_saved_config
from robustkd.train.distributed import close_placement, init_placement
from robustkd.train.loop import Placement, Trainer
from robustkd.train.run_dir import RunDirectory
from robustkd.train.sidecar import training_sidecar
from robustkd.train.skip_finished import check_same_run, run_state
from robustkd.train.task import CrossEntropyTask, TrainingTask
from robustkd.utils.folder_lock import lock_folder
from robustkd.utils.seeding import enable_determinism, seed_everything

# Settings that may change when a run is resumed: they do not alter what the run computes per epoch.
RESUMABLE_OVERRIDES = ("epochs", "device")


@dataclass
class TrainRunConfig(TrainConfig):
    """A ``robustkd train`` config: a TrainConfig plus an optional checkpoint to start from (fine-tuning).

    ``init_from`` is the parent checkpoint ("" for random initialisation), ``init_sha256`` its weights'
    SHA-256, recorded when the run starts and checked whenever the parent is read again. Both are left out
    of ``to_dict`` when there is no parent, so configs of runs from scratch are unchanged.
    """

    init_from: str = ""
    init_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        if not self.init_from:
            values.pop("init_from")
            values.pop("init_sha256")
        return values


def default_run_dir(config: TrainConfig, prefix: str = "") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}{config.model}-{config.dataset}-{config.recipe}-s{config.seed}-{stamp}"


def config_for_resume(config_cls: type[TrainConfig], run_dir: Path, cli_values: dict[str, Any]) -> TrainConfig:
    if not (Path(run_dir) / "config.json").is_file():
        raise RobustKDError(f"--resume: {run_dir} holds no run to resume ({Path(run_dir) / 'config.json'} is missing)")
    saved = load_saved_config(config_cls, run_dir / "config.json")
    changed = [k for k, v in cli_values.items() if v is not None and k not in RESUMABLE_OVERRIDES and getattr(saved, k, v) != v]
    if changed:
        raise RobustKDError(
            f"--resume continues {run_dir} with its saved config; drop {', '.join('--' + k.replace('_', '-') for k in changed)} "
            f"(only {', '.join('--' + k for k in RESUMABLE_OVERRIDES)} may change)"
        )
    for key in RESUMABLE_OVERRIDES:
        if cli_values.get(key) is not None:
            setattr(saved, key, cli_values[key])
    return saved.validate()


def skip_finished_plan(
    config_cls: type[TrainConfig], requested: TrainConfig, run_dir: Path | None
) -> tuple[TrainConfig, bool] | None:
    """``--skip-finished``: None if ``run_dir`` holds the requested run finished; else (config, resume): the
    saved config (epochs and device from the flags) to resume an interrupted run, or ``requested`` to start.

    A run found in ``run_dir`` that the flags do not describe is refused (RobustKDError).
    """
    if run_dir is None:
        raise RobustKDError("--skip-finished needs --run-dir naming the run to start, resume or skip")
    state = run_state(run_dir)
    if state == "absent":
        return requested, False
    check_same_run(requested, run_dir)
    if state == "finished":
        return None
    return config_for_resume(config_cls, run_dir, {"epochs": requested.epochs, "device": requested.device}), True


def prepare_run(
    config: TrainConfig, run_dir: Path | None, resume: bool, prefix: str = ""
) -> tuple[RunDirectory, Placement]:
    placement = init_placement(config.device)
    if config.deterministic:
        enable_determinism()
    seed_everything(config.seed)
    if resume and run_dir is None:
        raise RobustKDError("--resume needs --run-dir naming the run to continue")
    path = run_dir or default_run_dir(config, prefix)
    if not placement.is_main:  # under torchrun only rank 0 writes the folder, and holds it
        return RunDirectory(path), placement
    lock = lock_folder(path, option="--run-dir", what="run")  # held until the caller's release_lock()
    try:
        run = RunDirectory.create(path, resume=resume)
    except BaseException:
        lock.release()
        raise
    run.lock = lock
    return run, placement


def execute(
    config: TrainConfig,
    task: TrainingTask,
    run: RunDirectory,
    placement: Placement,
    *,
    data_dir: Path,
    resume: bool,
    stop_after: int | None,
    allow_embedded: bool,
    extra_meta: dict[str, Any],
    announce: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the loaders and the trainer for ``task``, run it, and return the last metrics row.

    A new run that fails before its first checkpoint (missing data, a diverged first epoch, an interrupt)
    removes what it wrote, so the same ``--run-dir`` can be used again.
    """
    try:
        return _execute(config, task, run, placement, data_dir=data_dir, resume=resume, stop_after=stop_after,
                        allow_embedded=allow_embedded, extra_meta=extra_meta, announce=announce)
    except BaseException:
        if placement.is_main and not resume:
            run.discard()
        raise
    finally:
        close_placement(placement)


def _execute(
    config: TrainConfig, task: TrainingTask, run: RunDirectory, placement: Placement, *, data_dir: Path, resume: bool,
    stop_after: int | None, allow_embedded: bool, extra_meta: dict[str, Any], announce: Callable[[str], None],
) -> dict[str, Any]:
    info = dataset_info(config.dataset)
    common = dict(rank=placement.rank, world_size=placement.world_size, channels_last=config.channels_last,
                  allow_embedded=allow_embedded, announce=announce if placement.is_main else (lambda _: None))
    train_loader = make_loader(config.dataset, "train", data_dir, config.batch_size, placement.device, train=True,
                               seed=config.seed, noise_sd=config.noise_sd, limit=config.train_limit,
                               holdout=config.holdout, **common)
    test_loader = make_loader(config.dataset, "test", data_dir, 500, placement.device, train=False,
                              limit=config.test_limit, **common)
    source = getattr(getattr(train_loader, "dataset", None), "source", f"folders:{data_dir}")
    meta = training_sidecar(config, info, data_source=source,
                            n_train=len(train_loader) * config.batch_size * placement.world_size,
                            train_images=len(train_loader.dataset), split_images=train_loader.split_images,
                            task_description=task.describe(), **extra_meta)
    if placement.is_main and not resume:
        run.write_config(config.to_dict())
    trainer = Trainer(config, task, train_loader, test_loader, run, placement, meta, announce)
    if resume and run.latest_state() is not None:  # else killed before its first state: start afresh
        trainer.resume()
    return trainer.fit(stop_after=stop_after)


def load_parent(config: TrainRunConfig, num_classes: int) -> Normalized:
    """The model of ``config.init_from``, SHA-256 verified, and record that SHA-256 in ``config.init_sha256``.

    Another architecture or class count than the run's, or a parent that changed since the run recorded its
    SHA-256, is refused (RobustKDError naming --init-from).
    """
    try:
        parent = load_checkpoint(Path(config.init_from), expect_architecture=config.model,
                                 expect_num_classes=num_classes)
    except RobustKDError as exc:
        raise RobustKDError(f"--init-from: {exc}") from None
    if config.init_sha256 and config.init_sha256 != parent.sha256:
        raise RobustKDError(f"--init-from: {config.init_from} changed since this run started (sha256 "
                            f"{parent.sha256[:12]}…, expected {config.init_sha256[:12]}…)")
    config.init_sha256 = parent.sha256
    return parent.model


def train_command(
    config: TrainConfig, *, run_dir: Path | None, data_dir: str | None, resume: bool, stop_after: int | None,
    allow_embedded: bool, announce: Callable[[str], None] = print,
) -> tuple[RunDirectory, dict[str, Any]]:
    """Train ``config.model`` with cross-entropy. A TrainRunConfig with ``init_from`` starts from that
    checkpoint's network weights (the model keeps its own input normalisation) when the run starts, or
    when a resumed run holds no training state yet; the parent is checked before anything is written."""
    info = dataset_info(config.dataset)
    init_from = getattr(config, "init_from", "")
    has_state = resume and run_dir is not None and RunDirectory(run_dir).latest_state() is not None
    parent = load_parent(config, info.num_classes) if init_from and not has_state else None  # type: ignore[arg-type]
    run, placement = prepare_run(config, run_dir, resume)
    try:  # the run folder is this process's until it returns (robustkd/utils/folder_lock.py)
        student = build_model(config.model, info.num_classes, info.mean, info.std)
        extra_meta: dict[str, Any] = {"kind": "train"}
        if init_from:
            if parent is not None:
                student.net.load_state_dict(parent.net.state_dict())
            extra_meta["init_from"] = {"path": init_from, "sha256": config.init_sha256}  # type: ignore[attr-defined]
        row = execute(config, CrossEntropyTask(student), run, placement, data_dir=resolve_data_dir(data_dir),
                      resume=resume, stop_after=stop_after, allow_embedded=allow_embedded, extra_meta=extra_meta,
                      announce=announce)
    finally:
        run.release_lock()
    return run, row
