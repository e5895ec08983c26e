"""checkpoints/registry.json: named checkpoints with their SHA-256, and adding a finished run's weights to it.

``register_run`` copies a finished run's ``model.safetensors`` + ``model.json`` (the final weights, no training
state) into a folder of the repository and appends an entry naming them: architecture, dataset, method, seed,
epochs, top-1/top-5 of the run's last evaluation, the weights' and the data files' SHA-256, the recipe and the
command that trained it. Copies are atomic (weights first, sidecar last, as ``save_checkpoint`` writes them) and
never replace different files; the registry is rewritten atomically and never holds two entries of one name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from robustkd.checkpoint.io import load_checkpoint, sha256_file
from robustkd.errors import RobustKDError
from robustkd.utils.atomic import atomic_path, write_text_atomic

REGISTRY_FORMAT = "robustkd-checkpoint-registry/1"
RECIPE_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "milestones", "lr_decay", "seed", "noise_sd",
               "train_limit", "holdout")


def read_registry(path: Path) -> dict[str, Any]:
    """The registry at ``path`` (an empty one when the file does not exist)."""
    if not path.is_file():
        return {"format": REGISTRY_FORMAT, "checkpoints": []}
    registry = json.loads(path.read_text())
    if registry.get("format") != REGISTRY_FORMAT:
        raise RobustKDError(f"registry: {path} has format {registry.get('format')!r}; expected {REGISTRY_FORMAT}")
    return registry


def run_entry(run_dir: Path, *, name: str, path: str, command: str, trained_on: str,
              data_sha256: dict[str, str]) -> dict[str, Any]:
    """The registry entry of the finished run in ``run_dir`` (its sidecar and hash checked by loading it)."""
    checkpoint = load_checkpoint(run_dir, "cpu")
    meta = checkpoint.meta
    metrics = meta.get("metrics") or {}
    if "test_top1" not in metrics or "test_top5" not in metrics:
        raise RobustKDError(f"registry: {run_dir} records no test_top1/test_top5 of its last epoch")
    hyperparameters = meta.get("hyperparameters") or {}
    if meta.get("epoch") != hyperparameters.get("epochs"):
        raise RobustKDError(f"registry: {run_dir} is not finished (epoch {meta.get('epoch')} of "
                            f"{hyperparameters.get('epochs')})")
    entry = {
        "name": name, "path": path, "architecture": meta["architecture"], "dataset": meta["dataset"],
        "num_classes": meta["num_classes"], "method": meta.get("method", "ce"), "kind": meta.get("kind"),
        "seed": meta.get("seed"), "n_train": meta.get("n_train"), "epoch": meta.get("epoch"),
        "top1": metrics["test_top1"], "top5": metrics["test_top5"], "test_images": metrics.get("test_n"),
        "weights_sha256": checkpoint.sha256, "data_sha256": data_sha256,
        "recipe": {key: hyperparameters[key] for key in RECIPE_KEYS if key in hyperparameters},
        "trained_on": trained_on, "command": command,
    }
    for key in ("method_options", "teacher", "cohort"):
        if meta.get(key) is not None:
            entry[key] = meta[key]
    return entry


def _copy_unless_same(source: Path, target: Path) -> None:
    if target.exists():
        if sha256_file(target) != sha256_file(source):
            raise RobustKDError(f"registry: {target} exists with other content; not replaced")
        return
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def register_run(run_dir: Path, folder: Path, registry_path: Path, *, name: str, command: str, trained_on: str,
                 data_sha256: dict[str, str], repo_root: Path) -> dict[str, Any]:
    """Copy the finished run ``run_dir`` into ``folder`` and add (or confirm) its entry named ``name``.

    An entry of that name with other weights is refused; one with the same weights is left as it is.
    """
    registry = read_registry(registry_path)
    entry = run_entry(run_dir, name=name, path=folder.resolve().relative_to(repo_root.resolve()).as_posix(),
                      command=command, trained_on=trained_on, data_sha256=data_sha256)
    existing = next((known for known in registry["checkpoints"] if known["name"] == name), None)
    if existing is not None and existing["weights_sha256"] != entry["weights_sha256"]:
        raise RobustKDError(f"registry: {registry_path} already names other weights {name!r}; not replaced")
    folder.mkdir(parents=True, exist_ok=True)
    _copy_unless_same(run_dir / "model.safetensors", folder / "model.safetensors")
    _copy_unless_same(run_dir / "model.json", folder / "model.json")
    if load_checkpoint(folder, "cpu").sha256 != entry["weights_sha256"]:
        raise RobustKDError(f"registry: the copy in {folder} does not load with the run's SHA-256")
    if existing is None:
        registry["checkpoints"].append(entry)
        write_text_atomic(registry_path, json.dumps(registry, indent=2) + "\n")
    return existing or entry
