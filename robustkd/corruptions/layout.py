"""The released file layouts of the corruption benchmarks, read and written.

CIFAR-10-C / CIFAR-100-C: ``<corruption>.npy``, uint8 (5 N, 32, 32, 3), severity s in rows
``(s - 1) N .. s N - 1`` of the N test images, plus ``labels.npy`` (5 N,). ImageNet-C:
``<root>/<corruption>/<severity>/<wnid>/<image>.JPEG`` (224x224 images, no further resizing).
Files are read with ``allow_pickle=False`` and memory-mapped; written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robustkd.corruptions.catalog import SEVERITIES
from robustkd.errors import RobustKDError
from robustkd.utils.atomic import write_with_atomic


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise RobustKDError(f"corruption data: missing {path}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise RobustKDError(f"corruption data: {path} is not a plain .npy array ({exc})") from None


def npy_available(folder: Path, corruption: str) -> bool:
    return (folder / f"{corruption}.npy").is_file() and (folder / "labels.npy").is_file()


def read_severity_block(folder: Path, corruption: str, severity: int, limit: int | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (n, 3, H, W) and int64 labels (n,) of one severity; ``limit`` keeps the first n."""
    if severity not in SEVERITIES:
        raise RobustKDError(f"severity: expected 1..5, got {severity}")
    images = _load(folder / f"{corruption}.npy")
    labels = _load(folder / "labels.npy")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] % 5:
        raise RobustKDError(f"corruption data: {folder / (corruption + '.npy')} must be uint8 (5N, H, W, 3), "
                            f"got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise RobustKDError(f"corruption data: {folder / 'labels.npy'} has shape {labels.shape}, "
                            f"expected ({images.shape[0]},)")
    per_severity = images.shape[0] // 5
    count = per_severity if limit is None else min(limit, per_severity)
    start = (severity - 1) * per_severity
    block = torch.from_numpy(np.array(images[start:start + count])).permute(0, 3, 1, 2)  # channels_last strides
    return block, torch.from_numpy(np.asarray(labels[start:start + count]).astype(np.int64))


def write_corruption_npy(folder: Path, corruption: str, blocks: list[torch.Tensor]) -> Path:
    """Write the five severity blocks (each uint8 (N, 3, H, W)) as ``<corruption>.npy``, atomically."""
    array = torch.cat(blocks).permute(0, 2, 3, 1).contiguous().numpy()
    target = folder / f"{corruption}.npy"
    write_with_atomic(target, lambda tmp: _save(tmp, array))
    return target


def write_labels_npy(folder: Path, labels: torch.Tensor, num_classes: int) -> Path:
    dtype = np.uint8 if num_classes <= 256 else np.int64
    array = np.tile(labels.numpy().astype(dtype), len(SEVERITIES))
    target = folder / "labels.npy"
    write_with_atomic(target, lambda tmp: _save(tmp, array))
    return target


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def imagenet_c_folder(root: Path, corruption: str, severity: int) -> Path:
    folder = root / corruption / str(severity)
    if not folder.is_dir():
        raise RobustKDError(f"ImageNet-C: missing folder {folder} (expected <root>/<corruption>/<severity>/<wnid>/)")
    return folder
