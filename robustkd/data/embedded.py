"""The embedded default: a small real CIFAR-100 subset shipped inside the package.

Built by ``scripts/build_embedded_subset.py`` from the full set: the first ``train_per_class`` training and
``test_per_class`` test images of every class, in the files' order. Stored as an xz-compressed ``.npz``
(no pickles) with a JSON manifest holding its provenance and the payload's sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
from importlib import resources

import numpy as np
import torch

from robustkd.data.cifar import CIFAR100
from robustkd.data.dataset import ImageDataset
from robustkd.errors import RobustKDError

PAYLOAD = "cifar100_subset.npz.xz"
MANIFEST = "cifar100_subset.json"


def _embedded_file(name: str) -> bytes:
    return resources.files("robustkd.data").joinpath("embedded", name).read_bytes()


def embedded_manifest() -> dict:
    return json.loads(_embedded_file(MANIFEST))


def load_embedded_cifar100(split: str) -> ImageDataset:
    """The embedded CIFAR-100 subset's ``split`` ('train' or 'test'), checked against its manifest."""
    manifest = embedded_manifest()
    payload = _embedded_file(PAYLOAD)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != manifest["sha256"]:
        raise RobustKDError(f"embedded subset: {PAYLOAD} sha256 {digest} does not match its manifest")
    with np.load(io.BytesIO(lzma.decompress(payload)), allow_pickle=False) as arrays:
        images = torch.from_numpy(arrays[f"{split}_images"].copy())
        labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
    return ImageDataset(
        "cifar100", split, images, labels, tuple(manifest["classes"]), CIFAR100.mean, CIFAR100.std,
        f"embedded:cifar100 subset ({len(labels)} {split} images, {manifest[f'{split}_per_class']} per class)",
    )
