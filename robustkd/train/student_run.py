"""One student's optimisation inside a training loop: SGD, loss scaling, running metrics, saves, resume.

A ``StudentRun`` owns everything that belongs to one trained model — its task, optimizer, gradient scaler,
metrics history and run directory — but not the data or the epoch loop: the ``Trainer`` drives one model
trained from labels (``robustkd train``), ``CohortTrainer`` drives every distilled student (a cohort, or a
student alone as a cohort of one). A step is the same code either way.

Everything random in epoch ``e`` of a student derives from ``(seed, e)``. With ``isolate_rng`` the student
keeps its own copy of torch's global RNG state and swaps it in for its own steps only, so students that
draw random numbers (dropout) do not perturb each other's streams.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from robustkd.errors import RobustKDError
from robustkd.train.compiled_step import (compile_mode, compiled_forward, compiled_optimizer_step,
                                          draws_random_numbers, uses_cuda_graphs)
from robustkd.train.config import TrainConfig
from robustkd.train.evaluate import evaluate_accuracy
from robustkd.train.run_dir import RunDirectory
from robustkd.train.task import TrainingTask
from robustkd.utils.seeding import capture_rng, derive_seed, restore_rng

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


class StudentRun:
    """The state of one student being trained by ``config`` (its seed, lr schedule, AMP) into ``run``."""

    def __init__(self, config: TrainConfig, task: TrainingTask, run: RunDirectory, placement: Placement,
                 checkpoint_meta: dict[str, Any], *, isolate_rng: bool = False) -> None:
        self.config = config
        self.task = task.to(placement.device)
        self.student = task.student
        self.run = run
        self.placement = placement
        self.checkpoint_meta = checkpoint_meta
        self.isolate_rng = isolate_rng
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
        self.forward = forward
        self._optimizer_step = self.optimizer.step
        self.compile_mode: str | None = None  # set at the first step under --compile
        self._compiled_forward: Any = None
        self.next_epoch = 1
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self._rng: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._epoch_state: dict[str, Any] = {}

    # ---- resume and save ----
    def resume(self) -> int:
        """Continue from the run directory's latest state; returns the epoch it holds."""
        state = self.run.load_state(self.student, self.optimizer)
        self.next_epoch = int(state["epoch"]) + 1
        self.global_step = int(state["global_step"])
        self.history = [row for row in self.run.read_metrics() if row["epoch"] <= state["epoch"]]
        return int(state["epoch"])

    def save(self, epoch: int, row: dict[str, Any]) -> None:
        """Record epoch ``epoch``: metrics, then the model, then the training state.

        In this order a kill at any moment leaves a state no newer than the model: ``--resume`` redoes the
        epoch whose state is missing and rewrites the same model, so no stale checkpoint survives.
        """
        self.history.append(row)
        self.next_epoch = epoch + 1
        if not self.placement.is_main:
            return
        self.run.write_metrics(self.history)
        self.run.save_model(self.student, {**self.checkpoint_meta, "epoch": epoch, "metrics": row})
        self.run.save_state(epoch, self.student, self.optimizer, {"global_step": self.global_step})

    # ---- one epoch ----
    def begin_epoch(self, epoch: int) -> None:
        """Set the epoch's learning rate and RNG; reset the running sums."""
        lr = learning_rate(self.config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(derive_seed(self.config.seed, epoch, 2))
        if self.isolate_rng:
            self._rng = capture_rng(self.placement.device)
        self.task.train()
        self.task.start_epoch(epoch, self.config.epochs)
        zero = torch.zeros((), device=self.placement.device)
        self._epoch_state = {"epoch": epoch, "lr": lr, "sums": {}, "correct": zero.clone(), "pending": [],
                             "seen": 0, "step": -1, "started": time.perf_counter()}

    def step(self, inputs: torch.Tensor, labels: torch.Tensor, **task_inputs: torch.Tensor | None) -> None:
        """One SGD step on a batch; ``task_inputs`` go to the task's forward (e.g. shared teacher logits)."""
        state = self._epoch_state
        if self.config.compile and self.compile_mode is None:
            self._compile(inputs)
        if self._rng is not None:
            restore_rng(self._rng, self.placement.device)
        device = self.placement.device
        graphed = self.compile_mode is not None and uses_cuda_graphs(self.compile_mode)
        if graphed:
            torch.compiler.cudagraph_mark_step_begin()  # this step's outputs are new; the last step's are consumed
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            if self.compile_mode is None:
                logits, losses = self.forward(inputs, labels, **task_inputs)
                loss = sum(losses.values())
            else:
                logits, losses, loss = self._compiled_forward(inputs, labels, **task_inputs)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:  # what GradScaler.step does when disabled, with the optimizer step compiled under --compile
            self._optimizer_step()
        if self._rng is not None:
            self._rng = capture_rng(device)
        self.global_step += 1
        sums = state["sums"]
        for name, value in losses.items():
            sums[name] = sums.get(name, torch.zeros((), device=device)) + value.detach().float()
        state["correct"] += (logits.detach().argmax(1) == labels).sum()
        # a CUDA graph's output is overwritten by its next replay: the copy kept for the finite check is taken now
        state["pending"].append(loss.detach().float().clone() if graphed else loss.detach().float())
        state["seen"] += len(labels)
        state["step"] += 1
        if len(state["pending"]) >= CHECK_EVERY_STEPS:
            self.check_finite()

    def _compile(self, inputs: torch.Tensor) -> None:
        """Compile the step (robustkd/train/compiled_step.py): forward + loss + backward, and the optimizer step;
        CUDA graphs where the step is graph-safe (the student, probed on two of ``inputs``, draws no random
        numbers, and no DistributedDataParallel)."""
        with torch.autocast(inputs.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            stochastic = draws_random_numbers(self.student, inputs[:2])
        self.compile_mode = compile_mode(self.placement.device, not stochastic and self.placement.world_size == 1)
        self._compiled_forward = compiled_forward(self.forward, self.compile_mode)
        if not self.scaler.is_enabled():  # fp16: the GradScaler steps the optimizer itself
            self._optimizer_step = compiled_optimizer_step(self.optimizer)

    def running_losses(self) -> dict[str, float]:
        """The mean of each loss term over the epoch's steps so far (a host sync: for progress displays)."""
        steps = max(self._epoch_state["step"] + 1, 1)
        return {name: (value / steps).item() for name, value in self._epoch_state["sums"].items()}

    def check_finite(self) -> None:
        """Raise TrainingDivergedError if a loss since the last check is NaN or infinite (on any rank)."""
        state = self._epoch_state
        pending = state["pending"]
        if not pending:
            return
        values = torch.stack(pending)
        finite = torch.isfinite(values)
        bad_anywhere = (~finite).any().float()
        if self.placement.world_size > 1:
            dist.all_reduce(bad_anywhere, op=dist.ReduceOp.MAX)  # every rank stops together
        state["pending"] = []
        if not bad_anywhere.item():
            return
        bad = (~finite).nonzero()
        last_step = state["step"]
        if len(bad):
            step = last_step - len(pending) + 1 + int(bad[0])
            where = f"loss became {values[bad[0]].item()} at epoch {state['epoch']}, step {step + 1} " \
                    f"(global step {self.global_step - (last_step - step)})"
        else:
            where = f"loss became non-finite on another rank in epoch {state['epoch']} by step {last_step + 1}"
        latest = self.run.latest_state()
        kept = (f"the last good checkpoint (epoch {latest[0]}) is kept in {self.run.path}" if latest
                else "no checkpoint was written")
        raise TrainingDivergedError(f"training diverged: {where}; {kept}; lower --lr or check the data")

    def end_epoch(self, test_loader=None, evaluate: bool = False) -> dict[str, Any]:
        """Close the epoch: the finite check, averaged losses (summed across ranks), optional test accuracy."""
        self.check_finite()
        state = self._epoch_state
        device = self.placement.device
        steps = max(state["step"] + 1, 1)
        seconds = time.perf_counter() - state["started"]
        names = sorted(state["sums"])
        totals = torch.stack([*(state["sums"][name] / steps for name in names), state["correct"].float(),
                              torch.tensor(float(state["seen"]), device=device)])
        if self.placement.world_size > 1:
            dist.all_reduce(totals)
            totals[: len(names)] /= self.placement.world_size
        values = totals.tolist()
        row: dict[str, Any] = {"epoch": state["epoch"], "lr": state["lr"], "global_step": self.global_step}
        row["train_loss"] = float(sum(values[: len(names)]))
        row.update({f"train_loss_{name}": value for name, value in zip(names, values)})
        row["train_top1"] = 100.0 * values[-2] / max(values[-1], 1.0)
        row["epoch_seconds"] = seconds
        row["images_per_second"] = values[-1] / seconds if seconds > 0 else 0.0
        if evaluate and test_loader is not None:
            evaluation = evaluate_accuracy(self.student, test_loader, self.amp_dtype)
            row.update({f"test_{key}": value for key, value in evaluation.items()})
        return row

    def should_evaluate(self, epoch: int) -> bool:
        return epoch % self.config.eval_every == 0 or epoch == self.config.epochs
