"""A decorator registry with clear errors for unknown keys (as torchdistill's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from robustkd.errors import RobustKDError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps case-insensitive names to objects; ``kind`` names the thing in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._canonical: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, *aliases)
            return obj

        return decorator

    def add(self, name: str, obj: T, *aliases: str) -> None:
        for key in (name, *aliases):
            folded = key.lower()
            if folded in self._canonical:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._canonical[folded] = name
        self._entries[name] = obj

    def canonical(self, name: str) -> str:
        """The registered spelling of ``name``; raises RobustKDError listing the valid names."""
        try:
            return self._canonical[name.lower()]
        except KeyError:
            valid = ", ".join(self.names())
            raise RobustKDError(f"unknown {self.kind} {name!r}; expected one of: {valid}") from None

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        return list(self._entries)
