"""A test hook for kill-anywhere tests: ``ROBUSTKD_KILL_AT=N`` SIGKILLs the process at its N-th save boundary.

Every durable write calls ``boundary(name)`` just before and just after the step that makes it visible
(the rename of an atomic file or folder, the append of a work-table row). With ``ROBUSTKD_KILL_AT`` unset
this is one environment lookup; ``ROBUSTKD_KILL_AT=0`` only counts, appending ``<n> <name>`` lines to the
file named by ``ROBUSTKD_KILL_LOG``, so a test can enumerate a command's boundaries and then kill it at
each one (tests/test_kill_anywhere.py). ``ROBUSTKD_KILL_RANK=R`` limits both to torchrun's rank R.
"""

from __future__ import annotations

import os
import signal

_seen = 0


def boundary(name: str) -> None:
    target = os.environ.get("ROBUSTKD_KILL_AT")
    if not target:
        return
    rank = os.environ.get("ROBUSTKD_KILL_RANK")  # under torchrun: only this rank counts and is killed
    if rank is not None and os.environ.get("RANK", "0") != rank:
        return
    global _seen
    _seen += 1
    log = os.environ.get("ROBUSTKD_KILL_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{_seen} {name}\n")
    if int(target) == _seen:
        os.kill(os.getpid(), signal.SIGKILL)
