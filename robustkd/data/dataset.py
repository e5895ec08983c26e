"""The in-memory image dataset every CIFAR-sized pipeline uses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from robustkd.errors import RobustKDError


@dataclass(frozen=True)
class ImageDataset:
    """Images as one uint8 tensor (N, 3, H, W), labels int64 (N,) in [0, num_classes).

    ``mean``/``std`` are the per-channel statistics models normalise with (inputs scaled to [0, 1]);
    ``source`` says where the pixels came from (a folder, the embedded subset, the synthetic generator).
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise RobustKDError(
                f"{self.name}/{self.split}: images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise RobustKDError(f"{self.name}/{self.split}: labels must be int64 of shape ({self.images.shape[0]},)")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes):
            raise RobustKDError(f"{self.name}/{self.split}: labels must lie in [0, {self.num_classes})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, count: int) -> ImageDataset:
        """The first ``count`` examples (a prefix: the files' order is kept)."""
        return self.rows(0, count, f"first {min(count, len(self))}")

    def rows(self, start: int, stop: int, description: str) -> ImageDataset:
        """Examples ``start:stop``; ``description`` is appended to the source (e.g. 'last 5000')."""
        return dataclasses.replace(self, images=self.images[start:stop], labels=self.labels[start:stop],
                                   source=f"{self.source} ({description})")
