#!/usr/bin/env python3
"""The streamed ImageNet clean pass against a timm-validate-style loop, on the same folder, in one run.

Reference: timm's ``validate.py`` loop (``timm.data.create_dataset`` over the folder, ``timm.data.create_loader``
with the same resize 256 / centre crop 224 / bilinear transform, ``num_workers`` DataLoader workers, then
``model(input)`` per batch). robustkd: ``FolderImages`` (the same folder decoded to uint8 by the same number of
workers, pinned on CUDA) and the clean pass's loop (``robustkd.evaluate.clean_pass``: input check, forward,
finite check, logits kept on the CPU). Both feed one model that normalises its own inputs (timm's loader is given
mean 0 and std 1, so both give the model [0, 1] inputs) and both keep every logit. Reports images/s of each
(median of ``--repeats``, interleaved), the ratio robustkd / timm, and the largest logit difference between the
two (the same pixels must give the same logits).

The folder: ``--folder`` (an ImageNet-format ``<wnid>/*.JPEG`` tree), else ``--images`` JPEG photographs of
scikit-image's samples, cropped and resized to typical ImageNet sizes (about 500 x 375), written to a
temporary folder. Run it alone on an otherwise idle machine:

    python benchmarks/bench_streaming_clean.py --images 512 --workers 2 --json-out docs/bench_streaming_clean_cpu.json
    python benchmarks/bench_streaming_clean.py --images 64 --repeats 1        # plumbing check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def make_folder(root: Path, count: int) -> Path:
    """``count`` JPEGs in 8 class folders: crops of scikit-image's photographs, resized to about 500 x 375."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photos = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                                                  "immunohistochemistry")]
    photos = [photo if photo.ndim == 3 else np.repeat(photo[..., None], 3, axis=2) for photo in photos]
    generator = np.random.default_rng(0)
    for index in range(count):
        photo = photos[index % len(photos)][..., :3]
        height, width = photo.shape[:2]
        top, left = generator.integers(0, height // 4), generator.integers(0, width // 4)
        crop = Image.fromarray(photo[top:, left:])
        size = (500, 375) if index % 2 == 0 else (375, 500)
        folder = root / f"n{index % 8:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        crop.resize(size, Image.BILINEAR).save(folder / f"ILSVRC2012_val_{index:08d}.JPEG", quality=90)
    return root


def robustkd_pass(model, folder: Path, batch: int, workers: int, device: torch.device) -> tuple[float, torch.Tensor]:
    from torchvision import datasets

    from robustkd.data.imagenet import DEFAULT_EVAL_PREPROCESSING
    from robustkd.evaluate.clean_pass import clean_pass
    from robustkd.evaluate.sharding import SINGLE
    from robustkd.evaluate.test_images import FolderImages

    images = FolderImages(datasets.ImageFolder(str(folder)), DEFAULT_EVAL_PREPROCESSING, None, workers=workers,
                          pin_memory=device.type == "cuda")
    started = time.perf_counter()
    result = clean_pass(model, images, batch, 1000, device, SINGLE, folder / "unused")
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert result is not None
    return time.perf_counter() - started, result[0]


@torch.no_grad()
def timm_pass(model, folder: Path, batch: int, workers: int, device: torch.device) -> tuple[float, torch.Tensor]:
    from timm.data import create_dataset, create_loader

    dataset = create_dataset(name="", root=str(folder), split="validation")
    loader = create_loader(dataset, input_size=(3, 224, 224), batch_size=batch, is_training=False,
                           use_prefetcher=False, interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                           num_workers=workers, crop_pct=0.875, pin_memory=device.type == "cuda", device=device)
    started = time.perf_counter()
    outputs = []
    for inputs, _ in loader:
        outputs.append(model(inputs.to(device, non_blocking=True)).float().cpu())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, torch.cat(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="an ImageNet-format folder (default: generated photographs)")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="torchvision:resnet18")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    from robustkd.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
    from robustkd.models.zoo import build_model

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.model, 1000, IMAGENET_MEAN, IMAGENET_STD).to(device).eval()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or make_folder(Path(scratch) / "val", args.images)
        count = sum(1 for _ in folder.rglob("*.JPEG"))
        times: dict[str, list[float]] = {"robustkd": [], "timm": []}
        logits: dict[str, torch.Tensor] = {}
        robustkd_pass(model, folder, args.batch, args.workers, device)  # warm-up: file cache, kernels
        for _ in range(args.repeats):
            for name, run in (("robustkd", robustkd_pass), ("timm", timm_pass)):
                seconds, logits[name] = run(model, folder, args.batch, args.workers, device)
                times[name].append(seconds)
    rates = {name: count / statistics.median(values) for name, values in times.items()}
    result = {"images": count, "batch": args.batch, "workers": args.workers, "model": args.model,
              "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "seconds": times, "images_per_s": rates, "ratio_robustkd_to_timm": rates["robustkd"] / rates["timm"],
              "max_abs_logit_difference": float((logits["robustkd"] - logits["timm"]).abs().max()),
              "load_average": os.getloadavg()}
    print(json.dumps(result, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
