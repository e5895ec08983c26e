"""``robustkd train``: wire config, data, model, run directory and the loop together."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustkd.data import dataset_info, make_loader, resolve_data_dir
from robustkd.errors import RobustKDError
from robustkd.models import build_model, canonical_model_name
from robustkd.train.config import TrainConfig, load_saved_config
from robustkd.train.distributed import close_placement, init_placement
from robustkd.train.loop import Placement, Trainer
from robustkd.train.run_dir import RunDirectory
from robustkd.train.task import CrossEntropyTask, TrainingTask
from robustkd.utils.seeding import enable_determinism, seed_everything

# Settings that may change when a run is resumed: they do not alter what the run computes per epoch.
RESUMABLE_OVERRIDES = ("epochs", "device")


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
    run = RunDirectory.create(path, resume=resume) if placement.is_main else RunDirectory(path)
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
                               seed=config.seed, noise_sd=config.noise_sd, limit=config.train_limit, **common)
    test_loader = make_loader(config.dataset, "test", data_dir, 500, placement.device, train=False,
                              limit=config.test_limit, **common)
    source = getattr(getattr(train_loader, "dataset", None), "source", f"folders:{data_dir}")
    meta = {
        "architecture": canonical_model_name(config.model),
        "num_classes": info.num_classes,
        "dataset": config.dataset,
        "data_source": source,
        "n_train": len(train_loader) * config.batch_size * placement.world_size,
        "recipe": config.recipe,
        "hyperparameters": config.to_dict(),
        "seed": config.seed,
        "noise_sd": config.noise_sd,
        **task.describe(),
        **extra_meta,
    }
    if placement.is_main and not resume:
        run.write_config(config.to_dict())
    trainer = Trainer(config, task, train_loader, test_loader, run, placement, meta, announce)
    if resume and run.latest_state() is not None:  # else killed before its first state: start afresh
        trainer.resume()
    return trainer.fit(stop_after=stop_after)


def train_command(
    config: TrainConfig, *, run_dir: Path | None, data_dir: str | None, resume: bool, stop_after: int | None,
    allow_embedded: bool, announce: Callable[[str], None] = print,
) -> tuple[RunDirectory, dict[str, Any]]:
    run, placement = prepare_run(config, run_dir, resume)
    info = dataset_info(config.dataset)
    student = build_model(config.model, info.num_classes, info.mean, info.std)
    row = execute(config, CrossEntropyTask(student), run, placement, data_dir=resolve_data_dir(data_dir), resume=resume,
                  stop_after=stop_after, allow_embedded=allow_embedded, extra_meta={"kind": "train"}, announce=announce)
    return run, row
