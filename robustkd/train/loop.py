"""The epoch loop of a model trained from labels (``robustkd train``): its own data order, a progress bar, a
save after every epoch.

The per-student work (SGD with step decay, AMP, DDP, the NaN guard, metrics, saving) lives in
``StudentRun``; distillation, alone or in a cohort, runs in robustkd/distill/cohort.py on the same
``StudentRun``.
Everything random in epoch ``e`` derives from ``(seed, e)``: data order, augmentation and torch's global
RNG. Resuming from the state saved after epoch ``e`` therefore reproduces an uninterrupted run bit for bit
on the CPU in deterministic mode.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
from tqdm import tqdm

from robustkd.train.config import TrainConfig
from robustkd.train.run_dir import RunDirectory
from robustkd.train.student_run import (
    AMP_DTYPES,
    CHECK_EVERY_STEPS,
    Placement,
    StudentRun,
    TrainingDivergedError,
    learning_rate,
)
from robustkd.train.task import TrainingTask

__all__ = ["AMP_DTYPES", "CHECK_EVERY_STEPS", "Placement", "Trainer", "TrainingDivergedError", "learning_rate",
           "progress_enabled"]


def progress_enabled(placement: Placement) -> bool:
    return placement.is_main and os.environ.get("ROBUSTKD_PROGRESS", "1") != "0"


class Trainer:
    """Runs ``task`` for ``config.epochs`` epochs, saving the model and state after every epoch (rank 0)."""

    def __init__(
        self,
        config: TrainConfig,
        task: TrainingTask,
        train_loader,
        test_loader,
        run: RunDirectory,
        placement: Placement,
        checkpoint_meta: dict[str, Any],
        announce: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.student_run = StudentRun(config, task, run, placement, checkpoint_meta)
        self.task = self.student_run.task
        self.student = task.student
        self.optimizer = self.student_run.optimizer
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.run = run
        self.placement = placement
        self.announce = announce

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.student_run.history

    def resume(self) -> None:
        """Continue from the run directory's latest state."""
        epoch = self.student_run.resume()
        if self.placement.is_main:
            self.announce(f"resuming {self.run.path} after epoch {epoch}")

    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train up to ``config.epochs`` (or only up to epoch ``stop_after``); returns the last metrics row."""
        last_epoch = self.config.epochs if stop_after is None else min(stop_after, self.config.epochs)
        for epoch in range(self.student_run.next_epoch, last_epoch + 1):
            row = self.train_epoch(epoch)
            self.student_run.save(epoch, row)
            if self.placement.is_main:
                summary = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k.startswith(("train_loss", "test_top")))
                self.announce(f"epoch {epoch}/{self.config.epochs}: {summary} ({row['epoch_seconds']:.0f} s)")
            if self.placement.world_size > 1:
                dist.barrier()
        return self.history[-1] if self.history else {}

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training loader at epoch ``epoch``'s learning rate; returns its metrics row
        (with test accuracy when this epoch is evaluated)."""
        member = self.student_run
        member.begin_epoch(epoch)
        total_images = len(self.train_loader) * self.config.batch_size
        with tqdm(total=total_images, desc=f"epoch {epoch}/{self.config.epochs}", unit="img",
                  disable=not progress_enabled(self.placement), dynamic_ncols=True, leave=False) as bar:
            for step, (inputs, labels) in enumerate(self.train_loader.epoch(epoch)):
                member.step(inputs, labels)
                bar.update(len(labels))
                if (step + 1) % CHECK_EVERY_STEPS == 0 and not bar.disable:
                    bar.set_postfix({name: f"{value:.3f}" for name, value in member.running_losses().items()}
                                    | {"lr": f"{learning_rate(self.config, epoch):.3g}"})
        return member.end_epoch(self.test_loader, member.should_evaluate(epoch))
