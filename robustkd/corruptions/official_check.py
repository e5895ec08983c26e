"""Official corruption files checked whole before any work (the corruption suite's ``check`` and ``check_inputs``).

A CIFAR-C style folder (``<corruption>.npy`` + ``labels.npy``, robustkd/corruptions/layout.py) is accepted only
when every file it will read is what the layout says, so nothing is refused after the clean pass, with a
``.partial`` folder left behind:

- each file is a plain ``.npy`` array (no pickled objects), complete (not truncated) and not empty;
- ``<corruption>.npy``: uint8, shape (5 N, H, H, 3) with N >= 1; every corruption file has the same N;
- ``labels.npy``: one integer label per row (5 N, not bool, not float), the same N labels in each of the five
  severity blocks;
- for a dataset (``check_for_dataset``): H is the dataset's image size (a 28x28 MNIST-C or 64x64
  Tiny-ImageNet-C folder is not CIFAR-100-C), the labels lie in [0, classes), each severity block holds at
  least the images the clean pass evaluates and starts with their labels.

An ImageNet-C root (``<corruption>/<severity>/`` folders) is checked for its folders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from robustkd.corruptions.catalog import SEVERITIES
from robustkd.errors import RobustKDError

WHERE = "corruption suite"


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise RobustKDError(f"{WHERE}: official file {path} is missing")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise RobustKDError(f"{WHERE}: {path} is not a complete plain .npy array ({reason})") from None


def npy_layout(folder: Path, corruptions: Iterable[str]) -> bool:
    """Whether ``folder`` is laid out as CIFAR-C files (any requested ``.npy`` or ``labels.npy`` present)."""
    return (folder / "labels.npy").exists() or any((folder / f"{name}.npy").exists() for name in corruptions)


def check_npy_files(folder: Path, corruptions: Iterable[str]) -> tuple[int, int, np.ndarray]:
    """(images per severity N, image size H, labels of one severity block) of a CIFAR-C folder, after checking
    every requested file and ``labels.npy`` as the module docstring says (dataset-independent rules)."""
    labels_path = folder / "labels.npy"
    labels = _load(labels_path)
    if labels.ndim != 1 or labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise RobustKDError(f"{WHERE}: {labels_path} must be a 1-D array of integer labels, got {labels.dtype} "
                            f"{labels.shape}")
    rows, size = None, None
    for name in corruptions:
        path = folder / f"{name}.npy"
        images = _load(path)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
            raise RobustKDError(f"{WHERE}: {path} must be uint8 images of shape (5N, H, H, 3), got {images.dtype} "
                                f"{images.shape}")
        if images.shape[0] == 0 or images.shape[0] % len(SEVERITIES):
            raise RobustKDError(f"{WHERE}: {path} holds {images.shape[0]} images; expected 5N with N >= 1 "
                                "(N images per severity, severities 1..5 in order)")
        if rows is not None and (images.shape[0], images.shape[1]) != (rows, size):
            raise RobustKDError(f"{WHERE}: {path} holds {images.shape[0]} images of {images.shape[1]}x"
                                f"{images.shape[2]} pixels, the other files of {folder} {rows} of {size}x{size}")
        rows, size = images.shape[0], images.shape[1]
    assert rows is not None and size is not None  # corruptions is never empty (a non-empty parameter)
    if labels.shape[0] != rows:
        raise RobustKDError(f"{WHERE}: {labels_path} holds {labels.shape[0]} labels for {rows} images per file")
    per_severity = rows // len(SEVERITIES)
    values = np.asarray(labels).astype(np.int64)
    blocks = values.reshape(len(SEVERITIES), per_severity)
    if (blocks != blocks[0]).any():
        raise RobustKDError(f"{WHERE}: {labels_path} does not repeat the same {per_severity} labels in each of the "
                            "five severity blocks (not an official layout)")
    return per_severity, size, blocks[0]


def check_for_dataset(folder: Path, corruptions: Iterable[str], dataset: str,
                      test_labels: Callable[[], torch.Tensor]) -> None:
    """The folder's files against ``dataset`` and the clean pass (whose labels ``test_labels()`` returns)."""
    from robustkd.corruptions.layout import imagenet_c_folder
    from robustkd.data import dataset_info

    corruptions = list(corruptions)
    if dataset == "imagenet":
        for name in corruptions:
            for severity in SEVERITIES:
                imagenet_c_folder(folder, name, severity)
        return
    info = dataset_info(dataset)
    per_severity, size, labels = check_npy_files(folder, corruptions)
    if size != info.image_size:
        raise RobustKDError(f"{WHERE}: the files in {folder} hold {size}x{size} images; {dataset} images are "
                            f"{info.image_size}x{info.image_size} (a corruption set of another dataset)")
    if labels.min() < 0 or labels.max() >= info.num_classes:
        raise RobustKDError(f"{WHERE}: {folder / 'labels.npy'} holds labels outside [0, {info.num_classes}) of "
                            f"{dataset} ({int(labels.min())}..{int(labels.max())})")
    expected = test_labels().cpu().long()
    if per_severity < len(expected):
        raise RobustKDError(f"{WHERE}: {folder} holds {per_severity} images per severity but the clean pass has "
                            f"{len(expected)}; evaluate the first {per_severity} test images with --n-examples "
                            f"{per_severity} (recorded as a subset)")
    if not torch.equal(torch.from_numpy(labels[:len(expected)].copy()), expected):
        raise RobustKDError(f"{WHERE}: the labels of {folder / 'labels.npy'} differ from the {dataset} test set's "
                            "(a file of another test set, or in another order)")
