#!/usr/bin/env python3
"""Training throughput: robustkd's pipeline against a reference torchvision pipeline, same run.

Reference: torchvision-style dataset (uint8 arrays -> PIL images) with RandomCrop(32, 4),
RandomHorizontalFlip, ToTensor, Normalize in a DataLoader; the bare network in NCHW fp32; SGD and
cross-entropy in a plain loop. robustkd: the Trainer's epoch loop over its on-device uint8 loader
(batched crop/flip), a model that normalises itself, channels_last (and, by option, bf16 autocast and
torch.compile). Same model, batch size, optimiser and images. Prints images/s (median of --repeats
alternating runs) and the ratio robustkd / best reference.

    python benchmarks/bench_train_pipeline.py --data-dir data --models resnet20 resnet8x4
    python benchmarks/bench_train_pipeline.py --device cuda --amp bf16 --compile --images 50000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from robustkd.data import load_image_dataset
from robustkd.data.dataset import ImageDataset
from robustkd.data.loader import TensorBatchLoader
from robustkd.models import build_model
from robustkd.train.config import TrainConfig
from robustkd.train.loop import Placement, Trainer
from robustkd.train.run_dir import RunDirectory
from robustkd.train.task import CrossEntropyTask
from robustkd.utils.device import resolve_device


class PilDataset(Dataset):
    """What torchvision.datasets.CIFAR100 does per item: array -> PIL image -> transforms."""

    def __init__(self, dataset: ImageDataset, transform) -> None:
        self.images = dataset.images.permute(0, 2, 3, 1).numpy()
        self.labels = dataset.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_epoch(dataset: ImageDataset, model_name: str, batch: int, device: torch.device, workers: int) -> float:
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(dataset.mean, dataset.std),
    ])
    loader = DataLoader(PilDataset(dataset, transform), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    network = build_model(model_name, dataset.num_classes, dataset.mean, dataset.std).net.to(device).train()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    _sync(device)
    started, seen = time.perf_counter(), 0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        loss = F.cross_entropy(network(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    _sync(device)
    return seen / (time.perf_counter() - started)


def robustkd_epoch(dataset: ImageDataset, model_name: str, batch: int, device: torch.device, args) -> float:
    config = TrainConfig(model=model_name, dataset=dataset.name, batch_size=batch, lr=0.05,
                         channels_last=not args.no_channels_last, amp=args.amp, compile=args.compile).validate()
    torch.manual_seed(0)
    model = build_model(model_name, dataset.num_classes, dataset.mean, dataset.std)
    loader = TensorBatchLoader(dataset, batch, device, train=True, channels_last=config.channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, CrossEntropyTask(model), loader, None, RunDirectory(Path(tmp)), Placement(device), {},
                          announce=lambda _: None)
        # Two warm-up steps on the same trainer (for --compile: the compilation itself), then the timed epoch.
        trainer.train_loader = TensorBatchLoader(dataset.subset(2 * batch), batch, device, train=True,
                                                 channels_last=config.channels_last)
        trainer.train_epoch(1)
        trainer.train_loader = loader
        _sync(device)
        row = trainer.train_epoch(1)
    return row["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet8x4"])
    parser.add_argument("--images", type=int, default=5120, help="training images per measured epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="reference DataLoader worker counts")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    dataset = load_image_dataset("cifar100", "train", args.data_dir, allow_embedded=True).subset(args.images)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, {len(dataset)} images "
          f"from {dataset.source}, batch {args.batch_size}, median of {args.repeats}")
    results = []
    for model_name in args.models:
        speeds: dict[str, list[float]] = {f"reference(workers={w})": [] for w in args.workers}
        speeds["robustkd"] = []
        for _ in range(args.repeats):
            for workers in args.workers:
                speeds[f"reference(workers={workers})"].append(reference_epoch(dataset, model_name, args.batch_size, device, workers))
            speeds["robustkd"].append(robustkd_epoch(dataset, model_name, args.batch_size, device, args))
        medians = {name: statistics.median(values) for name, values in speeds.items()}
        best_reference = max((v, k) for k, v in medians.items() if k != "robustkd")
        ratio = medians["robustkd"] / best_reference[0]
        for name, value in medians.items():
            print(f"{model_name:12s} {name:22s} {value:9.1f} img/s")
        print(f"{model_name:12s} ratio robustkd / {best_reference[1]}: {ratio:.2f}x")
        results.append({"model": model_name, "device": str(device), "medians": medians, "runs": speeds,
                        "reference": best_reference[1], "ratio": ratio, "amp": args.amp, "compile": args.compile,
                        "channels_last": not args.no_channels_last})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
