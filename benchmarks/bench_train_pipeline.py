#!/usr/bin/env python3
"""Training (or distillation) throughput: robustkd's pipeline against a reference torchvision pipeline.

Reference: torchvision-style dataset (uint8 arrays -> PIL images) with RandomCrop(32, 4),
RandomHorizontalFlip, ToTensor, Normalize in a DataLoader; the bare network in NCHW fp32; SGD and
cross-entropy in a plain loop. robustkd: the Trainer's epoch loop over its on-device uint8 loader
(batched crop/flip), a model that normalises itself, channels_last (and, by option, bf16 autocast and
torch.compile: --variants). Same model, batch size, optimiser and images. Prints images/s (median of --repeats
alternating runs) and the ratio robustkd / best reference. With ``--method`` (kd, dist, cmkd, ...) both
pipelines distil: the reference runs the teacher under no_grad and the same loss terms in its loop,
robustkd its DistillationTask (teacher weights are random: only speed is measured).

    python benchmarks/bench_train_pipeline.py --data-dir data --models resnet20 resnet8x4
    python benchmarks/bench_train_pipeline.py --device cuda --variants cl cl+bf16 cl+bf16+compile --tile --images 50000
    python benchmarks/bench_train_pipeline.py --method cmkd --teacher resnet32x4 --models resnet8x4
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
from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.distill.task import DistillationTask
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


def _teacher(name: str | None, dataset: ImageDataset, device: torch.device):
    if name is None:
        return None
    torch.manual_seed(1)
    return build_model(name, dataset.num_classes, dataset.mean, dataset.std).to(device).eval()


def reference_epoch(dataset: ImageDataset, model_name: str, batch: int, device: torch.device, workers: int,
                    method: str | None, teacher_name: str | None) -> float:
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(dataset.mean, dataset.std),
    ])
    loader = DataLoader(PilDataset(dataset, transform), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    network = build_model(model_name, dataset.num_classes, dataset.mean, dataset.std).net.to(device).train()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    teacher = _teacher(teacher_name, dataset, device)
    losses = parse_method(method, DistillOptions()).losses if method else None
    _sync(device)
    started, seen = time.perf_counter(), 0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = network(inputs)
        if teacher is None:
            loss = F.cross_entropy(logits, labels)
        else:
            with torch.no_grad():  # inputs are already normalised by the transform: use the bare network
                teacher_logits = teacher.net(inputs)
            loss = sum(losses(logits, teacher_logits, labels).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    _sync(device)
    return seen / (time.perf_counter() - started)


VARIANTS = {
    "nchw": dict(channels_last=False),
    "cl": dict(channels_last=True),
    "cl+bf16": dict(channels_last=True, amp="bf16"),
    "cl+bf16+compile": dict(channels_last=True, amp="bf16", compile=True),
    "cl+compile": dict(channels_last=True, compile=True),
}


_TRAINERS: dict[tuple[str, str], Trainer] = {}


def robustkd_epoch(dataset: ImageDataset, model_name: str, batch: int, device: torch.device, variant: str,
                   method: str | None, teacher_name: str | None) -> float:
    """One timed epoch of the Trainer; the trainer is built (and warmed up) once per model and variant, so
    torch.compile compiles once, as it does in a real run."""
    key = (model_name, variant)
    if key not in _TRAINERS:
        config = TrainConfig(model=model_name, dataset=dataset.name, batch_size=batch, lr=0.05, **VARIANTS[variant]).validate()
        torch.manual_seed(0)
        model = build_model(model_name, dataset.num_classes, dataset.mean, dataset.std)
        warmup = TensorBatchLoader(dataset.subset(2 * batch), batch, device, train=True, channels_last=config.channels_last)
        run = RunDirectory(Path(tempfile.mkdtemp(prefix="robustkd-bench-")))  # never written: no checkpoints here
        task = (CrossEntropyTask(model) if method is None else
                DistillationTask(model, _teacher(teacher_name, dataset, device), parse_method(method, DistillOptions()), {}))
        trainer = Trainer(config, task, warmup, None, run, Placement(device), {}, announce=lambda _: None)
        trainer.train_epoch(1)  # warm-up steps (for compile: the compilation itself)
        trainer.train_loader = TensorBatchLoader(dataset, batch, device, train=True, channels_last=config.channels_last)
        _TRAINERS[key] = trainer
    _sync(device)
    return _TRAINERS[key].train_epoch(1)["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet8x4"])
    parser.add_argument("--images", type=int, default=5120, help="training images per measured epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="reference DataLoader worker counts")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["cl"],
                        help="robustkd settings to measure: nchw, cl (channels_last, the default), cl+bf16, cl+bf16+compile, cl+compile")
    parser.add_argument("--tile", action="store_true", help="repeat the data to reach --images (e.g. the embedded subset on a GPU)")
    parser.add_argument("--method", help="distil with this method (kd, dist, cmkd, ...) instead of plain CE")
    parser.add_argument("--teacher", default="resnet32x4", help="teacher architecture for --method")
    parser.add_argument("--extrapolate", type=int, default=240, metavar="EPOCHS",
                        help="also print the training time of this many 50,000-image epochs from each median (the "
                             "paper protocol: 240; steps only, no evaluation or saving)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    dataset = load_image_dataset("cifar100", "train", args.data_dir, allow_embedded=True)
    if args.tile and len(dataset) < args.images:
        copies = -(-args.images // len(dataset))
        dataset = ImageDataset(dataset.name, dataset.split, dataset.images.repeat(copies, 1, 1, 1),
                               dataset.labels.repeat(copies), dataset.classes, dataset.mean, dataset.std,
                               f"{dataset.source} tiled x{copies}")
    dataset = dataset.subset(args.images)
    task = f"distilling with {args.method} from a {args.teacher} teacher" if args.method else "cross-entropy training"
    print(f"{task}; device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, {len(dataset)} images "
          f"from {dataset.source}, batch {args.batch_size}, median of {args.repeats}")
    results = []
    for model_name in args.models:
        speeds: dict[str, list[float]] = {f"reference(workers={w})": [] for w in args.workers}
        for variant in args.variants:
            speeds[f"robustkd({variant})"] = []
        for _ in range(args.repeats):
            for workers in args.workers:
                speeds[f"reference(workers={workers})"].append(reference_epoch(dataset, model_name, args.batch_size, device, workers,
                                                                                    args.method, args.teacher if args.method else None))
            for variant in args.variants:
                speeds[f"robustkd({variant})"].append(robustkd_epoch(dataset, model_name, args.batch_size, device, variant,
                                                                          args.method, args.teacher if args.method else None))
        medians = {name: statistics.median(values) for name, values in speeds.items()}
        best_reference = max((v, k) for k, v in medians.items() if k.startswith("reference"))
        for name, value in medians.items():
            ratio = f"{value / best_reference[0]:.2f}x vs {best_reference[1]}" if name.startswith("robustkd") else ""
            minutes = args.extrapolate * 50_000 / value / 60
            print(f"{model_name:12s} {name:26s} {value:9.1f} img/s  {args.extrapolate} epochs: {minutes:7.1f} min  {ratio}")
        results.append({"model": model_name, "device": str(device), "medians": medians, "runs": speeds,
                        "reference": best_reference[1], "extrapolated_epochs": args.extrapolate,
                        "extrapolated_minutes": {k: args.extrapolate * 50_000 / v / 60 for k, v in medians.items()},
                        "ratios": {k: v / best_reference[0] for k, v in medians.items() if k.startswith("robustkd")}})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
