#!/usr/bin/env python3
"""Rebuild robustkd's embedded CIFAR-100 subset from the full set.

    python scripts/build_embedded_subset.py --data-dir data [--train-per-class 20 --test-per-class 8]

Takes the first N training and M test images of every class (file order), writes
``robustkd/data/embedded/cifar100_subset.npz.xz`` and its manifest ``cifar100_subset.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import sys
from pathlib import Path

import numpy as np

from robustkd.data.cifar import load_cifar
from robustkd.data.embedded import MANIFEST, PAYLOAD
from robustkd.utils.atomic import write_bytes_atomic, write_json_atomic

OUT_DIR = Path(__file__).resolve().parents[1] / "robustkd" / "data" / "embedded"


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    chosen = [np.flatnonzero(labels == label)[:per_class] for label in range(int(labels.max()) + 1)]
    return np.sort(np.concatenate(chosen))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--train-per-class", type=int, default=20)
    parser.add_argument("--test-per-class", type=int, default=8)
    args = parser.parse_args()

    arrays, counts = {}, {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        dataset = load_cifar("cifar100", args.data_dir, split)
        labels = dataset.labels.numpy()
        index = first_per_class(labels, per_class)
        arrays[f"{split}_images"] = dataset.images.numpy()[index]
        arrays[f"{split}_labels"] = labels[index].astype(np.uint8)
        counts[split] = per_class
        classes = dataset.classes
        source_digest = hashlib.sha256((args.data_dir / "cifar-100-python" / split).read_bytes()).hexdigest()
        counts[f"{split}_source_sha256"] = source_digest

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    write_bytes_atomic(OUT_DIR / PAYLOAD, payload)
    write_json_atomic(OUT_DIR / MANIFEST, {
        "dataset": "cifar100",
        "description": "first N train / M test images of every CIFAR-100 fine class, in file order",
        "train_per_class": counts["train"],
        "test_per_class": counts["test"],
        "train_source_sha256": counts["train_source_sha256"],
        "test_source_sha256": counts["test_source_sha256"],
        "classes": list(classes),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
    })
    print(f"wrote {OUT_DIR / PAYLOAD}: {len(payload) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
