"""CIFAR-10 / CIFAR-100 from the standard python-pickle layout, validated, never unpickled unsafely.

Layout: ``<data_dir>/cifar-100-python/{train,test,meta}`` and
``<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``. File checksums are not
required (re-packed copies differ in md5 only); shapes, dtypes, label ranges and per-class counts are.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustkd.data.dataset import ImageDataset
from robustkd.data.safe_pickle import OversizedArrayError, UnsafePickleError, load_restricted_pickle
from robustkd.errors import RobustKDError


class DataNotFoundError(RobustKDError):
    """The dataset's files are not in the data directory."""


@dataclass(frozen=True)
class CifarSpec:
    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes
    num_classes: int
    per_class: dict[str, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    archive: str


CIFAR100 = CifarSpec(
    name="cifar100", folder="cifar-100-python", train_files=("train",), test_files=("test",), meta_file="meta",
    label_key=b"fine_labels", names_key=b"fine_label_names", num_classes=100,
    per_class={"train": 500, "test": 100},
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), archive="cifar-100-python.tar.gz",
)
CIFAR10 = CifarSpec(
    name="cifar10", folder="cifar-10-batches-py", train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",), meta_file="batches.meta", label_key=b"labels", names_key=b"label_names",
    num_classes=10, per_class={"train": 5000, "test": 1000},
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), archive="cifar-10-python.tar.gz",
)
CIFAR_SPECS = {spec.name: spec for spec in (CIFAR100, CIFAR10)}


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataNotFoundError(f"data: missing file {path}")
    try:
        content = load_restricted_pickle(path)
    except (UnsafePickleError, OversizedArrayError) as exc:
        raise RobustKDError(f"data: {path} is not a CIFAR pickle ({exc})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise RobustKDError(f"data: {path} is corrupt or truncated ({type(exc).__name__}); re-extract the archive") from None
    if not isinstance(content, dict):
        raise RobustKDError(f"data: {path} does not hold a dict as CIFAR files do")
    return content


def _class_names(spec: CifarSpec, folder: Path) -> tuple[str, ...]:
    meta = _read_pickle(folder / spec.meta_file)
    names = meta.get(spec.names_key)
    if not isinstance(names, list) or len(names) != spec.num_classes:
        raise RobustKDError(f"data: {folder / spec.meta_file} must list {spec.num_classes} class names")
    return tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names)


def _read_split(spec: CifarSpec, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    files = spec.train_files if split == "train" else spec.test_files
    images, labels = [], []
    for file_name in files:
        path = folder / file_name
        content = _read_pickle(path)
        data, file_labels = content.get(b"data"), content.get(spec.label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            shape = getattr(data, "shape", None)
            raise RobustKDError(f"data: {path}: 'data' must be a uint8 array of shape (N, 3072), got {shape}")
        if file_labels is None or len(file_labels) != data.shape[0]:
            raise RobustKDError(f"data: {path}: expected {data.shape[0]} labels under {spec.label_key.decode()!r}")
        if not isinstance(file_labels, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                          for v in file_labels):
            raise RobustKDError(f"data: {path}: labels must be integers (a list under {spec.label_key.decode()!r})")
        images.append(data)
        labels.append(np.asarray(file_labels, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _validate(spec: CifarSpec, split: str, labels: np.ndarray, folder: Path) -> None:
    if labels.min() < 0 or labels.max() >= spec.num_classes:
        raise RobustKDError(f"data: {folder}/{split}: labels outside [0, {spec.num_classes})")
    counts = np.bincount(labels, minlength=spec.num_classes)
    expected = spec.per_class[split]
    if not np.all(counts == expected):
        bad = int(np.argmax(counts != expected))
        raise RobustKDError(
            f"data: {folder}/{split}: class {bad} has {counts[bad]} images, expected {expected} per class; "
            "the files are incomplete or not CIFAR"
        )


def load_cifar(name: str, data_dir: Path, split: str) -> ImageDataset:
    """Read and validate ``split`` ('train' or 'test') of CIFAR ``name`` from ``data_dir``."""
    spec = CIFAR_SPECS[name]
    if split not in ("train", "test"):
        raise RobustKDError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(data_dir) / spec.folder
    if not folder.is_dir():
        raise DataNotFoundError(f"data: {name} not found: no folder {folder}")
    classes = _class_names(spec, folder)
    images, labels = _read_split(spec, folder, split)
    _validate(spec, split, labels, folder)
    tensor = torch.from_numpy(images.reshape(-1, 3, 32, 32).copy())
    return ImageDataset(name, split, tensor, torch.from_numpy(labels), classes, spec.mean, spec.std, f"files:{folder}")


def download_cifar(name: str, data_dir: Path) -> None:
    """Fetch the official archive through torchvision (which checks its md5) into ``data_dir``."""
    import torchvision

    dataset_class = torchvision.datasets.CIFAR100 if name == "cifar100" else torchvision.datasets.CIFAR10
    data_dir = Path(data_dir)
    created = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    archive = data_dir / CIFAR_SPECS[name].archive
    try:
        dataset_class(str(data_dir), train=True, download=True)
    except Exception as exc:  # network errors come in many types (URLError, socket errors, HTTP errors)
        archive.unlink(missing_ok=True)  # never leave a partial download behind
        if created and not any(data_dir.iterdir()):
            data_dir.rmdir()
        raise DataNotFoundError(f"data: {name} is not in {data_dir} and could not be downloaded ({type(exc).__name__}: {exc})") from None
