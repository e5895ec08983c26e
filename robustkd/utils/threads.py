"""CPU threads of a robustkd process: ``--threads N``, else ``OMP_NUM_THREADS``, else torch's default.

torch uses one intra-op thread per core by default. That is the fastest for one process on an idle
machine, and the slowest when several processes share the cores: their OpenMP threads spin waiting for
each other (measured on this project's 2-core machine: AutoAttack on 200 images, 17 min with 2 threads
on a loaded machine, 66 s with 1). Run several evaluations at once with ``--threads 1`` each.
"""

from __future__ import annotations

import os

import torch

from robustkd.errors import RobustKDError


def set_threads(threads: int | None) -> int:
    """Apply ``threads`` (None: keep the environment's or torch's choice); return the count in use."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise RobustKDError(f"--threads {threads!r}: expected a positive integer")
        torch.set_num_threads(threads)
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) >= 1:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return torch.get_num_threads()
