"""A work table written by several processes: each appends to its own ``DurableTable``, everyone reads them all.

``examples.csv`` is the table of a single process; shard K of N writes ``examples.shardKofN.csv`` beside it.
Reading (``keys``, ``read``) takes the union of every such file in the folder, whichever run or shard count
wrote it, up to each file's last complete line (another process may be writing its next one), with a row that
two files both hold (two shards that each did an item) kept once. ``consolidate`` writes the union as the
plain table, in the order of the work items, and removes the shard files: the result folder then holds what a
single process would have left.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from robustkd.errors import RobustKDError
from robustkd.evaluate.durable_table import DurableTable
from robustkd.evaluate.sharding import Shard
from robustkd.utils.atomic import write_text_atomic


class ShardTable:
    """``folder/name`` (``cells.csv``) as written by ``shard``; ``key``: the columns naming one item's row."""

    def __init__(self, folder: Path, name: str, columns: Sequence[str], shard: Shard, key: Sequence[str],
                 sep: str = ",") -> None:
        self.folder, self.name, self.columns, self.key, self.sep = Path(folder), name, list(columns), list(key), sep
        stem, dot, extension = name.rpartition(".")
        self._stem, self._extension = stem, dot + extension
        self._own_path = self.folder / f"{stem}{shard.suffix}{self._extension}"
        self._own: DurableTable | None = None
        if self._own_path.is_file():  # cut a line torn by a kill before anything reads the table
            self._own = DurableTable(self._own_path, columns, sep)

    def files(self) -> list[Path]:
        plain = self.folder / self.name
        shards = sorted(self.folder.glob(f"{self._stem}.shard*of*{self._extension}"))
        return ([plain] if plain.is_file() else []) + shards

    def read(self) -> pd.DataFrame:
        """Every complete row of every file, once per key."""
        frames = [frame for frame in (self._read_complete(path) for path in self.files()) if len(frame)]
        if not frames:
            return pd.read_csv(io.StringIO(self.sep.join(self.columns) + "\n"), sep=self.sep)
        rows = pd.concat(frames, ignore_index=True)
        return rows.drop_duplicates(subset=self.key, keep="first").reset_index(drop=True)

    def keys(self, *columns: str) -> set[tuple[Any, ...]]:
        rows = self.read()
        return set(zip(*(rows[column].tolist() for column in columns)))

    def append(self, rows: Sequence[Sequence[Any]]) -> None:
        """Append complete rows to this process's own file (created on the first append), then fsync."""
        if self._own is None:
            self._own = DurableTable(self._own_path, self.columns, self.sep)
        self._own.append(rows)

    def consolidate(self, order: Callable[[pd.DataFrame], pd.Series]) -> pd.DataFrame:
        """Write the union as the plain table sorted by ``order(rows)`` (a sortable key per row), remove the
        shard files, and return the rows."""
        rows = self.read()
        rows = rows.iloc[order(rows).argsort(kind="stable").to_numpy()].reset_index(drop=True)
        shard_files = [path for path in self.files() if path.name != self.name]
        if shard_files:
            write_text_atomic(self.folder / self.name, rows.to_csv(sep=self.sep, index=False))
            for path in shard_files:
                path.unlink()
        return rows

    def _read_complete(self, path: Path) -> pd.DataFrame:
        data = path.read_bytes()
        header = self.sep.join(self.columns) + "\n"
        if not data.startswith(header.encode()):
            raise RobustKDError(f"{path}: its header is not {header.strip()!r}; the work folder was written by "
                                "another version; delete it to start afresh")
        complete = data[: data.rfind(b"\n") + 1]
        return pd.read_csv(io.BytesIO(complete), sep=self.sep)
