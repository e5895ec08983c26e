"""Corruption benchmark: generation speed and evaluation overhead, with ratios against named references.

generation: the batched engine vs the per-image reference (tests/corruption_reference.py, a port of the
  authors' algorithms) on the same CPU, per corruption and severity, extrapolated to the full
  CIFAR-100-C (15 x 5 x 10,000 images). Engine: ``--engine-images`` per cell; reference: ``--ref-images``.
evaluation: on an official-layout folder (``--c-dir``, e.g. made by ``robustkd corrupt``), for
  ``--corruptions`` x 5 severities x ``--n`` images: (a) the model's pure forward pass on preloaded float
  inputs, (b) robustkd's corruption suite cells (load + forward + accuracy/ECE/NLL + resumable CSV),
  (c) robustbench's own loop (load_corruptions_cifar + clean_accuracy, as robustbench.eval does).

  python benchmarks/bench_corruptions.py generation
  python benchmarks/bench_corruptions.py evaluation --c-dir data/CIFAR-100-C --checkpoint runs/study/kd
  python benchmarks/bench_corruptions.py fidelity --n 2000 --checkpoint runs/study/kd

fidelity: for the random corruptions, a fixed model's accuracy on engine-made images and on images made
  by the per-image reference with its own np.random draws (independent randomness), per severity.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from corruption_reference import reference  # noqa: E402
from robustkd.checkpoint import load_checkpoint  # noqa: E402
from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS, PROFILES, SEVERITIES  # noqa: E402
from robustkd.corruptions.engine import corrupt  # noqa: E402
from robustkd.data.sources import load_image_dataset  # noqa: E402
from robustkd.evaluate.suites.corruption import CellSource, CleanImages, evaluate_cells  # noqa: E402

FULL_CELL = 10_000


def generation(args: argparse.Namespace) -> dict:
    test = load_image_dataset("cifar100", "test", Path(args.data_dir))
    engine_images = test.images[:args.engine_images]
    ref_images = test.images[:args.ref_images].permute(0, 2, 3, 1).numpy()
    profile = PROFILES["cifar"]
    rows = []
    for name in BENCHMARK_CORRUPTIONS:
        for severity in SEVERITIES:
            started = time.perf_counter()
            for start in range(0, len(engine_images), args.batch_size):
                corrupt(engine_images[start:start + args.batch_size], name, severity, seed=0, first_index=start)
            engine = (time.perf_counter() - started) / len(engine_images)
            np.random.seed(0)
            started = time.perf_counter()
            for image in ref_images:
                reference(name, image, profile.parameter(name, severity))
            ref = (time.perf_counter() - started) / len(ref_images)
            rows.append({"corruption": name, "severity": severity, "engine_us": 1e6 * engine, "reference_us": 1e6 * ref})
        last = rows[-5:]
        print(f"{name:18s} engine {statistics.median(r['engine_us'] for r in last):8.1f} us/img   reference "
              f"{statistics.median(r['reference_us'] for r in last):8.1f} us/img", flush=True)
    engine_total = sum(r["engine_us"] for r in rows) * FULL_CELL / 1e6
    ref_total = sum(r["reference_us"] for r in rows) * FULL_CELL / 1e6
    print(f"full CIFAR-100-C (750,000 images), extrapolated: engine {engine_total:.0f} s, per-image reference "
          f"{ref_total:.0f} s, ratio {ref_total / engine_total:.1f}x (target >= 30x)")
    return {"rows": rows, "engine_s": engine_total, "reference_s": ref_total, "ratio": ref_total / engine_total}


RANDOM_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost",
                      "fog", "elastic_transform")


def fidelity(args: argparse.Namespace) -> dict:
    """A fixed model's accuracy on engine-made vs reference-made (np.random) images of the random corruptions."""
    checkpoint = load_checkpoint(Path(args.checkpoint), torch.device("cpu"))
    model = checkpoint.model.eval()
    test = load_image_dataset("cifar100", "test", Path(args.data_dir)).subset(args.n)
    hwc = test.images.permute(0, 2, 3, 1).numpy()
    profile = PROFILES["cifar"]

    def accuracy(images: torch.Tensor) -> float:
        with torch.no_grad():
            hits = [model(images[s:s + 500].float().div(255)).argmax(1).eq(test.labels[s:s + 500]).sum().item()
                    for s in range(0, len(images), 500)]
        return 100.0 * sum(hits) / len(images)

    rows = []
    names = args.only.split(",") if args.only else RANDOM_CORRUPTIONS
    for name in names:
        for severity in SEVERITIES:
            ours = corrupt(test.images, name, severity, seed=0)
            np.random.seed(severity)
            theirs = torch.from_numpy(np.stack([reference(name, image, profile.parameter(name, severity))
                                                for image in hwc])).permute(0, 3, 1, 2)
            rows.append({"corruption": name, "severity": severity, "engine_acc": accuracy(ours),
                         "reference_acc": accuracy(theirs)})
            row = rows[-1]
            print(f"{name:18s} s{severity}: engine {row['engine_acc']:6.2f} %  reference {row['reference_acc']:6.2f} %  "
                  f"difference {row['engine_acc'] - row['reference_acc']:+.2f}", flush=True)
    worst = max(abs(r["engine_acc"] - r["reference_acc"]) for r in rows)
    print(f"{len(rows)} cells, {args.n} images each: largest accuracy difference {worst:.2f} points (target <= 1)")
    return {"rows": rows, "max_abs_difference": worst, "n": args.n}


