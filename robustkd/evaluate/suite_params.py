"""Suite parameters: typed dataclass fields that carry their accepted range, and their validation.

A suite's params dataclass is the one place its defaults live. Fields made with ``param`` state their
contract in metadata (a numeric range, a set of choices, a non-empty array, a path); ``check_value``
validates one value from a suite file (type, then range) and ``validate_params`` a whole instance (the
runner calls it, so the Python API is checked as the CLI is). Every failure is one ``RobustKDError``
naming the field, the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from robustkd.errors import RobustKDError


@dataclass(frozen=True)
class Range:
    """``low``/``high`` bounds (None: unbounded); ``open_low``/``open_high`` exclude the bound itself."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.open_high and value == self.high)))

    def describe(self) -> str:
        low = "" if self.low is None else f"{'>' if self.open_low else '>='} {self.low:g}"
        high = "" if self.high is None else f"{'<' if self.open_high else '<='} {self.high:g}"
        return " and ".join(part for part in (low, high) if part) or "finite"


def param(default: Any, *, low: float | None = None, high: float | None = None, open_low: bool = False,
          open_high: bool = False, choices: tuple[Any, ...] = (), nonempty: bool = False, path: bool = False,
          reserved: tuple[str, ...] = ()) -> Any:
    """A dataclass field with its contract. For arrays, ``low``/``high``/``choices`` apply to each element;
    ``path``: a file or folder ("" for none; ``reserved`` words are names, not paths), resolved against the
    suite file's folder when relative."""
    metadata = {"range": Range(low, high, open_low, open_high), "choices": choices, "nonempty": nonempty,
                "path": path, "reserved": reserved}
    return dataclasses.field(default=default, metadata=metadata)


def _element_type(field: dataclasses.Field) -> type:
    default = field.default
    if isinstance(default, tuple):
        return type(default[0]) if default else _tuple_hint(field)
    return type(default)


def _tuple_hint(field: dataclasses.Field) -> type:
    hint = str(field.type)
    return float if "float" in hint else int if "int" in hint else str


def _fits(value: Any, expected: type) -> bool:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, expected) and isinstance(value, bool) == (expected is bool)


def _typed(where: str, key: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
        raise RobustKDError(f"{where}: {key} = {value!r}; expected {_article(expected)}")
    return value


def _article(expected: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(expected,
                                                                                          expected.__name__)


def _in_contract(where: str, key: str, value: Any, field: dataclasses.Field, shown: Any) -> None:
    bounds: Range = field.metadata.get("range", Range())
    choices = field.metadata.get("choices", ())
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not bounds.contains(value):
        raise RobustKDError(f"{where}: {key} = {shown!r}; expected a number {bounds.describe()}")
    if choices and value not in choices:
        raise RobustKDError(f"{where}: {key} = {shown!r}; expected one of: {', '.join(map(str, choices))}")


def check_value(where: str, key: str, value: Any, field: dataclasses.Field) -> Any:
    """``value`` (from a suite file) converted to the field's type and checked against its contract."""
    element = _element_type(field)
    if isinstance(field.default, tuple):
        if not isinstance(value, (list, tuple)) or not all(_fits(item, element) for item in value):
            raise RobustKDError(f"{where}: {key} = {value!r}; expected an array of {element.__name__}")
        items = tuple(_typed(where, key, item, element) for item in value)
        if field.metadata.get("nonempty") and not items:
            raise RobustKDError(f"{where}: {key} = []; expected a non-empty array")
        repeated = next((item for index, item in enumerate(items) if item in items[:index]), None)
        if repeated is not None:  # each entry is one work item (a cell, an attack, a curve point): never twice
            raise RobustKDError(f"{where}: {key} = {list(value)!r} names {repeated!r} twice; expected distinct values")
        for item in items:
            _in_contract(where, key, item, field, list(value))
        return items
    checked = _typed(where, key, value, element)
    _in_contract(where, key, checked, field, value)
    return checked


def validate_params(where: str, params: Any) -> None:
    """Check every field of a params instance against its contract (RobustKDError on the first failure)."""
    for field in dataclasses.fields(params):
        check_value(where, field.name, getattr(params, field.name), field)
