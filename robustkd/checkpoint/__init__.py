"""Checkpoints: safetensors weights plus a JSON sidecar, written atomically, loaded without pickle."""

from robustkd.checkpoint.io import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    load_checkpoint,
    load_foreign_weights,
    read_sidecar,
    save_checkpoint,
    sha256_file,
)

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "load_checkpoint", "load_foreign_weights", "read_sidecar", "save_checkpoint", "sha256_file"]
