"""CPU threads of a robustkd process: ``--threads N``, else ``OMP_NUM_THREADS``, else torch's default.

torch uses one intra-op thread per physical core by default: the fastest for one process, and kept as the
default because the thread count can change the last bits of a reduction (a run must not depend on the
load of the machine it ran on). Several processes with that many threads each slow each other down badly:
their OpenMP threads spin-wait for each other. Measured on this project's 2-core machine (2026-11-28, the
adversarial suite `study/adversarial` on 50 CIFAR-100 images, resnet20, a niced training job running
alongside): two evaluations at once took 215.5 s with 2 threads each and 52.2 s with 1 thread each
(4.1x), with identical results. So when the machine is already busy, robustkd says so (at a terminal) and
suggests ``--threads 1``; the count in use is recorded with every result.

The wait policy, unlike the count, does not change results: ``avoid_spin_waiting`` (called by the CLI
before torch is loaded) makes OpenMP threads wait passively when the machine is already busy, and
``share_environment`` gives concurrent child processes of a study a share of the cores each. One epoch of
resnet20 on 8,000 CIFAR-100 images, 2 cores: alone 15.3 s; two at once 74.5 s with default threads, 30.8 s
with ``OMP_WAIT_POLICY=PASSIVE``, 26.4 s with one thread each; passive waiting costs a job alone about 12 %
(benchmarks/bench_concurrent_jobs.py). This module imports torch only inside ``set_threads``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

from robustkd.errors import RobustKDError

WAIT_POLICY = "OMP_WAIT_POLICY"
MAX_THREADS = 1024  # --threads above this (or the core count, if larger) is a mistake: 100000 crashed OpenMP


def set_threads(threads: int | None) -> int:
    """Apply ``threads`` (None: keep the environment's or torch's choice); return the count in use."""
    import torch

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise RobustKDError(f"--threads {threads!r}: expected a positive integer")
        limit = max(MAX_THREADS, os.cpu_count() or 1)  # OpenMP aborts or crashes creating tens of thousands
        if threads > limit:
            raise RobustKDError(f"--threads {threads}: expected at most {limit} (this machine has "
                                f"{os.cpu_count()} cores)")
        torch.set_num_threads(threads)
    elif _positive_int(os.environ.get("OMP_NUM_THREADS")):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    elif interactive() and torch.get_num_threads() > 1 and busy_cores() >= torch.get_num_threads():
        print(f"robustkd: note: the machine is busy (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); "
              f"{torch.get_num_threads()} threads per process compete with the others: consider --threads 1 "
              "(docs/benchmarks.md)", file=sys.stderr)
    return torch.get_num_threads()


def avoid_spin_waiting(environ: MutableMapping[str, str] = os.environ, load: float | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` when it is unset and the machine is already busy.

    Busy: the 1-minute load average (``load``, else ``os.getloadavg()``) is at least 1.0, one core's worth of
    other work (not rounded: a job that just ended leaves a decaying average, under 1.0 within a minute).
    Returns True only when it set the variable. An explicit ``OMP_WAIT_POLICY`` (any value) is left alone.
    OpenMP reads the variable once, when torch is loaded: if torch is already imported nothing is changed
    and False is returned. Does not change results (only how idle threads wait), nor the thread count.
    """
    if "torch" in sys.modules or WAIT_POLICY in environ:
        return False
    if (load if load is not None else _load_average()) < 1.0:
        return False
    environ[WAIT_POLICY] = "PASSIVE"
    return True


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - platforms without a load average
        return 0.0


def share_environment(jobs: int, cores: int | None = None, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of one of ``jobs`` concurrent child processes (a copy of ``base``; ``base`` unchanged).

    ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``: ``max(1, cores // jobs)`` (``cores``: ``os.cpu_count()``),
    and ``OMP_WAIT_POLICY=PASSIVE`` when ``jobs > 1``. A positive integer ``OMP_NUM_THREADS`` already in
    ``base`` wins (and ``MKL_NUM_THREADS`` follows it unless also set), as does an ``OMP_WAIT_POLICY`` there.
    The count depends on ``jobs`` and the core count only, never on the machine's load.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise RobustKDError(f"jobs {jobs!r}: expected a positive integer")
    environment = dict(base)
    explicit = environment.get("OMP_NUM_THREADS")
    threads = explicit if _positive_int(explicit) else str(max(1, (cores or os.cpu_count() or 1) // jobs))
    environment["OMP_NUM_THREADS"] = threads
    if not _positive_int(environment.get("MKL_NUM_THREADS")):
        environment["MKL_NUM_THREADS"] = threads
    if jobs > 1:
        environment.setdefault(WAIT_POLICY, "PASSIVE")
    return environment


def interactive() -> bool:
    """A person at a terminal (the note is for them; scripts' and tests' output stays as it is)."""
    return sys.stderr.isatty()


def busy_cores() -> int:
    """Cores kept busy by other processes: the 1-minute load average, rounded (0 where it is unknown)."""
    try:
        return round(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - platforms without a load average
        return 0


def _positive_int(value: str | None) -> bool:
    return value is not None and value.strip().isdigit() and int(value) >= 1
