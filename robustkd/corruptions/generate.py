"""``robustkd corrupt``: write a generated corruption set in the official ``.npy`` layout.

One ``<corruption>.npy`` per corruption (five severity blocks of the test images), ``labels.npy`` and
``manifest.json`` (dataset, image count, seed, engine parameters, sha256 of every file). Files are
written atomically one corruption at a time, so an interrupted run continues with the missing ones; a
folder generated with another seed or dataset is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from robustkd.checkpoint.io import sha256_file
from robustkd.corruptions.catalog import SEVERITIES, check_corruption, profile_for_size
from robustkd.corruptions.engine import corrupt
from robustkd.corruptions.layout import write_corruption_npy, write_labels_npy
from robustkd.data.dataset import ImageDataset
from robustkd.errors import RobustKDError
from robustkd.utils.atomic import write_json_atomic
from robustkd.utils.output_path import check_output_folder


def corrupt_dataset(images: torch.Tensor, name: str, severity: int, *, seed: int, batch_size: int,
                    device: torch.device) -> torch.Tensor:
    """All ``images`` (uint8 (N, 3, H, W), CPU) corrupted on ``device``; returns uint8 on the CPU."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device)
        out.append(corrupt(batch, name, severity, seed=seed, first_index=start).cpu())
    return torch.cat(out)


def generate_corrupted_set(test: ImageDataset, out_dir: Path, corruptions: list[str], *, seed: int,
                           batch_size: int, device: torch.device,
                           announce: Callable[[str], None] = print) -> dict:
    """Generate (or complete) the set in ``out_dir``; returns the manifest."""
    for name in corruptions:
        check_corruption(name)
    profile = profile_for_size(test.images.shape[-1])
    identity = {"dataset": test.name, "split": test.split, "n_images": len(test), "seed": seed,
                "parameters": profile.name, "layout": "<corruption>.npy uint8 (5N, H, W, 3), severity blocks 1..5"}
    check_output_folder(out_dir, option="--out", what="corrupted set")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {**identity, "files": {}}
    clash = {key: manifest.get(key) for key in identity if manifest.get(key) != identity[key]}
    if clash:
        raise RobustKDError(f"corrupt: {out_dir} holds a set made with {clash}; choose another --out")
    if "labels.npy" not in manifest["files"]:
        write_labels_npy(out_dir, test.labels, test.num_classes)
        manifest["files"]["labels.npy"] = sha256_file(out_dir / "labels.npy")
        write_json_atomic(manifest_path, manifest)
    show = os.environ.get("ROBUSTKD_PROGRESS", "1") != "0"
    for name in tqdm(corruptions, desc="corruptions", unit="corruption", disable=not show):
        file_name = f"{name}.npy"
        if file_name in manifest["files"] and (out_dir / file_name).is_file():
            announce(f"corrupt: {file_name} already generated, kept")
            continue
        blocks = [corrupt_dataset(test.images, name, severity, seed=seed, batch_size=batch_size, device=device)
                  for severity in SEVERITIES]
        path = write_corruption_npy(out_dir, name, blocks)
        manifest["files"][file_name] = sha256_file(path)
        write_json_atomic(manifest_path, manifest)
    return manifest
