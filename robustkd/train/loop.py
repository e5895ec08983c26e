"""The epoch loop: SGD with step decay, AMP, optional DDP, per-epoch state, NaN guard, metrics logs.

Everything random in epoch ``e`` derives from ``(seed, e)``: data order, augmentation and torch's global RNG.
Resuming from the state saved after epoch ``e`` therefore reproduces an uninterrupted run bit for bit on
the CPU in deterministic mode.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from robustkd.errors import RobustKDError
from robustkd.train.config import TrainConfig
from robustkd.train.evaluate import evaluate_accuracy
from robustkd.train.run_dir import RunDirectory
from robustkd.train.task import TrainingTask
from robustkd.utils.seeding import derive_seed

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CHECK_EVERY_STEPS = 25


class TrainingDivergedError(RobustKDError):
    """A loss became NaN or infinite."""


@dataclass(frozen=True)
class Placement:
    """Where this process trains: its device and its rank among ``world_size`` data-parallel processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Step decay: ``lr * decay ** (number of milestones <= epoch)``, epochs counted from 1."""
    return config.lr * config.lr_decay ** bisect.bisect_right(config.milestones, epoch - 1)


class Trainer:
    """Runs ``task`` for ``config.epochs`` epochs, saving state and the model after every epoch (rank 0)."""

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
        self.task = task.to(placement.device)
        self.student = task.student
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.run = run
        self.placement = placement
        self.checkpoint_meta = checkpoint_meta
        self.announce = announce
        self.amp_dtype = AMP_DTYPES[config.amp]
        if config.channels_last:
            self.task.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            self.student.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.scaler = torch.amp.GradScaler(placement.device.type, enabled=config.amp == "fp16")
        forward: torch.nn.Module = self.task
        if placement.world_size > 1:
            device_ids = [placement.device.index] if placement.device.type == "cuda" else None
            forward = DistributedDataParallel(self.task, device_ids=device_ids)
        self.forward = torch.compile(forward) if config.compile else forward
        self.start_epoch = 1
        self.global_step = 0
        self.history: list[dict[str, Any]] = []

    def resume(self) -> None:
        """Continue from the run directory's latest state."""
        state = self.run.load_state(self.student, self.optimizer)
        self.start_epoch = int(state["epoch"]) + 1
        self.global_step = int(state["global_step"])
        self.history = [row for row in self.run.read_metrics() if row["epoch"] <= state["epoch"]]
        if self.placement.is_main:
            self.announce(f"resuming {self.run.path} after epoch {state['epoch']}")

    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train up to ``config.epochs`` (or only up to epoch ``stop_after``); returns the last metrics row."""
        last_epoch = self.config.epochs if stop_after is None else min(stop_after, self.config.epochs)
        for epoch in range(self.start_epoch, last_epoch + 1):
            row = self.train_epoch(epoch)
            if epoch % self.config.eval_every == 0 or epoch == self.config.epochs:
                evaluation = evaluate_accuracy(self.student, self.test_loader, self.amp_dtype)
                row.update({f"test_{key}": value for key, value in evaluation.items()})
            self.history.append(row)
            if self.placement.is_main:
                self._save(epoch, row)
                summary = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k.startswith(("train_loss", "test_top")))
                self.announce(f"epoch {epoch}/{self.config.epochs}: {summary} ({row['epoch_seconds']:.0f} s)")
            if self.placement.world_size > 1:
                dist.barrier()
        return self.history[-1] if self.history else {}

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training loader at epoch ``epoch``'s learning rate; returns its metrics row."""
        lr = learning_rate(self.config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(derive_seed(self.config.seed, epoch, 2))
        self.task.train()
        device = self.placement.device
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=device)
        pending: list[torch.Tensor] = []
        seen = 0
        started = time.perf_counter()
        total_images = len(self.train_loader) * self.config.batch_size
        show = self.placement.is_main and os.environ.get("ROBUSTKD_PROGRESS", "1") != "0"
        with tqdm(total=total_images, desc=f"epoch {epoch}/{self.config.epochs}", unit="img", disable=not show,
                  dynamic_ncols=True, leave=False) as bar:
            for step, (inputs, labels) in enumerate(self.train_loader.epoch(epoch)):
                with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    logits, losses = self.forward(inputs, labels)
                    loss = sum(losses.values())
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.global_step += 1
                for name, value in losses.items():
                    sums[name] = sums.get(name, torch.zeros((), device=device)) + value.detach().float()
                correct += (logits.detach().argmax(1) == labels).sum()
                pending.append(loss.detach().float())
                seen += len(labels)
                bar.update(len(labels))
                if len(pending) >= CHECK_EVERY_STEPS:
                    self._check_finite(pending, epoch, step)
                    pending = []
                    bar.set_postfix({name: f"{(value / (step + 1)).item():.3f}" for name, value in sums.items()} | {"lr": f"{lr:.3g}"})
        self._check_finite(pending, epoch, len(self.train_loader) - 1)
        steps = max(len(self.train_loader), 1)
        seconds = time.perf_counter() - started
        names = sorted(sums)
        totals = torch.stack([*(sums[name] / steps for name in names), correct.float(), torch.tensor(float(seen), device=device)])
        if self.placement.world_size > 1:
            dist.all_reduce(totals)
            totals[: len(names)] /= self.placement.world_size
        values = totals.tolist()
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "global_step": self.global_step}
        row["train_loss"] = float(sum(values[: len(names)]))
        row.update({f"train_loss_{name}": value for name, value in zip(names, values)})
        row["train_top1"] = 100.0 * values[-2] / max(values[-1], 1.0)
        row["epoch_seconds"] = seconds
        row["images_per_second"] = values[-1] / seconds if seconds > 0 else 0.0
        return row

    def _check_finite(self, pending: list[torch.Tensor], epoch: int, last_step: int) -> None:
        if not pending:
            return
        values = torch.stack(pending)
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            step = last_step - len(pending) + 1 + int(bad[0])
            global_step = self.global_step - (last_step - step)
            latest = self.run.latest_state()
            kept = f"the last good checkpoint (epoch {latest[0]}) is kept in {self.run.path}" if latest else "no checkpoint was written"
            raise TrainingDivergedError(
                f"training diverged: loss became {values[bad[0]].item()} at epoch {epoch}, step {step + 1} "
                f"(global step {global_step}); {kept}; lower --lr or check the data"
            )

    def _save(self, epoch: int, row: dict[str, Any]) -> None:
        self.run.write_metrics(self.history)
        self.run.save_state(epoch, self.student, self.optimizer, {"global_step": self.global_step})
        meta = {**self.checkpoint_meta, "epoch": epoch, "metrics": row}
        self.run.save_model(self.student, meta)
