"""CPU threads of a robustkd process: ``--threads N``, else ``OMP_NUM_THREADS``, else torch's default.

torch uses one intra-op thread per physical core by default: the fastest for one process, and kept as the
default because the thread count can change the last bits of a reduction (a run must not depend on the
load of the machine it ran on). Several processes with that many threads each slow each other down badly:
their OpenMP threads wait for each other. Measured on this project's 2-core machine (2026-11-28, the
adversarial suite `study/adversarial` on 50 CIFAR-100 images, resnet20, a niced training job running
alongside): two evaluations at once took 215.5 s with 2 threads each and 52.2 s with 1 thread each
(4.1x), with identical results. So when the machine is already busy, robustkd says so (at a terminal) and
suggests ``--threads 1``; the count in use is recorded with every result.
"""

from __future__ import annotations

import os
import sys

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
    elif interactive() and torch.get_num_threads() > 1 and busy_cores() >= torch.get_num_threads():
        print(f"robustkd: note: the machine is busy (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); "
              f"{torch.get_num_threads()} threads per process compete with the others: consider --threads 1 "
              "(docs/benchmarks.md)", file=sys.stderr)
    return torch.get_num_threads()


def interactive() -> bool:
    """A person at a terminal (the note is for them; scripts' and tests' output stays as it is)."""
    return sys.stderr.isatty()


def busy_cores() -> int:
    """Cores kept busy by other processes: the 1-minute load average, rounded (0 where it is unknown)."""
    try:
        return round(os.getloadavg()[0])
    except OSError:  # pragma: no cover - platforms without a load average
        return 0
