"""``robustkd study``: run a declarative study file (robustkd.jobs.study)."""

from __future__ import annotations

from typing import Any


def register(commands: Any) -> None:
    pass
