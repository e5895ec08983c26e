"""What every suite may use: the model, the evaluated test images, their clean logits (computed once), the data
and this process's shard of the work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkd.evaluate.sharding import SINGLE, Shard
from robustkd.evaluate.test_images import TestImages


@dataclass
class SuiteContext:
    """``model`` maps inputs in [0, 1] on ``device`` to logits; ``images`` are the evaluated test images (in
    memory or streamed from a folder, addressed by position); ``logits``/``labels`` the model's clean outputs
    on them (CPU, float32, position order); ``teacher_logits`` the teacher's (when a suite needs the teacher).

    ``shard``: this process's share of the work items (robustkd/evaluate/sharding.py). A suite with work items
    takes ``shard.todo(...)`` of them, calls ``shard.wait_for_all()``, and returns None unless
    ``shard.summarises``; a process that does not summarise may find ``logits`` empty."""

    model: nn.Module
    dataset: str
    images: TestImages
    logits: torch.Tensor
    labels: torch.Tensor
    device: torch.device
    data_dir: Path
    model_info: dict[str, Any]
    allow_embedded: bool
    num_classes: int
    teacher: nn.Module | None = None
    teacher_info: dict[str, Any] = field(default_factory=dict)
    teacher_logits: torch.Tensor | None = None
    shard: Shard = SINGLE

    @property
    def classes(self) -> tuple[str, ...]:
        return self.images.classes

    @property
    def clean_accuracy(self) -> float:
        """Top-1 on the clean test images, as a fraction."""
        return float(self.logits.argmax(1).eq(self.labels).double().mean())
