#!/usr/bin/env python3
"""One evaluation in one process against the same evaluation spread over two torchrun ranks (gloo, CPU).

Each process runs with ``--threads 1`` (on a 2-core machine: one core each; the single process gets one core, so
the ratio is what the second process adds, not a comparison with a 2-thread process - that is reported too).
The evaluation: ``--checkpoint`` (default: the committed CIFAR-100 teacher) on the first ``--n-examples`` real
test images with the suite ``--suite`` (default: a corruption suite of 8 generated cells and an adversarial suite
of PGD-Linf batches). The wall time of each command (process start to exit, imports included) is measured,
``--repeats`` times interleaved; every run's metrics must be identical to the first single-process run's.

    python benchmarks/bench_sharded_evaluation.py --data-dir data --json-out docs/bench_sharded_evaluation_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORRUPTION = ('suite = "corruption"\nbatch_size = 250\nsource = "generated"\n'
              'corruptions = ["gaussian_noise", "defocus_blur", "fog", "jpeg_compression"]\nseverities = [2, 5]\n')
ADVERSARIAL = ('suite = "adversarial"\nbatch_size = 100\nattacks = ["pgd_linf"]\npgd_steps = 10\n'
               'eps_curve_255 = [8.0]\nmasking_examples = 0\n')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(kind: str, arguments: list[str], out: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_"))}
    env.update({"ROBUSTKD_PROGRESS": "0", "PYTHONPATH": str(ROOT)})
    threads = "2" if kind == "one process, 2 threads" else "1"
    command = [*arguments, "--out", str(out), "--no-db", "--threads", threads]
    if kind == "two ranks":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                   "127.0.0.1", "--master_port", str(_free_port()), "-m", "robustkd.cli", *command]
    else:
        command = [sys.executable, "-m", "robustkd.cli", *command]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - started


def metrics(out: Path) -> dict[str, dict]:
    found = {}
    for summary in sorted(out.glob("*/*/summary.json")):
        record = json.loads(summary.read_text())
        found[record["suite"]] = record["metrics"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "cifar100-resnet20")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--n-examples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        suites = []
        for name, text in (("corruption", CORRUPTION), ("adversarial", ADVERSARIAL)):
            (Path(scratch) / f"{name}.toml").write_text(text)
            suites += ["--suite", str(Path(scratch) / f"{name}.toml")]
        arguments = ["evaluate", "--checkpoint", str(args.checkpoint), "--data-dir", str(args.data_dir),
                     "--n-examples", str(args.n_examples), *suites]
        kinds = ("one process", "two ranks", "one process, 2 threads")
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        reference = None
        load_before = os.getloadavg()
        for repeat in range(args.repeats):
            for kind in kinds:
                out = Path(scratch) / f"{kind.replace(' ', '_').replace(',', '')}-{repeat}"
                times[kind].append(run(kind, arguments, out))
                found = metrics(out)
                reference = reference or found
                if found != reference:
                    raise SystemExit(f"{kind}: metrics differ from the first run's")
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    import torch

    result = {"n_examples": args.n_examples, "checkpoint": str(args.checkpoint.relative_to(ROOT)
                                                               if args.checkpoint.is_relative_to(ROOT) else args.checkpoint),
              "suites": {"corruption": CORRUPTION, "adversarial": ADVERSARIAL}, "seconds": times,
              "median_seconds": medians, "speedup_two_ranks_vs_one_process_1_thread":
              medians["one process"] / medians["two ranks"],
              "speedup_two_ranks_vs_one_process_2_threads": medians["one process, 2 threads"] / medians["two ranks"],
              "metrics_identical": True, "cores": os.cpu_count(), "torch": torch.__version__,
              "load_average_before": load_before, "load_average_after": os.getloadavg()}
    print(json.dumps(result, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
