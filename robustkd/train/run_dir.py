"""A run directory: resolved config, metric logs, per-epoch training state, and the latest model checkpoint.

    <run>/config.json                       resolved config
    <run>/metrics.jsonl, metrics.csv        one row per finished epoch
    <run>/state/epoch_NNNN/                 training state after epoch N (model, optimizer, state.json)
    <run>/model.safetensors, model.json     the latest model checkpoint (the robustkd checkpoint format)

Each epoch's state is written into a temporary folder and renamed into place, so a folder named
``epoch_NNNN`` is always complete; older ones are pruned. A run never reuses another run's directory.
While a command trains, ``<run>/.robustkd.lock`` holds the folder for it (robustkd/utils/folder_lock.py); the
lock file is bookkeeping: it never makes a folder look like it holds a run, and ``discard`` keeps it for its
holder to remove.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from robustkd.checkpoint import save_checkpoint, sha256_file
from robustkd.errors import RobustKDError
from robustkd.models import Normalized
from robustkd.utils.atomic import is_leftover_temporary, write_json_atomic, write_text_atomic
from robustkd.utils.fault_injection import boundary
from robustkd.utils.safetensors_io import save_safetensors
from robustkd.utils.folder_lock import FolderLock, clear_folder, is_lock_file

KEEP_STATES = 2


class RunDirectory:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock: FolderLock | None = None  # set by the command that holds the folder

    def release_lock(self) -> None:
        """Release the folder lock the command took (robustkd/utils/folder_lock.py), if any."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @classmethod
    def create(cls, path: Path, *, resume: bool) -> RunDirectory:
        """Open ``path`` for a new run (it must be absent, empty, or hold only the config of a run killed before
        it wrote anything else) or, with ``resume``, an existing one (which may hold no training state yet:
        then the run starts from its saved config)."""
        run = cls(path)
        if resume:
            if run.latest_state() is None and not run.config_path.is_file():
                raise RobustKDError(f"--resume: {path} holds no run to resume (no config.json, no training state)")
            return run
        if run.path.exists() and not run.path.is_dir():
            raise RobustKDError(f"--run-dir {path} is a file; expected a folder for the run")
        if run.path.is_dir():
            # A run killed before its first epoch left at most its config, a write's temporary file and its
            # lock file (kept: the lock of this command, or a killed one's that this command took over).
            entries = [entry for entry in run.path.iterdir() if not is_lock_file(entry)]
            leftovers = [entry for entry in entries if is_leftover_temporary(entry)]
            if [entry.name for entry in entries if entry not in leftovers] not in ([], [run.config_path.name]):
                raise RobustKDError(f"run directory {path} already holds a run; pass --resume to continue it or choose another --run-dir")
            for entry in leftovers:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            run.config_path.unlink(missing_ok=True)
        run.path.mkdir(parents=True, exist_ok=True)
        return run

    def discard(self) -> None:
        """Remove a run that never reached its first checkpoint (only robustkd's own files are in it); a lock
        file stays for its holder, which removes it and the then empty folder when it releases the lock."""
        if self.latest_state() is None and self.path.is_dir():
            clear_folder(self.path, remove=True)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def model_stem(self) -> Path:
        return self.path / "model"

    @property
    def state_root(self) -> Path:
        return self.path / "state"

    def latest_state(self) -> tuple[int, Path] | None:
        if not self.state_root.is_dir():
            return None
        epochs = sorted(
            int(folder.name.removeprefix("epoch_"))
            for folder in self.state_root.iterdir()
            if folder.is_dir() and folder.name.startswith("epoch_") and folder.name.removeprefix("epoch_").isdigit()
        )
        if not epochs:
            return None
        return epochs[-1], self.state_root / f"epoch_{epochs[-1]:04d}"

    def save_state(self, epoch: int, model: Normalized, optimizer: torch.optim.Optimizer, extra: dict[str, Any]) -> None:
        """Write the training state after ``epoch`` atomically (a temporary folder renamed into place)."""
        final = self.state_root / f"epoch_{epoch:04d}"
        tmp = self.state_root / f".epoch_{epoch:04d}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        weights = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
        save_safetensors(weights, tmp / "model.safetensors")  # a full disk: OSError naming the file
        save_safetensors(_optimizer_tensors(model, optimizer), tmp / "optimizer.safetensors")
        state = {
            **extra,
            "epoch": epoch,
            "model_sha256": sha256_file(tmp / "model.safetensors"),
            "optimizer_sha256": sha256_file(tmp / "optimizer.safetensors"),
        }
        (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        boundary(f"rename state {final.name}")
        tmp.rename(final)
        boundary(f"renamed state {final.name}")
        for folder in sorted(self.state_root.glob("epoch_*"))[:-KEEP_STATES]:
            shutil.rmtree(folder, ignore_errors=True)

    def load_state(self, model: Normalized, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Restore the latest state into ``model`` and ``optimizer``; returns its state.json."""
        latest = self.latest_state()
        if latest is None:
            raise RobustKDError(f"--resume: {self.path} holds no training state to resume from")
        _, folder = latest
        state = json.loads((folder / "state.json").read_text())
        for name in ("model", "optimizer"):
            if sha256_file(folder / f"{name}.safetensors") != state[f"{name}_sha256"]:
                raise RobustKDError(f"--resume: {folder / (name + '.safetensors')} does not match its state.json; the state is damaged")
        device = next(model.parameters()).device
        model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
        _restore_optimizer(model, optimizer, load_file(str(folder / "optimizer.safetensors"), device=str(device)))
        return state

    def save_model(self, model: Normalized, meta: dict[str, Any]) -> Path:
        return save_checkpoint(self.model_stem, model, meta)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        write_text_atomic(self.path / "metrics.jsonl", "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
        write_text_atomic(self.path / "metrics.csv", pd.DataFrame(rows).to_csv(index=False))

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.config_path, config)


def _optimizer_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """SGD momentum buffers keyed by parameter name (safetensors holds tensors only)."""
    tensors = {}
    for name, parameter in model.named_parameters():
        buffer = optimizer.state.get(parameter, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"momentum_buffer.{name}"] = buffer.detach().cpu().contiguous()
    return tensors


def _restore_optimizer(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    for name, parameter in model.named_parameters():
        key = f"momentum_buffer.{name}"
        if key in tensors:
            optimizer.state[parameter]["momentum_buffer"] = tensors[key].clone()
