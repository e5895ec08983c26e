"""ImageNet from the standard class-folder layout ``<root>/{train,val}/<wnid>/*.JPEG`` (torchvision ImageFolder).

Images are decoded by DataLoader workers and returned in [0, 1]; models normalise themselves. Evaluation
uses the standard 224-pixel transform (resize 256, centre crop 224); training uses RandomResizedCrop(224)
and a horizontal flip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler
from torchvision import datasets, transforms

from robustkd.data.cifar import DataNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

EVAL_TRANSFORM = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
TRAIN_TRANSFORM = transforms.Compose(
    [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
)


def imagenet_folder(data_dir: Path, split: str) -> datasets.ImageFolder:
    """``split`` is 'train' or 'val' (also accepted: 'test', meaning 'val')."""
    folder = Path(data_dir) / "imagenet" / ("train" if split == "train" else "val")
    if not folder.is_dir():
        folder = Path(data_dir) / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise DataNotFoundError(f"data: imagenet not found: no folder {Path(data_dir) / 'imagenet' / split} or {folder}")
    transform = TRAIN_TRANSFORM if split == "train" else EVAL_TRANSFORM
    return datasets.ImageFolder(str(folder), transform=transform)


class FolderBatchLoader:
    """The ``TensorBatchLoader`` interface over an ImageFolder: ``len()`` batches, ``epoch(e)`` iterates."""

    def __init__(self, folder: datasets.ImageFolder, batch_size: int, device: torch.device, *, train: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1, workers: int | None = None, channels_last: bool = False) -> None:
        self.device = device
        self.batch_size = batch_size
        workers = min(8, os.cpu_count() or 1) if workers is None else workers
        self.sampler = DistributedSampler(folder, world_size, rank, shuffle=train, seed=seed, drop_last=train)
        self.loader = DataLoader(folder, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 pin_memory=device.type == "cuda", drop_last=train, persistent_workers=workers > 0)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        for inputs, labels in self.loader:
            inputs = inputs.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield inputs, labels.to(self.device, non_blocking=True)
