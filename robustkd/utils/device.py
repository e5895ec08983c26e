"""Device selection: never hard-coded; CUDA, then MPS, then CPU unless the user names one.

Resolving a device also turns TF32 off (cuDNN convolutions use it by default on Ampere and later GPUs): float32
means float32 on every device, and lower precision is asked for with ``--amp``. Seen on an H200
(2026-12-04) with TF32 on, its likely cause: the committed resnet20 teacher scored 63.02 % / 89.21 % on the
GPU against 63.00 % / 89.23 % on the CPU (a net 2 of 10,000 top-1 predictions).
"""

from __future__ import annotations

import torch

from robustkd.errors import RobustKDError


def resolve_device(name: str | None = None) -> torch.device:
    """Return the device named ``name`` ('auto', 'cpu', 'cuda', 'cuda:1', 'mps'), checking it exists."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise RobustKDError(f"--device: unknown device {name!r}; expected auto, cpu, cuda[:N] or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RobustKDError(f"--device: {name!r} requested but CUDA is not available here; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RobustKDError(f"--device: {name!r} requested but MPS is not available here; use --device cpu")
    return device
