"""The append-only table of finished work items that the resumable suites keep in their work folder.

Corruption cells, adversarial examples and certificates are each appended as complete lines in one write,
flushed and fsync'd, so a kill at any moment loses at most the item in flight. A torn last line (the kill
landed inside a write) is cut off when the table is opened again; a header that is not the expected one is
refused (the runner then starts the suite afresh rather than mixing formats).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from robustkd.errors import RobustKDError
from robustkd.utils.atomic import write_text_atomic
from robustkd.utils.fault_injection import boundary


class DurableTable:
    """``path``: the table file; ``columns``: its header; ``sep``: "," (CSV) or "\\t" (TSV)."""

    def __init__(self, path: Path, columns: Sequence[str], sep: str = ",") -> None:
        self.path, self.columns, self.sep = Path(path), list(columns), sep
        header = sep.join(self.columns) + "\n"
        if not self.path.is_file():
            write_text_atomic(self.path, header)
            return
        with open(self.path, "rb+") as handle:
            data = handle.read()
            if not data.startswith(header.encode()):
                raise RobustKDError(f"{self.path}: its header is not {header.strip()!r}; the work folder was "
                                    "written by another version; delete it to start afresh")
            if not data.endswith(b"\n"):  # a write cut short by a kill: drop the torn line
                handle.truncate(data.rfind(b"\n") + 1)
                handle.flush()
                os.fsync(handle.fileno())

    def read(self) -> pd.DataFrame:
        return pd.read_csv(self.path, sep=self.sep)

    def keys(self, *columns: str) -> set[tuple[Any, ...]]:
        """The finished items, as tuples of ``columns``."""
        rows = self.read()
        return set(zip(*(rows[column].tolist() for column in columns)))

    def append(self, rows: Sequence[Sequence[Any]]) -> None:
        """Append complete rows in one write, then fsync."""
        if any(len(row) != len(self.columns) for row in rows):
            raise ValueError(f"{self.path}: a row does not have {len(self.columns)} values")  # pragma: no cover
        text = "".join(self.sep.join(str(value) for value in row) + "\n" for row in rows)
        boundary(f"append {self.path.name}")
        with open(self.path, "a") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        boundary(f"appended {self.path.name}")
