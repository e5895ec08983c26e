"""Cohort distillation: several students of one frozen teacher trained together on shared batches.

For each seed, every member of that seed sees the same batches in the same order with the same
augmentation draws, and the teacher runs once per batch for all of them (its logits are handed to each
member's task). Members of one seed and architecture also start from the same initial weights (the
model is built right after seeding with that seed, as a solo run does). So two members of one seed differ
only in their loss: a paired design. Seeds differ in data order, augmentation and initial weights.

Each member is a ``StudentRun`` with its own RNG state, optimizer and run directory, and a step is the
same code as in a solo run: on the CPU in deterministic mode a member is bit-identical to the same
method and seed trained alone. A member whose loss becomes NaN or infinite stops alone (its last good
checkpoint is kept); the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from robustkd.train.loop import progress_enabled
from robustkd.train.student_run import CHECK_EVERY_STEPS, Placement, StudentRun, TrainingDivergedError


@dataclass
class CohortMember:
    """A named member: its seed, its ``StudentRun`` and whether its loss needs the teacher's logits."""

    name: str
    seed: int
    run: StudentRun
    uses_teacher: bool
    diverged: str | None = None

    @property
    def active(self) -> bool:
        return self.diverged is None


class CohortTrainer:
    """Trains ``members`` epoch by epoch; ``train_loaders[seed]`` yields the batches of that seed's members.

    ``teacher_logits(inputs)`` computes the frozen teacher's float32 logits (called under the members'
    autocast setting, once per batch of a seed with at least one member that uses the teacher).
    ``on_diverged(member)`` is called when a member stops (to record it); with ``stop_on_divergence`` (a
    student trained alone) the TrainingDivergedError ends the whole run instead.
    """

    def __init__(self, members: list[CohortMember], train_loaders: dict[int, Any], test_loader: Any,
                 teacher_logits: Callable[[torch.Tensor], torch.Tensor], placement: Placement, epochs: int,
                 announce: Callable[[str], None] = print,
                 on_diverged: Callable[[CohortMember], None] = lambda member: None,
                 stop_on_divergence: bool = False) -> None:
        self.members = members
        self.train_loaders = train_loaders
        self.test_loader = test_loader
        self.teacher_logits = teacher_logits
        self.placement = placement
        self.epochs = epochs
        self.announce = announce if placement.is_main else (lambda _: None)
        self.on_diverged = on_diverged
        self.stop_on_divergence = stop_on_divergence

    def fit(self, stop_after: int | None = None) -> None:
        """Train every active member up to ``epochs`` (or up to epoch ``stop_after``)."""
        last_epoch = self.epochs if stop_after is None else min(stop_after, self.epochs)
        pending = [member.run.next_epoch for member in self.members if member.active]
        for epoch in range(min(pending, default=last_epoch + 1), last_epoch + 1):
            for seed in self.train_loaders:
                due = [m for m in self.members if m.seed == seed and m.active and m.run.next_epoch == epoch]
                if due:
                    self.train_epoch(seed, due, epoch)
                    for member in due:
                        if member.active:
                            self._guarded(member, lambda: self._finish_epoch(member, epoch))
                if self.placement.world_size > 1:
                    dist.barrier()

    def train_epoch(self, seed: int, due: list[CohortMember], epoch: int) -> None:
        """The steps of epoch ``epoch`` for the ``due`` members of ``seed`` (no evaluation, no save)."""
        loader = self.train_loaders[seed]
        for member in due:
            member.run.begin_epoch(epoch)
        amp_dtype = due[0].run.amp_dtype
        device = self.placement.device
        with tqdm(total=len(loader) * loader.batch_size, desc=f"epoch {epoch}/{self.epochs} seed {seed}", unit="img",
                  disable=not progress_enabled(self.placement), dynamic_ncols=True, leave=False) as bar:
            for step, (inputs, labels) in enumerate(loader.epoch(epoch)):
                active = [member for member in due if member.active]
                if not active:
                    break
                teacher_logits = None
                if any(member.uses_teacher for member in active):
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        teacher_logits = self.teacher_logits(inputs)
                for member in active:
                    self._guarded(member, lambda: member.run.step(inputs, labels, teacher_logits=teacher_logits))
                bar.update(len(labels))
                if (step + 1) % CHECK_EVERY_STEPS == 0 and not bar.disable:
                    bar.set_postfix_str(self._progress(active))

    def _finish_epoch(self, member: CohortMember, epoch: int) -> None:
        row = member.run.end_epoch(self.test_loader, member.run.should_evaluate(epoch))
        member.run.save(epoch, row)
        terms = ", ".join(f"{key.removeprefix('train_loss_')} {value:.4g}" for key, value in row.items()
                          if key.startswith("train_loss_"))
        tested = f", test top-1 {row['test_top1']:.2f}%" if "test_top1" in row else ""
        who = "" if self.stop_on_divergence else f" {member.name}"  # a student alone needs no name
        self.announce(f"epoch {epoch}/{self.epochs}{who}: loss {row['train_loss']:.4g} ({terms}){tested} "
                      f"({row['epoch_seconds']:.0f} s)")

    def _guarded(self, member: CohortMember, action: Callable[[], None]) -> None:
        try:
            action()
        except TrainingDivergedError as exc:
            if self.stop_on_divergence:
                raise
            member.diverged = str(exc)
            self.announce(f"{member.name}: {exc}; the other students go on")
            self.on_diverged(member)

    @staticmethod
    def _progress(members: list[CohortMember]) -> str:
        shown = []
        for member in members:
            losses = " ".join(f"{name} {value:.3f}" for name, value in member.run.running_losses().items())
            shown.append(f"{member.name}[{losses}]")
        return " ".join(shown)
