"""What every suite may use: the model, the test set, its clean logits (computed once) and the data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkd.data.dataset import ImageDataset
from robustkd.errors import RobustKDError


@dataclass
class SuiteContext:
    """``model`` maps inputs in [0, 1] on ``device`` to logits; ``logits``/``labels`` are its clean test
    outputs (CPU, float32, in test-set order); ``test`` is the test set in memory (uint8) when the dataset
    allows it (CIFAR, synthetic), else None and ``test_loader`` streams it (ImageNet)."""

    model: nn.Module
    dataset: str
    test: ImageDataset | None
    logits: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    device: torch.device
    data_dir: Path
    model_info: dict[str, Any]
    allow_embedded: bool
    num_classes: int
    teacher: nn.Module | None
    teacher_info: dict[str, Any]
    test_loader: Any

    def in_memory_test(self, suite: str) -> ImageDataset:
        if self.test is None:
            raise RobustKDError(f"evaluate: the {suite} suite needs an in-memory dataset (CIFAR or synthetic)")
        return self.test

    @property
    def clean_accuracy(self) -> float:
        """Top-1 on the clean test images, as a fraction."""
        return float(self.logits.argmax(1).eq(self.labels).double().mean())
