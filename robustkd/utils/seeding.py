"""Seeds: one base seed, and independent per-purpose streams derived from it."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

# The largest seed: torch generators take 64 unsigned bits, but the results database stores a seed as SQLite's
# signed 64-bit INTEGER, so a seed is at most 2^63 - 1 everywhere (flags, config files, study files).
MAX_SEED = 2**63 - 1


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(seed: int, *parts: int) -> int:
    """A reproducible 63-bit seed for a purpose identified by ``parts`` (e.g. epoch, stream id)."""
    sequence = np.random.SeedSequence([seed, *parts])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def enable_determinism() -> None:
    """Make CPU (and, where possible, GPU) kernels deterministic. Raises on ops with no deterministic form."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def capture_rng(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The global torch RNG state of the CPU and, for a CUDA ``device``, of that device."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def restore_rng(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    """Undo to a state from :func:`capture_rng`."""
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
