"""Which work items of an evaluation this process does, and who summarises them.

An evaluation is a list of work items per suite (clean-pass batches, corruption cells, adversarial batches,
certified images). Item ``k`` of a list belongs to shard ``k % count``: the assignment depends only on the
list, never on what is finished, so every process knows its items without asking the others, a killed shard's
items are the ones its rerun does, and a rerun with another number of shards skips whatever any shard finished.
Every finished item is a durable row (or file) in the model's work folder, which therefore lives on a file
system every process sees (as checkpoints do).

Modes (``ShardMode``):

- ``single``: one process does every item and summarises (the default).
- ``collective``: ``torchrun`` ranks in a torch.distributed process group (``init_placement``, shared with
  training: NCCL on GPUs, gloo on CPUs); ranks meet at a barrier after each list of items and rank 0 alone
  writes summaries, result folders and database rows.
- ``job``: ``--shard K/N`` of a scheduler's job array, without a process group: the process does its items and
  stops; ``robustkd results merge`` summarises once every shard has finished.
- ``merge``: ``robustkd results merge``: does no item; refuses (one line) while any item is unfinished.

Metrics are computed once, by the summarising process, from the merged rows: counts and sums, never means of
the shards' means. Clean-pass batches keep the single process's batch boundaries, so every logit is computed
on the same batch as in one process and the merged result is identical to it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from robustkd.errors import RobustKDError

T = TypeVar("T")


class ShardMode(str, enum.Enum):
    SINGLE = "single"
    COLLECTIVE = "collective"
    JOB = "job"
    MERGE = "merge"


@dataclass(frozen=True)
class Shard:
    """This process's place: shard ``index`` of ``count`` in ``mode``."""

    index: int = 0
    count: int = 1
    mode: ShardMode = ShardMode.SINGLE

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise RobustKDError(f"shard {self.index}/{self.count}: expected 0 <= K < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``K/N`` (``--shard 0/4``): shard K of N scheduler jobs, counted from 0."""
        match = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", str(text))
        if match is None or not 0 <= int(match.group(1)) < int(match.group(2)):
            raise RobustKDError(f"--shard {text}: expected K/N with 0 <= K < N (e.g. 0/4, the first of four jobs)")
        return cls(int(match.group(1)), int(match.group(2)), ShardMode.JOB)

    @property
    def summarises(self) -> bool:
        """Whether this process writes summaries, result folders and database rows."""
        return self.mode in (ShardMode.SINGLE, ShardMode.MERGE) or (self.mode is ShardMode.COLLECTIVE and self.index == 0)

    @property
    def prepares_work(self) -> bool:
        """Whether this process may create, clear or restart shared work folders (other ranks wait for it)."""
        return self.mode is not ShardMode.JOB and self.summarises

    @property
    def suffix(self) -> str:
        """The tag of this process's own work-table files (``''`` when it is the only writer)."""
        return "" if self.count == 1 else f".shard{self.index}of{self.count}"

    @property
    def label(self) -> str:
        return f"shard {self.index}/{self.count}" if self.count > 1 else "one process"

    def todo(self, items: Sequence[T], finished: Callable[[T], bool], what: str) -> list[T]:
        """This process's unfinished items among ``items`` (in order); in merge mode none, and a RobustKDError
        when any item of the list is unfinished."""
        if self.mode is ShardMode.MERGE:
            missing = sum(1 for item in items if not finished(item))
            if missing:
                raise RobustKDError(f"results merge: {missing} of {len(items)} {what} are not finished; run the "
                                    "shards that did not finish (robustkd evaluate ... --shard K/N) and merge again")
            return []
        return [item for number, item in enumerate(items)
                if number % self.count == self.index and not finished(item)]

    def check_shared_folder(self, folder: Path) -> None:
        """Under torchrun: every rank sees ``folder`` as rank 0 does (the ranks meet in it), else a one-line
        RobustKDError on the rank that does not. Rank 0 leaves a marker named for the torchrun job, the others
        look for it after a barrier, and rank 0 removes it after a second barrier."""
        if self.mode is not ShardMode.COLLECTIVE or self.count < 2:
            return
        import os

        marker = Path(folder) / f".rank0-of-run-{os.environ.get('TORCHELASTIC_RUN_ID', 'torchrun')}"
        if self.index == 0:
            Path(folder).mkdir(parents=True, exist_ok=True)
            marker.touch()
        self.wait_for_all()
        seen = marker.is_file()
        self.wait_for_all()
        if self.index == 0:
            marker.unlink(missing_ok=True)
        if not seen:
            raise RobustKDError(f"evaluate: rank {self.index} does not see what rank 0 wrote in {folder}; --out must be "
                                "on a file system every rank shares (the ranks meet in the result folder)")

    def wait_for_all(self) -> None:
        """Under torchrun: a barrier of every rank (after a list of items, before the summary reads them)."""
        if self.mode is ShardMode.COLLECTIVE and self.count > 1:
            import torch.distributed as dist

            dist.barrier()


SINGLE = Shard()
