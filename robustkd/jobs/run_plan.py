"""What a job will do with its run folder: skip it (finished), resume it (interrupted) or start it.

One vocabulary for ``--skip-finished``, ``--plan`` and studies: ``RunPlan.line`` is what ``--plan`` prints
(``train: to resume: runs/t``), and what a study's plan shows for each of its runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar

from robustkd.errors import RobustKDError
from robustkd.utils.folder_lock import refuse_if_held

Payload = TypeVar("Payload")


class Mode(str, Enum):
    """How a job treats its run folder: ``new`` (must not hold a run), ``resume`` (continue the run saved
    there, ``--resume``) or ``skip_finished`` (skip if finished, resume if interrupted, start if absent)."""

    NEW = "new"
    RESUME = "resume"
    SKIP_FINISHED = "skip_finished"


class Action(str, Enum):
    SKIP = "finished already"
    RESUME = "to resume"
    START = "to start"


@dataclass(frozen=True)
class RunPlan(Generic[Payload]):
    """The decided action for ``run_dir`` and what the run needs (its config, or a cohort's members)."""

    action: Action
    run_dir: Path | None
    payload: Payload

    @property
    def resume(self) -> bool:
        return self.action is Action.RESUME

    def line(self, command: str) -> str:
        """``<command>: <action>: <run_dir>``, the line ``--plan`` prints."""
        return f"{command}: {self.action.value}: {self.run_dir}"


def check_mode(mode: Mode, run_dir: Path | None) -> None:
    """A mode that continues or inspects a run needs the folder that holds it."""
    if mode is Mode.RESUME and run_dir is None:
        raise RobustKDError("--resume needs --run-dir naming the run to continue")
    if mode is Mode.SKIP_FINISHED and run_dir is None:
        raise RobustKDError("--skip-finished needs --run-dir naming the run to start, resume or skip")


def check_stop_after(stop_after: int | None) -> None:
    """``--stop-after EPOCH`` is a positive epoch number (0 trained nothing and left a config-only folder)."""
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise RobustKDError(f"--stop-after {stop_after!r}: expected a positive epoch number")


Planner = TypeVar("Planner", bound=Callable[..., Any])


def refusals_name_the_holder(plan: Planner) -> Planner:
    """A planner (``plan(request)``) whose refusal of ``request.run_dir`` - another run there, a cohort with
    other members - names the process holding that folder instead when another one is writing it
    (robustkd/utils/folder_lock.py): what it read was that process's run in progress."""

    @functools.wraps(plan)
    def planned(request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return plan(request, *args, **kwargs)
        except RobustKDError as exc:
            run_dir = getattr(request, "run_dir", None)
            if run_dir is not None and str(run_dir) in str(exc):  # a refusal of the folder, not of a flag
                refuse_if_held(run_dir)
            raise

    return planned  # type: ignore[return-value]
