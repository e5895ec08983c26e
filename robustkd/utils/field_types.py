"""Type checks of a config dataclass's values against its annotations (values from TOML, YAML, JSON, flags).

Accepted: ``int`` (not a bool), ``float`` (an int or a float, finite), ``str``, ``bool``, ``list[int]``,
``dict[str, Any]``, ``X | None`` and ``Any``. A mismatch raises ``RobustKDError`` naming the field, its
value and what was expected, so a wrong type in a config file is one clear line instead of a traceback
deep inside training.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from robustkd.errors import RobustKDError
from robustkd.utils.short_repr import short_repr


def _matches(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if expected is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if expected is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(expected) or (Any,)
        return isinstance(value, list) and all(_matches(entry, item) for entry in value)
    if origin is dict:
        key, item = typing.get_args(expected) or (Any, Any)
        return isinstance(value, dict) and all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    return isinstance(value, expected) if isinstance(expected, type) else True


def _describe(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(expected))
    names = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
             type(None): "null"}
    if expected in names:
        return names[expected]
    if origin is list:
        return f"a list of {_describe(typing.get_args(expected)[0]).removeprefix('an ').removeprefix('a ')}s"
    if origin is dict:
        return "a table of option = value"
    return getattr(expected, "__name__", str(expected))


def check_field_types(instance: Any, context: str) -> None:
    """Raise RobustKDError for the first field of dataclass ``instance`` whose value does not fit its type."""
    hints = typing.get_type_hints(type(instance))
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if not _matches(value, hints[field.name]):
            raise RobustKDError(f"{context}: {field.name}={short_repr(value)}; expected {_describe(hints[field.name])}")
