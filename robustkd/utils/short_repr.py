"""``short_repr``: a bounded ``repr`` for error messages about values a user supplied.

A value read from a config file can be anything, including a YAML alias tree that expands to billions of
elements in 600 bytes; ``repr`` of it exhausts memory while the error message is being formatted. Every
message that shows such a value shows ``short_repr(value)``: nested containers cut after a few levels and
items, long strings and numbers abbreviated, the whole cut to ``limit`` characters.
"""

from __future__ import annotations

import reprlib

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdict = 8
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlong = 60


def short_repr(value: object, limit: int = 160) -> str:
    """``repr(value)``, bounded in work and length (see the module docstring)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
