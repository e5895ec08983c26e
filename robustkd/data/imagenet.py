"""ImageNet from the standard class-folder layout ``<root>/{train,val}/<wnid>/*.JPEG`` (torchvision ImageFolder).

Images are decoded by DataLoader workers and returned in [0, 1]; models normalise themselves. Evaluation
uses the model's own preprocessing (``EvalPreprocessing``: input size, resize, crop fraction, interpolation),
read from its checkpoint's sidecar (``preprocessing``); without one it is the standard 224-pixel transform
(resize 256, centre crop 224, bilinear). Training uses RandomResizedCrop(224) and a horizontal flip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler
from torchvision import datasets, transforms

from robustkd.data.cifar import DataNotFoundError
from robustkd.errors import RobustKDError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
# center: the shorter side resized to ``resize`` (aspect kept), then a centre crop of ``input_size``;
# squash: both sides resized to ``resize`` (timm's 'squash', RobustBench's Res224 when resize = input size);
# crop: no resize, only the centre crop (RobustBench's Crop288).
CROP_MODES = ("center", "squash", "crop")
PREPROCESSING_KEYS = ("input_size", "resize", "crop_pct", "interpolation", "crop_mode")


@dataclass(frozen=True)
class EvalPreprocessing:
    """How an evaluation image becomes a model input: resize, centre crop, ``ToTensor`` (values in [0, 1]).

    ``crop_pct`` is the crop fraction as its source states it (timm's ``crop_pct``); ``resize`` is what is
    applied (timm: ``floor(input_size / crop_pct)``). Mean and std are not here: models normalise themselves.
    """

    input_size: int = 224
    resize: int | None = 256
    crop_pct: float | None = 0.875
    interpolation: str = "bilinear"
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise RobustKDError(f"preprocessing: {problem}")

    def _problem(self) -> str | None:
        def positive_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4096

        if not positive_int(self.input_size):
            return f"input_size = {self.input_size!r}; expected an integer in 1..4096"
        if self.crop_mode not in CROP_MODES:
            return f"crop_mode = {self.crop_mode!r}; expected one of: {', '.join(CROP_MODES)}"
        if self.crop_mode == "crop":
            if self.resize is not None:
                return "crop_mode 'crop' takes no resize"
        elif not positive_int(self.resize) or self.resize < self.input_size:
            return f"resize = {self.resize!r}; expected an integer >= input_size ({self.input_size})"
        if self.crop_pct is not None and (isinstance(self.crop_pct, bool) or not isinstance(self.crop_pct, (int, float))
                                          or not math.isfinite(self.crop_pct) or not 0 < self.crop_pct <= 1):
            return f"crop_pct = {self.crop_pct!r}; expected a number in (0, 1]"
        if self.interpolation not in INTERPOLATIONS:
            return f"interpolation = {self.interpolation!r}; expected one of: {', '.join(INTERPOLATIONS)}"
        return None

    @classmethod
    def from_crop_pct(cls, input_size: int, crop_pct: float, interpolation: str = "bilinear",
                      crop_mode: str = "center") -> EvalPreprocessing:
        """timm's rule: resize to ``floor(input_size / crop_pct)``, then crop ``input_size``."""
        if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
            raise RobustKDError(f"preprocessing: crop_pct = {crop_pct!r}; expected a number in (0, 1]")
        return cls(int(input_size), int(math.floor(input_size / crop_pct)), float(crop_pct), interpolation, crop_mode)

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> EvalPreprocessing:
        """The preprocessing a sidecar's ``preprocessing`` field describes; the default without one (or without
        its ImageNet keys: a CIFAR model's record holds only mean, std and where they came from)."""
        if record is not None and not isinstance(record, Mapping):
            raise RobustKDError(f"preprocessing = {record!r}; expected an object")
        if not record or "input_size" not in record:
            return DEFAULT_EVAL_PREPROCESSING
        return cls(**{key: record[key] for key in PREPROCESSING_KEYS if key in record})

    def describe(self) -> dict[str, Any]:
        """The record written to sidecars and result protocols."""
        crop_pct = self.crop_pct if self.crop_pct is not None else (
            round(self.input_size / self.resize, 6) if self.resize else None)
        return {"input_size": self.input_size, "resize": self.resize, "crop_pct": crop_pct,
                "interpolation": self.interpolation, "crop_mode": self.crop_mode}

    def transform(self) -> transforms.Compose:
        steps: list[Any] = []
        if self.resize is not None:
            size = [self.resize, self.resize] if self.crop_mode == "squash" else self.resize
            steps.append(transforms.Resize(size, interpolation=transforms.InterpolationMode(self.interpolation)))
        return transforms.Compose([*steps, transforms.CenterCrop(self.input_size), transforms.ToTensor()])


DEFAULT_EVAL_PREPROCESSING = EvalPreprocessing()
EVAL_TRANSFORM = DEFAULT_EVAL_PREPROCESSING.transform()
TRAIN_TRANSFORM = transforms.Compose(
    [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
)


def imagenet_folder(data_dir: Path, split: str, preprocessing: EvalPreprocessing | None = None) -> datasets.ImageFolder:
    """``split`` is 'train' or 'val' (also accepted: 'test', meaning 'val'); ``preprocessing``: the evaluated
    model's own (default: resize 256, centre crop 224)."""
    folder = Path(data_dir) / "imagenet" / ("train" if split == "train" else "val")
    if not folder.is_dir():
        folder = Path(data_dir) / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise DataNotFoundError(f"data: imagenet not found: no folder {Path(data_dir) / 'imagenet' / split} or {folder}")
    transform = TRAIN_TRANSFORM if split == "train" else (preprocessing or DEFAULT_EVAL_PREPROCESSING).transform()
    return datasets.ImageFolder(str(folder), transform=transform)


class FolderBatchLoader:
    """The ``TensorBatchLoader`` interface over an ImageFolder: ``len()`` batches, ``epoch(e)`` iterates."""

    def __init__(self, folder: datasets.ImageFolder, batch_size: int, device: torch.device, *, train: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1, workers: int | None = None, channels_last: bool = False) -> None:
        self.device = device
        self.batch_size = batch_size
        self.dataset = folder
        self.split_images = len(folder)  # the whole split's size; make_loader sets it when it kept a part
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
