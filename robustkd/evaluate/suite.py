"""The suite contract: what an evaluation suite declares, and the one method it implements.

A suite is one module in ``robustkd/evaluate/suites/`` holding a class registered with ``@register_suite``::

    @register_suite
    class CleanSuite(Suite[CleanParams]):
        name = "clean"
        params = CleanParams                   # frozen dataclass: the only place defaults (and ranges) live
        metrics = (Metric("top1", "percent", True, column="clean_acc"), ...)
        plots = (Plot("confusion.png", "confusion matrix"),)
        resumable = False                      # True: the work folder survives a kill and is resumed
        extends = frozenset()                  # parameters that only add work items (resume keeps the rest)
        needs = frozenset({Need.TEACHER})

        def run(self, ctx, params, work) -> SuiteOutput: ...

``run`` gets the shared context (model, test images, clean logits, data, shard), its validated parameters and
a work folder; it writes its files there and returns a typed ``SuiteOutput`` holding only declared metrics.
A resumable suite's work items (cells, batches, images) are shared out by ``ctx.shard.todo`` and kept as rows of
a ``ShardTable``; after ``ctx.shard.wait_for_all()`` a process that does not summarise returns None. The runner
(``robustkd/evaluate/runner.py``) alone owns result naming, temporary and partial folders, resume keys, the
summary (``summary.py``) and recording; the store, leaderboard and report read these declarations.
Modules in the suites package are imported automatically: adding a suite is adding one module.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import pkgutil
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, TypeVar

from robustkd.errors import RobustKDError
from robustkd.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from robustkd.evaluate.context import SuiteContext

P = TypeVar("P")
SUITES_PACKAGE = "robustkd.evaluate.suites"


@dataclass(frozen=True)
class Metric:
    """One summary metric, or a family of them: ``key`` may hold ``{placeholders}`` (``acc_{corruption}``).

    ``higher_is_better`` is None for diagnostics without a direction; ``column`` names the leaderboard column
    that shows it, with ``column_unit`` when the column's unit text says more than ``unit``. A family's column
    shows one member, chosen by a leaderboard option for each placeholder among the values in ``grid``
    (``certified_acc_r{radius}`` with ``--radius 0.25``).
    """

    key: str
    unit: str
    higher_is_better: bool | None
    column: str | None = None
    column_unit: str | None = None
    grid: dict[str, tuple[str, ...]] | None = field(default=None, hash=False)

    def matches(self, key: str) -> bool:
        return _pattern(self.key).fullmatch(key) is not None

    @property
    def is_family(self) -> bool:
        return "{" in self.key


@cache
def _pattern(key: str) -> re.Pattern[str]:
    parts = re.split(r"\{[a-z_]+\}", key)
    return re.compile("(.+?)".join(re.escape(part) for part in parts))


@dataclass(frozen=True)
class Plot:
    """A PNG the suite writes into its result folder, and the report's caption for it."""

    file: str
    caption: str


class Need(str, enum.Enum):
    """What a suite needs from the context, checked before anything runs."""

    TEACHER = "teacher"                # a teacher checkpoint (--teacher); its clean logits are computed once
    CLEAN_LOGITS = "clean_logits"      # its work items use the clean logits (every shard then has them)


