"""The evaluated test images, addressed by position: held in memory (CIFAR, synthetic) or decoded from an
ImageNet folder on demand (DataLoader workers, pinned memory), so that every suite can take any images.

Images come as uint8 (B, 3, H, W) on the CPU at the model's input size: an ImageNet image after the model's own
resize and crop, exactly the integers that ``ToTensor`` divides by 255 (``inputs()`` does that division on the
device, bit for bit as ``ToTensor`` would). Positions count within the evaluated selection (a prefix, RobustBench's
5,000 ids, every 100th image); ``indices`` maps them to the test set's own indices.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from robustkd.data.dataset import ImageDataset
from robustkd.data.imagenet import EvalPreprocessing
from robustkd.errors import RobustKDError

Batch = tuple[torch.Tensor, torch.Tensor]


class TestImages(ABC):
    """``labels``: int64 (N,) on the CPU in position order; ``classes``: class names; ``indices``: the test-set
    index of each position; ``description``: where the images come from."""

    labels: torch.Tensor
    classes: tuple[str, ...]
    indices: list[int]
    description: str
    image_size: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @abstractmethod
    def batches(self, positions: Sequence[int], batch_size: int) -> Iterator[Batch]:
        """uint8 images and int64 labels (CPU) of ``positions``, ``batch_size`` at a time, in order."""

    def take(self, positions: Sequence[int]) -> Batch:
        """One batch holding exactly ``positions``."""
        return next(iter(self.batches(positions, max(1, len(positions)))))

    def all_batches(self, batch_size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(first position, images, labels)`` over every image, ``batch_size`` at a time."""
        start = 0
        for images, labels in self.batches(range(len(self)), batch_size):
            yield start, images, labels
            start += len(labels)


def as_inputs(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images -> float32 model inputs in [0, 1] on ``device``."""
    return images.to(device, non_blocking=True).float().div_(255.0)


class MemoryImages(TestImages):
    """Positions of an in-memory ``ImageDataset`` (``indices`` None: all of it)."""

    def __init__(self, dataset: ImageDataset, indices: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else list(indices)
        self._index = torch.tensor(self.indices, dtype=torch.int64, device=dataset.labels.device)
        self.labels = dataset.labels[self._index]
        self.classes = dataset.classes
        self.description = dataset.source
        self.image_size = int(dataset.images.shape[-1])

    def batches(self, positions: Sequence[int], batch_size: int) -> Iterator[Batch]:
        chosen = self._index[torch.as_tensor(list(positions), dtype=torch.int64, device=self._index.device)]
        for start in range(0, len(chosen), batch_size):
            rows = chosen[start:start + batch_size]
            yield self.dataset.images[rows], self.dataset.labels[rows]


class _Decoded(torch.utils.data.Dataset):
    """An ImageFolder's samples decoded to uint8 with the evaluation transform (no float round trip)."""

    def __init__(self, folder: datasets.ImageFolder, preprocessing: EvalPreprocessing) -> None:
        self.samples = folder.samples
        self.loader = folder.loader
        steps = preprocessing.transform().transforms[:-1]  # resize and crop; ToTensor replaced by PILToTensor
        self.transform = transforms.Compose([*steps, transforms.PILToTensor()])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Batch:
        path, label = self.samples[index]
        try:
            image = self.loader(path).convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's UnidentifiedImageError is an OSError
            raise RobustKDError(f"{path}: not a readable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        return self.transform(image), label


class FolderImages(TestImages):
    """Positions of an ImageNet-format folder, decoded by ``workers`` DataLoader processes (default: up to 8,
    one per core) into pinned memory when ``pin_memory``."""

    def __init__(self, folder: datasets.ImageFolder, preprocessing: EvalPreprocessing, indices: Sequence[int] | None,
                 *, num_classes: int = 1000, workers: int | None = None, pin_memory: bool = False) -> None:
        self.decoded = _Decoded(folder, preprocessing)
        self.indices = list(range(len(folder.samples))) if indices is None else list(indices)
        self.labels = torch.tensor([folder.samples[i][1] for i in self.indices], dtype=torch.int64,
                                   device="cpu")  # the loader's labels are CPU tensors too
        # the folder's class names when it holds every class, else the model's output indices
        self.classes = tuple(folder.classes) if len(folder.classes) == num_classes else \
            tuple(str(i) for i in range(num_classes))
        self.description = f"{folder.root} ({preprocessing.describe()})"
        self.image_size = preprocessing.input_size
        self.workers = min(8, os.cpu_count() or 1) if workers is None else workers
        self.pin_memory = pin_memory

    def batches(self, positions: Sequence[int], batch_size: int) -> Iterator[Batch]:
        chosen = [self.indices[p] for p in positions]
        several = len(chosen) > batch_size  # one batch decodes in this process (no workers to start)
        loader = DataLoader(Subset(self.decoded, chosen), batch_size=batch_size, shuffle=False,
                            num_workers=self.workers if several else 0, pin_memory=self.pin_memory)
        try:
            yield from loader
        except RobustKDError as exc:  # raised in a worker: DataLoader re-raises it with the worker's traceback
            raise RobustKDError(_worker_message(str(exc))) from None


def _worker_message(text: str) -> str:
    """The original one-line message of an error a DataLoader worker raised (the last traceback line)."""
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else text
    prefix = "RobustKDError: "
    return last.split(prefix, 1)[1] if prefix in last else last
