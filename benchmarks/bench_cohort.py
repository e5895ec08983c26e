#!/usr/bin/env python3
"""Cohort distillation against separate runs: the same students, the same batches, measured in one run.

Reference ("separate"): each method trained by the ``Trainer`` loop on its own, as separate runs of one student
each (the teacher runs inside every distilling student's step; ``robustkd distill --method M`` itself is now a
cohort of one, whose step is the same). Cohort: the ``CohortTrainer``
steps every method's student on each batch after one teacher forward. Both use robustkd's real loops,
the same frozen teacher (random weights: only speed is measured), the same loader and batch size. Timed:
the training steps of one epoch of ``--steps`` batches (a warm-up epoch first; no evaluation, no saving).
Prints seconds per batch for each separate run, their sum, the cohort's, and the ratio; the teacher
forward and one student step are timed alone too, to show where the time goes. Median of --repeats.

``--variants plain compiled``: ``compiled`` is the cohort under ``--compile`` (robustkd/train/compiled_step.py:
each member's step and the shared teacher forward compiled, CUDA graphs on CUDA), timed in the same rounds
against the same separate runs (the plain loop, today's reference). The GPU goals for the paper pair at batch
64: the 240-epoch extrapolation <= 30 min and >= 4x the separate runs.

    python benchmarks/bench_cohort.py --teacher resnet32x4 --student resnet8x4 --batch-size 64
    python benchmarks/bench_cohort.py --teacher resnet20 --student resnet8 --batch-size 128 --steps 20
    python benchmarks/bench_cohort.py --device cuda --tile --steps 200 --variants plain compiled
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from robustkd.data import load_image_dataset
from robustkd.data.dataset import ImageDataset
from robustkd.data.loader import TensorBatchLoader
from robustkd.distill.cohort import CohortMember, CohortTrainer
from robustkd.distill.command import DistillConfig
from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.distill.task import DistillationTask
from robustkd.distill.teacher import frozen_teacher
from robustkd.models import build_model
from robustkd.train.loop import Placement, Trainer
from robustkd.train.compiled_step import compiled_inference
from robustkd.train.run_dir import RunDirectory
from robustkd.train.student_run import StudentRun
from robustkd.utils.device import resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _task(student: str, teacher, method: str, dataset: ImageDataset, seed: int) -> DistillationTask:
    torch.manual_seed(seed)
    model = build_model(student, dataset.num_classes, dataset.mean, dataset.std)
    return DistillationTask(model, teacher, parse_method(method, DistillOptions()), {})


def _run_dir() -> RunDirectory:
    return RunDirectory(Path(tempfile.mkdtemp(prefix="robustkd-bench-cohort-")))  # never written: no saves here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--methods", default="ce,kd,dist,cmkd")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="batches per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=["none", "bf16"], default="none")
    parser.add_argument("--tile", action="store_true", help="repeat the data to fill --steps batches")
    parser.add_argument("--extrapolate", type=int, default=240, metavar="EPOCHS",
                        help="also print the training time of this many 50,000-image epochs (default 240: the paper "
                             "protocol), from the measured time per batch (evaluation and saving not included)")
    parser.add_argument("--variants", nargs="+", choices=["plain", "compiled"], default=["plain"],
                        help="cohort variants timed against the separate runs (compiled: --compile)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    methods = args.methods.split(",")
    dataset = load_image_dataset("cifar100", "train", args.data_dir, allow_embedded=True)
    needed = args.steps * args.batch_size
    if args.tile and len(dataset) < needed:
        copies = -(-needed // len(dataset))
        dataset = ImageDataset(dataset.name, dataset.split, dataset.images.repeat(copies, 1, 1, 1),
                               dataset.labels.repeat(copies), dataset.classes, dataset.mean, dataset.std,
                               f"{dataset.source} tiled x{copies}")
    dataset = dataset.subset(needed)
    config = DistillConfig(model=args.student, teacher="random", method="kd", batch_size=args.batch_size,
                           epochs=240, eval_every=240, amp=args.amp, lr=0.05).validate()
    loader = TensorBatchLoader(dataset, args.batch_size, device, train=True, channels_last=config.channels_last)
    torch.manual_seed(1)
    teacher, _ = frozen_teacher(build_model(args.teacher, dataset.num_classes, dataset.mean, dataset.std))
    teacher.to(device)
    placement = Placement(device)

    solos = {method: Trainer(config, _task(args.student, teacher, method, dataset, 0), loader, None, _run_dir(),
                             placement, {}, announce=lambda _: None) for method in methods}
    cohorts: dict[str, tuple[CohortTrainer, list[CohortMember]]] = {}
    for variant in args.variants:
        variant_config = dataclasses.replace(config, compile=variant == "compiled")
        members = [CohortMember(method, 0, StudentRun(variant_config, _task(args.student, teacher, method, dataset, 0),
                                                      _run_dir(), placement, {}, isolate_rng=True),
                                parse_method(method, DistillOptions()).uses_teacher) for method in methods]
        teacher_logits = next(m.run.task.teacher_logits for m in members if m.uses_teacher)
        if variant == "compiled":
            teacher_logits = compiled_inference(teacher_logits, device)
        cohorts[variant] = (CohortTrainer(members, {0: loader}, None, teacher_logits, placement, config.epochs,
                                          announce=lambda _: None), members)

    def timed(action) -> float:
        _sync(device)
        started = time.perf_counter()
        action()
        _sync(device)
        return (time.perf_counter() - started) / args.steps

    def teacher_only() -> None:
        with torch.no_grad():
            for inputs, _ in loader.epoch(1):
                teacher(inputs)

    times: dict[str, list[float]] = {f"separate:{m}": [] for m in methods}
    times.update({f"cohort:{variant}": [] for variant in args.variants} | {"teacher_forward": []})
    for repeat in range(args.repeats + 1):  # the first round warms up (and compiles) and is not recorded
        measured = {f"separate:{m}": timed(lambda m=m: solos[m].train_epoch(1)) for m in methods}
        for variant, (cohort, members) in cohorts.items():
            measured[f"cohort:{variant}"] = timed(lambda: cohort.train_epoch(0, members, 1))
        measured["teacher_forward"] = timed(teacher_only)
        if repeat:
            for key, value in measured.items():
                times[key].append(value)
    medians = {key: statistics.median(values) for key, values in times.items()}
    separate = sum(medians[f"separate:{m}"] for m in methods)
    ratios = {variant: separate / medians[f"cohort:{variant}"] for variant in args.variants}
    print(f"{args.teacher} -> {args.student}, methods {args.methods}; device {device}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, batch {args.batch_size}, {args.steps} batches, amp {args.amp}, "
          f"median of {args.repeats}; data {dataset.source}")
    for key, value in medians.items():
        print(f"  {key:22s} {1000 * value:8.1f} ms/batch")
    print(f"  separate runs, summed  {1000 * separate:8.1f} ms/batch")
    batches = args.extrapolate * (50000 // args.batch_size)
    estimate = {"epochs": args.extrapolate, "separate_minutes": batches * separate / 60}
    for variant, ratio in ratios.items():
        cohort_seconds = medians[f"cohort:{variant}"]
        estimate[f"cohort:{variant}_minutes"] = batches * cohort_seconds / 60
        print(f"  cohort ({variant}) / separate: {ratio:.2f}x faster (students trained per second: "
              f"{len(methods) * args.batch_size / cohort_seconds:.0f} vs {len(methods) * args.batch_size / separate:.0f} "
              f"img/s); {args.extrapolate} epochs of 50,000 images: {estimate[f'cohort:{variant}_minutes']:.1f} min")
    print(f"  {args.extrapolate} epochs of 50,000 images, separate runs: {estimate['separate_minutes']:.1f} min "
          f"(training steps only)")
    if args.json:
        args.json.write_text(json.dumps({"teacher": args.teacher, "student": args.student, "methods": methods,
                                         "device": str(device), "torch": torch.__version__, "batch_size": args.batch_size,
                                         "steps": args.steps, "amp": args.amp, "threads": torch.get_num_threads(),
                                         "seconds_per_batch_median": medians, "runs": times,
                                         "separate_sum": separate, "ratios": ratios, "extrapolation": estimate}, indent=2))


if __name__ == "__main__":
    main()
