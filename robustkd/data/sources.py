"""Dataset names, the data directory, and the fall-backs: files on disk, download, embedded subset.

Data directory: ``--data-dir``, else ``$ROBUSTKD_DATA``, else ``./data``. CIFAR is read from disk; when it is
missing, it is downloaded through torchvision unless downloads are off (``ROBUSTKD_NO_DOWNLOAD=1``); when
that fails too and the caller allows it, the embedded CIFAR-100 subset is used and announced in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from robustkd.data.cifar import CIFAR_SPECS, DataNotFoundError, download_cifar, load_cifar
from robustkd.data.dataset import ImageDataset
from robustkd.data.embedded import load_embedded_cifar100
from robustkd.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, EvalPreprocessing, FolderBatchLoader, imagenet_folder
from robustkd.data.loader import TensorBatchLoader
from robustkd.data.synthetic import SYNTHETIC_MEAN, SYNTHETIC_STD, make_synthetic
from robustkd.errors import RobustKDError

DATASET_NAMES = ("cifar100", "cifar10", "imagenet", "synthetic")
SYNTHETIC_CLASSES = 10


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int


def dataset_info(name: str) -> DatasetInfo:
    check_dataset_name(name)
    if name in CIFAR_SPECS:
        spec = CIFAR_SPECS[name]
        return DatasetInfo(name, spec.num_classes, spec.mean, spec.std, 32)
    if name == "imagenet":
        return DatasetInfo(name, 1000, IMAGENET_MEAN, IMAGENET_STD, 224)
    return DatasetInfo(name, SYNTHETIC_CLASSES, SYNTHETIC_MEAN, SYNTHETIC_STD, 32)


def check_dataset_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise RobustKDError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASET_NAMES)}")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir:
        return Path(data_dir)
    return Path(os.environ.get("ROBUSTKD_DATA") or "data")


def downloads_enabled() -> bool:
    return os.environ.get("ROBUSTKD_NO_DOWNLOAD", "") not in ("1", "true", "yes")


def load_image_dataset(
    name: str,
    split: str,
    data_dir: Path,
    *,
    allow_embedded: bool = False,
    announce: Callable[[str], None] = print,
) -> ImageDataset:
    """An in-memory CIFAR or synthetic split; see the module docstring for the fall-back order."""
    check_dataset_name(name)
    if name == "synthetic":
        return make_synthetic(split, num_classes=SYNTHETIC_CLASSES)
    if name == "imagenet":
        raise RobustKDError("imagenet is read from folders, not memory; use make_loader")
    try:
        return load_cifar(name, data_dir, split)
    except DataNotFoundError as missing:
        reason = str(missing)
    if downloads_enabled():
        try:
            download_cifar(name, data_dir)
            return load_cifar(name, data_dir, split)
        except DataNotFoundError as failed:
            reason = str(failed)
    if allow_embedded and name == "cifar100":
        dataset = load_embedded_cifar100(split)
        announce(f"{reason.removeprefix('data: ')}; using the embedded CIFAR-100 subset instead ({dataset.source})")
        return dataset
    raise DataNotFoundError(f"{reason}; put the python-pickle files under {data_dir} or pass --data-dir")


def make_loader(
    name: str,
    split: str,
    data_dir: Path,
    batch_size: int,
    device: torch.device,
    *,
    train: bool,
    seed: int = 0,
    noise_sd: float = 0.0,
    rank: int = 0,
    world_size: int = 1,
    channels_last: bool = False,
    allow_embedded: bool = False,
    announce: Callable[[str], None] = print,
    limit: int | None = None,
    holdout: int = 0,
    preprocessing: EvalPreprocessing | None = None,
) -> TensorBatchLoader | FolderBatchLoader:
    """A batch loader for ``split`` of dataset ``name``; ``holdout`` drops the last examples (never loaded), then
    ``limit`` keeps a prefix of the rest;
    ``preprocessing``: an ImageNet model's own evaluation transform (other datasets are used as stored)."""
    if name == "imagenet":
        folder = imagenet_folder(data_dir, split, preprocessing)
        split_images = len(folder.samples)
        kept = min(split_images - holdout, split_images if limit is None else limit)
        folder.samples = folder.samples[:kept]
        folder.targets = folder.targets[:kept]
        folder_loader = FolderBatchLoader(folder, batch_size, device, train=train, seed=seed, rank=rank,
                                          world_size=world_size, channels_last=channels_last)
        folder_loader.split_images = split_images
        return folder_loader
    dataset = load_image_dataset(name, split, data_dir, allow_embedded=allow_embedded, announce=announce)
    split_images = len(dataset)
    if holdout >= split_images:
        raise RobustKDError(f"data: holdout {holdout} leaves no {name} {split} images (the split has {split_images})")
    if holdout:
        dataset = dataset.rows(0, max(0, split_images - holdout), f"last {holdout} held out")
    if limit is not None:
        dataset = dataset.subset(limit)
    loader = TensorBatchLoader(dataset, batch_size, device, train=train, seed=seed, noise_sd=noise_sd, rank=rank,
                               world_size=world_size, channels_last=channels_last)
    loader.split_images = split_images
    return loader
