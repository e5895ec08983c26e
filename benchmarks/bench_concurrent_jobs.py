#!/usr/bin/env python3
"""Two robustkd jobs at once on a CPU machine: how the OpenMP settings of each process change their speed.

The job: a fresh Python process that trains one epoch of resnet20 (100 classes, SGD, batch 128, robustkd's
augmenting TensorBatchLoader) on ``--images`` images of the real CIFAR-100 training set read from
``--data-dir`` (never downloaded), else on the synthetic training set tiled to that count (the output says
which). Each job reports its epoch time, measured inside the process from the first batch's start to the
last step's end (imports, data loading and model construction excluded); the jobs of a pair load their data
and then start their epochs together. The parent also measures the wall time of each run (processes' start
to the last exit, imports and data loading included). Configurations, each run ``--repeats`` times, interleaved:

    alone default    one job, torch's default threads and OpenMP's default (spinning) wait policy
    alone passive    one job, OMP_WAIT_POLICY=PASSIVE (what robustkd's CLI sets on a busy machine)
    pair default     two identical jobs at once, default threads each
    pair passive     two at once, OMP_WAIT_POLICY=PASSIVE each
    pair 1 thread    two at once, OMP_NUM_THREADS=1 each (what --threads 1 gives)
    pair share       two at once, robustkd.utils.threads.share_environment(2) each

OMP_*/MKL_NUM_THREADS of the calling shell are removed first (reported), so every configuration starts from
torch's defaults. Prints the medians and the ratios to "alone default" (a pair's epoch time is its slower
job's) as a table, and as JSON with --json-out. Run it alone on an otherwise idle machine (the load average
at start and end is reported); the default run takes about 10 minutes on a 2-core machine:

    python benchmarks/bench_concurrent_jobs.py --data-dir data --json-out bench_concurrent_jobs.json
    python benchmarks/bench_concurrent_jobs.py --images 256 --repeats 1   # plumbing check, about a minute
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping

from robustkd.utils.threads import share_environment

CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
BATCH_SIZE = 128


def run_child(images: int, data_dir: str, batch_size: int) -> dict[str, object]:
    """One job: returns the epoch time and what it ran on (torch is imported here, after the env is set)."""
    import dataclasses
    from pathlib import Path

    import torch
    import torch.nn.functional as F

    from robustkd.data import load_image_dataset
    from robustkd.data.cifar import DataNotFoundError
    from robustkd.data.loader import TensorBatchLoader
    from robustkd.models import build_model

    os.environ["ROBUSTKD_NO_DOWNLOAD"] = "1"
    try:
        dataset = load_image_dataset("cifar100", "train", Path(data_dir), announce=lambda line: None)
    except DataNotFoundError:
        dataset = load_image_dataset("synthetic", "train", Path(data_dir))
        copies = -(-images // len(dataset))
        dataset = dataclasses.replace(dataset, images=dataset.images.repeat(copies, 1, 1, 1),
                                      labels=dataset.labels.repeat(copies), source=f"{dataset.source} x{copies}")
    dataset = dataset.subset(images)
    torch.manual_seed(0)
    model = build_model("resnet20", 100, dataset.mean, dataset.std).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = TensorBatchLoader(dataset, batch_size, torch.device("cpu"), train=True, seed=0)
    print("ready", flush=True)  # the jobs of a pair start their epochs together: wait for the parent's word
    sys.stdin.readline()
    start = time.perf_counter()
    for inputs, labels in loader.epoch(0):
        loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    epoch_s = time.perf_counter() - start
    return {"epoch_s": epoch_s, "steps": len(loader), "threads": torch.get_num_threads(),
            "wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"), "dataset": dataset.name,
            "source": dataset.source}


def clean_environment() -> tuple[dict[str, str], dict[str, str]]:
    """This process's environment without the OpenMP/MKL settings, and the settings removed."""
    removed = {name: os.environ[name] for name in CLEARED if name in os.environ}
    return {name: value for name, value in os.environ.items() if name not in CLEARED}, removed


def configurations(clean: Mapping[str, str]) -> dict[str, tuple[int, dict[str, str]]]:
    """name -> (number of jobs at once, environment of each)."""
    passive = {**clean, "OMP_WAIT_POLICY": "PASSIVE"}
    return {
        "alone default": (1, dict(clean)),
        "alone passive": (1, passive),
        "pair default": (2, dict(clean)),
        "pair passive": (2, passive),
        "pair 1 thread": (2, {**clean, "OMP_NUM_THREADS": "1"}),
        "pair share": (2, share_environment(2, base=clean)),
    }


