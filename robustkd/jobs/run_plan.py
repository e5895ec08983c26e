"""What a job will do with its run folder: skip it (finished), resume it (interrupted) or start it.

One vocabulary for ``--skip-finished``, ``--plan`` and studies: ``RunPlan.line`` is what ``--plan`` prints
(``train: to resume: runs/t``), and what a study's plan shows for each of its runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Generic, TypeVar

from robustkd.errors import RobustKDError

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
