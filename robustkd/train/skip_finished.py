"""``--skip-finished``: what a run directory holds, and whether it is the run the flags describe.

A run directory is **absent** (missing, or an empty folder), **interrupted** (it holds ``config.json`` but
its latest checkpoint is not the final epoch; this includes a config-only folder of a run killed before
its first epoch) or **finished** (``model.json`` records the final epoch). A run found there must be the
run the flags describe: every config field must be equal except ``device`` (where it runs) and the
SHA-256 fields filled in when the run starts; and the checkpoints it was made from (the teacher, the
``--init-from`` parent) must still have the SHA-256 it recorded. Nothing here writes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

from robustkd.errors import RobustKDError

RunState = Literal["absent", "interrupted", "finished"]
# Not compared: where the run executes, and hashes recorded when the run starts (checked on their own).
IGNORED_FIELDS = ("device", "teacher_sha256", "init_sha256")
# (path field, sha256 field): a checkpoint the run was made from and the SHA-256 it recorded.
SOURCE_FIELDS = (("teacher", "teacher_sha256"), ("init_from", "init_sha256"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RobustKDError(f"--skip-finished: cannot read {path} ({exc})") from None
    if not isinstance(content, dict):
        raise RobustKDError(f"--skip-finished: {path} is not a JSON object")
    return content


def recorded_config(run_dir: Path) -> dict[str, Any]:
    """The config the run was last trained with: its checkpoint's ``hyperparameters`` (which include an
    extension by ``--resume --epochs N``), else ``config.json``."""
    sidecar = Path(run_dir) / "model.json"
    if sidecar.is_file():
        values = _read_json(sidecar).get("hyperparameters")
        if isinstance(values, dict):
            return values
    return _read_json(Path(run_dir) / "config.json")


def run_state(run_dir: Path) -> RunState:
    """absent, interrupted or finished (see the module docstring)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        return "absent"
    sidecar = run_dir / "model.json"
    if not sidecar.is_file():
        return "interrupted"
    epoch = _read_json(sidecar).get("epoch")
    epochs = recorded_config(run_dir).get("epochs")
    if not isinstance(epoch, int) or not isinstance(epochs, int):
        raise RobustKDError(f"--skip-finished: {sidecar} records no integer epoch and epochs; the run folder is damaged")
    return "finished" if epoch >= epochs else "interrupted"


def check_same_run(requested: Any, run_dir: Path) -> None:
    """Raise RobustKDError unless the run in ``run_dir`` was trained with the config ``requested`` (a
    TrainConfig dataclass) describes, from the same teacher / parent checkpoint."""
    recorded = recorded_config(run_dir)
    differing = []
    for field in dataclasses.fields(requested):
        if field.name in IGNORED_FIELDS:
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        wanted, saved = getattr(requested, field.name), recorded.get(field.name, default)
        if wanted != saved:
            differing.append(f"{field.name} {saved!r} (flags: {wanted!r})")
    if differing:
        raise RobustKDError(f"--skip-finished: {run_dir} holds another run than the flags describe: "
                            f"{'; '.join(differing)}; use another --run-dir, or --resume to continue it as saved")
    for path_field, sha_field in SOURCE_FIELDS:
        path, sha = recorded.get(path_field), recorded.get(sha_field)
        if path and sha:
            check_source_unchanged(run_dir, path_field, Path(path), str(sha))


def check_source_unchanged(run_dir: Path, what: str, checkpoint: Path, sha256: str) -> None:
    """Raise RobustKDError unless ``checkpoint``'s sidecar still records ``sha256`` (the run's source)."""
    from robustkd.checkpoint import read_sidecar

    try:
        meta, _ = read_sidecar(checkpoint)
    except RobustKDError as exc:
        raise RobustKDError(f"--skip-finished: {run_dir} was made from {what} {checkpoint}, which cannot be read "
                            f"({exc})") from None
    if meta["weights_sha256"] != sha256:
        raise RobustKDError(f"--skip-finished: {what} {checkpoint} changed since {run_dir} was trained from it "
                            f"(sha256 {str(meta['weights_sha256'])[:12]}…, recorded {sha256[:12]}…); "
                            f"use another --run-dir")
