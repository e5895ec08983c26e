"""The training-task contract the loop runs (after mdistiller's distiller base).

A task is an ``nn.Module`` holding the trainable ``student`` (and, for distillation, a frozen teacher).
``forward(inputs, labels)`` returns the student's logits and a dict of named scalar losses; the loop sums
the losses, back-propagates and logs each term. ``describe()`` is recorded in the checkpoint sidecar.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustkd.models import Normalized


class TrainingTask(nn.Module):
    def __init__(self, student: Normalized) -> None:
        super().__init__()
        self.student = student

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Epoch ``epoch`` (from 1) of ``epochs`` begins; nothing to do by default."""

    def describe(self) -> dict[str, Any]:
        """Fields for the checkpoint sidecar (method name and options)."""
        return {"method": "ce"}


class CrossEntropyTask(TrainingTask):
    """Plain supervised training: the loss is cross-entropy on the labels."""

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(inputs)
        return logits, {"ce": F.cross_entropy(logits, labels)}