@dataclass
class _Params:
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    batch_size: int
    seed: int = 0
    n_bins: int = 15


def evaluation(args: argparse.Namespace) -> dict:
    from robustkd.compat.robustbench_import import import_robustbench

    checkpoint = load_checkpoint(Path(args.checkpoint), torch.device("cpu"))
    model = checkpoint.model.eval()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    test = load_image_dataset("cifar100", "test", Path(args.data_dir)).subset(args.n)
    corruptions = tuple(args.corruptions.split(","))
    params = _Params(corruptions, SEVERITIES, args.batch_size)
    c_dir = Path(args.c_dir)
    timings: dict[str, list[float]] = {"forward": [], "robustkd": [], "robustbench": []}

    import_robustbench()  # registers the autoattack shim before robustbench imports it
    from robustbench.data import load_corruptions_cifar
    from robustbench.model_zoo.enums import BenchmarkDataset
    from robustbench.utils import clean_accuracy

    for repeat in range(args.repeats):
        # (a) pure forward on preloaded float inputs
        inputs = []
        for name in corruptions:
            images = np.load(c_dir / f"{name}.npy", mmap_mode="r")
            for severity in SEVERITIES:
                block = images[(severity - 1) * FULL_CELL:(severity - 1) * FULL_CELL + args.n]
                # The reference forward gets the faster of the two layouts: channels_last (NHWC in memory).
                inputs.append(torch.from_numpy(np.array(block)).permute(0, 3, 1, 2).float().div(255))
        started = time.perf_counter()
        with torch.no_grad():
            for cell in inputs:
                for start in range(0, len(cell), args.batch_size):
                    model(cell[start:start + args.batch_size])
        timings["forward"].append(time.perf_counter() - started)
        del inputs
        # (b) robustkd's suite cells from the same files
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            cells = evaluate_cells(model, CleanImages.from_dataset(test), params, CellSource("official", c_dir), "cifar100", torch.device("cpu"),
                                   Path(work))
            timings["robustkd"].append(time.perf_counter() - started)
        # (c) robustbench's loop on the same files (it expects <data_dir>/CIFAR-100-C/)
        started = time.perf_counter()
        robustbench_acc = []
        for name in corruptions:
            for severity in SEVERITIES:
                x, y = load_corruptions_cifar(BenchmarkDataset.cifar_100, args.n, severity, str(c_dir.parent),
                                              corruptions=[name])
                robustbench_acc.append(clean_accuracy(model, x, y, batch_size=args.batch_size, device=torch.device("cpu")))
        timings["robustbench"].append(time.perf_counter() - started)
        print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in timings.items()), flush=True)
    ours = cells["accuracy"].to_numpy()
    agree = float(np.abs(ours - np.array(robustbench_acc)).max())
    median = {k: statistics.median(v) for k, v in timings.items()}
    images = len(corruptions) * 5 * args.n
    print(f"{images} images, median of {args.repeats}: forward {median['forward']:.1f} s, robustkd "
          f"{median['robustkd']:.1f} s (overhead {100 * (median['robustkd'] / median['forward'] - 1):.1f} %, target "
          f"<= 10 %), robustbench {median['robustbench']:.1f} s (robustkd {median['robustbench'] / median['robustkd']:.2f}x "
          f"faster, target >= 1.5x); max accuracy difference vs robustbench {agree:.2e}")
    return {"timings": timings, "median": median, "images": images, "max_accuracy_difference": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["generation", "evaluation", "fidelity"])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--engine-images", type=int, default=1000)
    parser.add_argument("--ref-images", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--c-dir", default="data/CIFAR-100-C")
    parser.add_argument("--checkpoint", default="runs/study/kd")
    parser.add_argument("--corruptions", default="gaussian_noise,glass_blur,fog,contrast,jpeg_compression")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--only", help="fidelity: these corruptions only (comma-separated)")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    result = {"generation": generation, "evaluation": evaluation, "fidelity": fidelity}[args.part](args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
