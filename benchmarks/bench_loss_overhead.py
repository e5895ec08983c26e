#!/usr/bin/env python3
"""Cost of each distillation loss (forward + backward) as a fraction of a student training step.

Reference: one full SGD step of the student (forward, backward, update) on a batch of 32x32 images with C
output classes, measured in the same run. Loss timings use random logits of the same shape (B, C) with
gradients on the student logits. Prints medians over --repeats and the ratio loss / step.

``--variants plain compiled``: ``compiled`` times the step and each loss as ``--compile`` runs them
(robustkd/train/compiled_step.py: torch.compile, with CUDA graphs on CUDA), against the compiled step. The
GPU goal: the CMKD loss at most 15 % of a compiled resnet8x4 step at batch 64.

    python benchmarks/bench_loss_overhead.py --classes 100 1000
    python benchmarks/bench_loss_overhead.py --device cuda --classes 100 1000 --batch-size 64 --variants plain compiled
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.models import build_model
from robustkd.train.compiled_step import allow_recompiles, compile_mode, compiled_optimizer_step
from robustkd.utils.device import resolve_device

LOSSES = {
    "kd (KL)": ("kd", {}),
    "dist (inter+intra)": ("dist", {}),
    "cmkd (default)": ("cmkd", {}),
    "cmkd pearson only": ("cmkd", {"cmkd_spearman": 0.0, "cmkd_intra": 0.0}),
    "cmkd spearman only": ("cmkd", {"cmkd_pearson": 0.0, "cmkd_intra": 0.0}),
}
try:  # the optional accelerator, measured when installed
    import torchsort  # noqa: F401

    LOSSES["cmkd (torchsort)"] = ("cmkd", {"cmkd_rank_backend": "torchsort"})
except ImportError:
    pass


def _timed(function, device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats + 2):  # two warm-ups
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--variants", nargs="+", choices=["plain", "compiled"], default=["plain"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"student step: {args.student} (channels_last), median of {args.repeats}")
    results = []
    for variant in args.variants:
        results += _measure(args, device, compiled=variant == "compiled")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _measure(args: argparse.Namespace, device: torch.device, compiled: bool) -> list[dict]:
    mode = compile_mode(device, graph_safe=True)
    allow_recompiles()  # every loss below is one more entry of the same compiled function
    maybe_compiled = (lambda function: torch.compile(function, mode=mode, dynamic=False)) if compiled else (lambda f: f)
    variant = f"compiled ({mode})" if compiled else "plain"
    results = []
    for classes in args.classes:
        torch.manual_seed(0)
        model = build_model(args.student, classes, (0.5,) * 3, (0.25,) * 3).to(device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        images = torch.rand(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, classes, (args.batch_size,), device=device)

        forward = maybe_compiled(lambda: F.cross_entropy(model(images), labels))
        optimizer_step = compiled_optimizer_step(optimizer) if compiled else optimizer.step

        def step() -> None:
            loss = forward()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_step()

        step_seconds = _timed(step, device, args.repeats)
        print(f"{variant}: C={classes:5d} student step {step_seconds * 1e3:8.2f} ms")
        student = torch.randn(args.batch_size, classes, device=device) * 3
        teacher = torch.randn(args.batch_size, classes, device=device) * 3
        for name, (method, options) in LOSSES.items():
            losses = parse_method(method, DistillOptions.from_mapping(options)).losses

            def distillation_terms(logits: torch.Tensor, losses=losses) -> torch.Tensor:
                terms = losses(logits, teacher, labels)
                terms.pop("ce", None)  # the student step already pays for cross-entropy
                return sum(terms.values())

            terms_loss = maybe_compiled(distillation_terms)

            def loss_step() -> None:
                terms_loss(student.clone().requires_grad_(True)).backward()

            seconds = _timed(loss_step, device, args.repeats)
            print(f"{variant}: C={classes:5d} {name:20s} {seconds * 1e3:8.2f} ms  "
                  f"{100 * seconds / step_seconds:6.2f} % of a step")
            results.append({"variant": variant, "classes": classes, "loss": name, "seconds": seconds,
                            "step_seconds": step_seconds, "fraction": seconds / step_seconds, "device": str(device)})
    return results


if __name__ == "__main__":
    main()