def run_jobs(jobs: int, environment: Mapping[str, str], args: argparse.Namespace) -> dict[str, object]:
    """Start ``jobs`` identical children, let them start their epochs together once all are set up; their
    reports, the wall time from the processes' start and from the epochs' start until the last exits."""
    command = [sys.executable, os.path.abspath(__file__), "--child", "--images", str(args.images),
               "--data-dir", args.data_dir, "--batch-size", str(args.batch_size)]
    with contextlib.ExitStack() as stack:
        errors = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(jobs)]
        start = time.perf_counter()
        children = [stack.enter_context(subprocess.Popen(command, env=dict(environment), stdin=subprocess.PIPE,
                                                         stdout=subprocess.PIPE, stderr=error, text=True))
                    for error in errors]
        ready = [child.stdout.readline().strip() == "ready" for child in children]
        go = time.perf_counter()
        for child, was_ready in zip(children, ready):
            if was_ready:
                child.stdin.write("go\n")
            child.stdin.close()  # a child that failed to set up gets EOF (and has exited or will)
        outputs = [child.stdout.read() for child in children]
        codes = [child.wait() for child in children]
        end = time.perf_counter()
        reports = []
        for code, out, error, was_ready in zip(codes, outputs, errors, ready):
            if code != 0 or not was_ready:
                error.seek(0)
                raise SystemExit(f"a job failed (exit {code}):\n{error.read()}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    return {"wall_s": end - start, "wall_from_go_s": end - go,
            "epoch_s": max(report["epoch_s"] for report in reports), "jobs": reports}


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8000, help="training images per job (default 8000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (default 3)")
    parser.add_argument("--data-dir", default="data", help="folder holding cifar-100-python (default: data)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--json-out", help="also write the results to this JSON file (atomically)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.images, args.data_dir, args.batch_size)))
        return
    if args.images < args.batch_size or args.repeats < 1:
        parser.error("--images must be at least --batch-size, and --repeats at least 1")

    clean, removed = clean_environment()
    configs = configurations(clean)
    load_before = load_average()
    print(f"{os.cpu_count()} CPUs, load {load_before}; removed from the environment: {removed or 'nothing'}")
    if load_before is not None and round(load_before) >= 1:
        print("warning: the machine is already busy: the timings below are skewed", file=sys.stderr)
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in configs}
    for repeat in range(args.repeats):
        for name, (jobs, environment) in configs.items():
            result = run_jobs(jobs, environment, args)
            runs[name].append(result)
            print(f"  [{repeat + 1}/{args.repeats}] {name:<14} epoch {result['epoch_s']:6.1f} s  "
                  f"wall {result['wall_s']:6.1f} s", flush=True)
    load_after = load_average()

    sources = sorted({job["source"] for results in runs.values() for result in results for job in result["jobs"]})
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "jobs": configs[name][0],
            "threads": results[0]["jobs"][0]["threads"],
            "wait_policy": results[0]["jobs"][0]["wait_policy"],
            "epoch_s_median": statistics.median(result["epoch_s"] for result in results),
            "wall_s_median": statistics.median(result["wall_s"] for result in results),
        }
    base = summary["alone default"]
    for row in summary.values():
        row["epoch_ratio"] = row["epoch_s_median"] / base["epoch_s_median"]
        row["wall_ratio"] = row["wall_s_median"] / base["wall_s_median"]

    print(f"\nresnet20, one epoch of {args.images} images, batch {args.batch_size}, {args.repeats} repeats (medians); "
          f"data: {'; '.join(sources)}")
    print(f"{'configuration':<14} {'jobs':>4} {'threads':>7} {'wait':>10} {'epoch s':>8} {'x alone':>7} "
          f"{'wall s':>7} {'x alone':>7}")
    for name, row in summary.items():
        print(f"{name:<14} {row['jobs']:>4} {row['threads']:>7} {row['wait_policy']:>10} "
              f"{row['epoch_s_median']:>8.2f} {row['epoch_ratio']:>7.2f} {row['wall_s_median']:>7.2f} "
              f"{row['wall_ratio']:>7.2f}")
    print("x alone: the configuration's median / 'alone default' median (a pair's epoch: its slower job)")

    if args.json_out:
        from robustkd.utils.atomic import write_text_atomic

        report = {"benchmark": "concurrent_jobs", "model": "resnet20", "images": args.images,
                  "batch_size": args.batch_size, "repeats": args.repeats, "cpus": os.cpu_count(),
                  "data": sources, "removed_environment": removed, "load_before": load_before,
                  "load_after": load_after, "summary": summary, "runs": runs}
        write_text_atomic(args.json_out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
