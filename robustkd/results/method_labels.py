"""How a model's method is named and ordered in every results table (leaderboard, compare, report).

A *method label* is the distillation method plus, in brackets, the recorded options that differ from the
method's defaults today (``cmkd``, ``cmkd[cmkd_spearman=0.5]``): members of an ablation are told apart and a
default run is named by its bare method. A model trained from labels (``robustkd train``: teachers,
baselines) is ``trained``; a model with no recorded method ``-``.

This module imports nothing else from ``robustkd.results``, so every results module can build on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from functools import lru_cache

from robustkd.errors import RobustKDError

TRAINED = "trained"  # the label of a model trained from labels
NO_METHOD = "-"  # the label of a model with no recorded method


@lru_cache(maxsize=None)
def _default_options(method: str) -> dict | None:
    """The options ``method`` records when run with today's defaults; None for a method unknown here."""
    from robustkd.distill.methods import parse_method
    from robustkd.distill.options import DistillOptions

    try:
        return parse_method(method, DistillOptions()).recorded_options
    except (RobustKDError, KeyError, ValueError):
        return None


def format_value(value: object) -> str:
    """A recorded option value as shown in a label: floats in ``%g`` (``0.5``, ``2``), others as ``str``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _same(a: object, b: object) -> bool:
    """Equal as option values: numbers within a relative 1e-12 (2 == 2.0), anything else by ``==``."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def method_label(method: str, options_json: str | None) -> str:
    """``method`` plus, in brackets, the recorded options that differ from the method's defaults
    (``cmkd[cmkd_spearman=0.5]``); the bare method when none differ or the method is unknown here."""
    options = json.loads(options_json) if options_json else None
    defaults = _default_options(method)
    if not isinstance(options, dict) or defaults is None:
        return method
    # Keys the method does not read (another method's options) say nothing about this model.
    differing = {k: v for k, v in options.items() if k in defaults and not _same(v, defaults[k])}
    if not differing:
        return method
    return f"{method}[{','.join(f'{k}={format_value(v)}' for k, v in sorted(differing.items()))}]"


def model_method_label(kind: str | None, method: str | None, options_json: str | None) -> str:
    """The method column of a model: ``trained`` when ``kind`` is ``train``, ``-`` when no method is
    recorded (None, NaN or ''), else ``method_label(method, options_json)``."""
    if kind == "train":
        return TRAINED
    if not isinstance(method, str) or not method:  # None, NaN (a missing cell) or ''
        return NO_METHOD
    return method_label(method, options_json)


def base_method(label: str) -> str:
    """The method of a label without its options: ``cmkd[cmkd_spearman=0.5]`` -> ``cmkd``."""
    return label.split("[", 1)[0]


def is_variant(label: str) -> bool:
    """Whether the label names options that differ from its method's defaults (an ablation variant)."""
    return "[" in label


def method_order(methods: Iterable[object]) -> list[str]:
    """The distinct method labels in ``methods`` (a Series or any iterable; ``trained``, ``-``, '', None and
    NaN left out): registered methods in registry order (ce, kd, dist, cmkd, ...), then the others (composed
    methods such as ``kd+spearman``, ablation variants) in name order."""
    from robustkd.distill.methods import METHODS

    present = {m for m in methods if isinstance(m, str) and m and m not in (TRAINED, NO_METHOD)}
    known = [name for name in METHODS.names() if name in present]
    return known + sorted(present - set(known))