@dataclass
class SuiteOutput:
    """What ``Suite.run`` returns: metric values (declared keys only, finite or declared diagnostics), the
    protocol facts to record beside the parameters, and ``counts``: the number of images behind a metric
    family where it differs from the clean pass (``{"cells": 2000}``, ``{"square": 100}``)."""

    metrics: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class Suite(ABC, Generic[P]):
    """Base of every evaluation suite; see the module docstring for the declarations."""

    name: ClassVar[str]
    params: ClassVar[type]
    metrics: ClassVar[tuple[Metric, ...]]
    plots: ClassVar[tuple[Plot, ...]] = ()
    resumable: ClassVar[bool] = False
    extends: ClassVar[frozenset[str]] = frozenset()
    needs: ClassVar[frozenset[Need]] = frozenset()
    position: ClassVar[int] = 100  # order of the suite's leaderboard columns and report sections
    qualifiers: ClassVar[tuple[str, ...]] = ()  # protocol keys that qualify its columns (shown by the leaderboard)

    @abstractmethod
    def run(self, ctx: SuiteContext, params: P, work: Path) -> SuiteOutput:
        """Evaluate ``ctx.model``; write files into ``work``; return the metrics."""

    def check(self, params: P) -> None:
        """Checks across fields, beyond each field's own range (raise RobustKDError); none by default."""

    def check_inputs(self, params: P, dataset: str, test_labels: Callable[[], Any]) -> None:
        """Checks of the files the suite itself reads for ``dataset`` (raise RobustKDError), run before any suite
        runs (robustkd/evaluate/suite_inputs.py); ``test_labels()`` loads the clean pass's labels (a tensor) on
        first call. None by default."""

    def check_model(self, params: P, model_info: dict[str, Any]) -> None:
        """Checks of a model's recorded sidecar against the suite's parameters (raise RobustKDError), run for every
        model before any suite runs (robustkd/jobs/evaluate.py). None by default."""

    def selection(self, protocol: dict[str, Any]) -> str:
        """A short label (e.g. ``skip99``) for the test images this suite chose itself out of the clean pass,
        read from a result's recorded ``protocol``; '' when its metrics cover every image of the pass. It
        joins the results store's subset label, so tables never call such a result the full test set."""
        return ""

    def recorded_details(self, result_dir: Path) -> dict[str, tuple[float, str]]:
        """Extra (value, unit) rows for the results database read from a finished result folder (the
        corruption grid's cells); none by default."""
        return {}

    @classmethod
    def metric(cls, key: str) -> Metric:
        """The declaration that ``key`` falls under (an exact key before a family)."""
        exact = [m for m in cls.metrics if m.key == key]
        found = exact or [m for m in cls.metrics if m.is_family and m.matches(key)]
        if not found:
            raise RobustKDError(f"{cls.name} suite: metric {key!r} is not declared")
        return found[0]


SUITES: Registry[type[Suite]] = Registry("suite")


def register_suite(cls: type[Suite]) -> type[Suite]:
    """Class decorator: check the declarations, then register the suite under ``cls.name``."""
    if not dataclasses.is_dataclass(cls.params):
        raise TypeError(f"suite {cls.name}: params must be a dataclass")
    fields = {f.name for f in dataclasses.fields(cls.params)}
    if not cls.extends <= fields:
        raise TypeError(f"suite {cls.name}: extends names unknown parameters {sorted(cls.extends - fields)}")
    if not set(cls.qualifiers) <= fields:
        raise TypeError(f"suite {cls.name}: qualifiers name unknown parameters {sorted(set(cls.qualifiers) - fields)}")
    keys = [m.key for m in cls.metrics]
    if len(set(keys)) != len(keys):
        raise TypeError(f"suite {cls.name}: a metric is declared twice")
    for metric in cls.metrics:
        if metric.column and set(re.findall(r"\{([a-z_]+)\}", metric.column)) != set(metric.grid or {}):
            raise TypeError(f"suite {cls.name}: column {metric.column} needs a grid for each of its placeholders")
    SUITES.add(cls.name, cls)
    return cls


@cache
def load_suites() -> Registry[type[Suite]]:
    """Import every module of the suites package (each registers itself) and return the registry."""
    package = importlib.import_module(SUITES_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{SUITES_PACKAGE}.{module.name}")
    return SUITES


def suite_class(name: str) -> type[Suite]:
    """The registered suite ``name``; an unknown name is a RobustKDError listing the known ones."""
    return load_suites().get(name)


def suites_in_order() -> list[type[Suite]]:
    """Every registered suite, by ``position`` then name."""
    registry = load_suites()
    return sorted((registry.get(name) for name in registry.names()), key=lambda cls: (cls.position, cls.name))
