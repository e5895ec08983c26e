"""What a paper-profile evaluation costs: every suite of eval_suites/*.toml timed on one model, extrapolated.

The embedded CIFAR-100 subset (8 test / 25 train images per class) is tiled to the full CIFAR-100 layout
(10,000 test / 50,000 train images, the real per-class counts) in ``--work``; each suite file runs through
``robustkd.evaluate.runner.evaluate_model`` (the code ``robustkd evaluate`` runs) on a prefix of
``--n <suite>=<images>`` test images, and its time is scaled to the full test set: linearly in the images
(certified: in the images certified, every ``skip``-th up to ``max``). Models have seeded random weights
(speed does not depend on the weights, except where attacks skip misclassified inputs: the adversarial
suite therefore runs on test images labelled with the model's own predictions, so that every attack runs
on every input, an upper bound; ``--checkpoint`` times a trained model instead). Prints a table and the totals for one model and for ``--models`` models.
The scaling is linear, so fixed costs (calibration's 5,000 held-out training images, per-cell and per-call
overheads) make small prefixes overestimate: the defaults run clean, calibration and relations on all
10,000 images and time the long suites on prefixes large enough to amortise them.

  python benchmarks/estimate_paper_eval.py --device cuda --json out.json
  python benchmarks/estimate_paper_eval.py --device cpu --n clean=200 corruption=20 adversarial=8 \\
      certified=1 paper_certified=20 calibration=200 relations=200 --suites clean paper_certified   # plumbing
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robustkd.data.embedded import load_embedded_cifar100
from robustkd.evaluate.runner import evaluate_model
from robustkd.evaluate.suite_file import load_suite, packaged_suite_names
from robustkd.models.zoo import build_model

FULL_TEST = 10_000
DEFAULT_N = {"clean": 10_000, "calibration": 10_000, "relations": 10_000, "corruption": 1_000, "adversarial": 100,
             "certified": 2, "paper_certified": 60}


def tile_cifar100(folder: Path) -> None:
    """``folder/cifar-100-python/{train,test,meta}``: the embedded subset repeated to 500 / 100 per class."""
    root = folder / "cifar-100-python"
    if (root / "meta").is_file():
        return
    root.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", 500), ("test", 100)):
        dataset = load_embedded_cifar100(split)
        labels = dataset.labels.numpy()
        order = np.concatenate([np.resize(np.flatnonzero(labels == c), per_class) for c in range(100)])
        # Interleave the classes (the real files are not sorted by class): image i of class c at i * 100 + c.
        order = order.reshape(100, per_class).T.reshape(-1)
        data = dataset.images.numpy().reshape(len(labels), -1)[order]
        with open(root / split, "wb") as handle:
            pickle.dump({b"data": np.ascontiguousarray(data), b"fine_labels": labels[order].tolist(),
                         b"coarse_labels": [0] * len(order)}, handle, protocol=2)
        classes = dataset.classes
    with open(root / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [name.encode() for name in classes]}, handle, protocol=2)


def attack_every_input(model: torch.nn.Module, params, work: Path, n: int, device: torch.device) -> None:
    """The adversarial suite on the first ``n`` tiled test images labelled with the model's own predictions:
    every input starts correctly classified, so every attack runs on every input (AutoAttack and DeepFool
    skip misclassified inputs): an upper bound on a trained model's attack work."""
    import dataclasses
    import shutil

    from robustkd.data.sources import load_image_dataset
    from robustkd.evaluate.suites.adversarial import run_adversarial

    test = load_image_dataset("cifar100", "test", work / "data", announce=lambda _: None).subset(n)
    model = model.to(device).eval()
    with torch.no_grad():
        predictions = torch.cat([model(test.images[i:i + 500].to(device).float() / 255).argmax(1).cpu()
                                 for i in range(0, n, 500)])
    folder = work / "results" / "adversarial-all-correct"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    run_adversarial(model, dataclasses.replace(test, labels=predictions), params, device, folder)


def certified_images(params, n_examples: int) -> int:
    count = len(range(0, n_examples, params.skip))
    return count if params.max < 0 else min(count, params.max)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="resnet8x4")
    parser.add_argument("--teacher-model", default="resnet32x4", help="the relations suite's teacher")
    parser.add_argument("--checkpoint", help="time this trained model instead of seeded random weights")
    parser.add_argument("--suites", nargs="*", default=[n for n in packaged_suite_names() if "/" not in n])
    parser.add_argument("--n", nargs="*", default=[], help="suite=images overrides of the timed prefix sizes")
    parser.add_argument("--models", type=int, default=5, help="models of a paper-profile evaluation")
    parser.add_argument("--work", help="folder for the tiled data and results (default: a temporary one)")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = {**DEFAULT_N, **{key: int(value) for key, value in (item.split("=") for item in args.n)}}
    work = Path(args.work or tempfile.mkdtemp(prefix="paper-estimate-"))
    tile_cifar100(work / "data")
    torch.manual_seed(0)
    if args.checkpoint:
        from robustkd.checkpoint import load_checkpoint

        model = load_checkpoint(Path(args.checkpoint)).model
    else:
        model = build_model(args.model, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    teacher = build_model(args.teacher_model, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    rows = []
    for name in args.suites:
        suite = load_suite(name)
        n = min(sizes.get(name, DEFAULT_N.get(suite.name, 1_000)), FULL_TEST)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        if suite.name == "adversarial":
            attack_every_input(model, suite.params, work, n, device)
        else:
            evaluate_model(model, name=f"estimate-{name}", dataset="cifar100", suites=[suite],
                           out_root=work / "results", data_dir=work / "data", device=device, n_examples=n,
                           overwrite=True, teacher=teacher if suite.name == "relations" else None)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        if suite.name == "certified":
            timed, full = certified_images(suite.params, n), certified_images(suite.params, FULL_TEST)
        else:
            timed, full = n, FULL_TEST
        rows.append({"suite_file": f"{name}.toml", "suite": suite.name, "timed_images": timed, "full_images": full,
                     "seconds": seconds, "full_seconds_estimate": seconds * full / max(timed, 1)})
        row = rows[-1]
        print(f"{row['suite_file']:22s} {timed:6d} of {full:6d} images  {seconds:8.1f} s  -> full "
              f"{row['full_seconds_estimate'] / 60:8.1f} min", flush=True)
    paper = [r for r in rows if r["suite_file"] != "certified.toml"]  # the paper profile certifies every 20th image
    one_model = sum(r["full_seconds_estimate"] for r in paper)
    print(f"paper profile (every suite file except certified.toml, which certifies all 10,000 images): "
          f"{one_model / 60:.1f} min per model, {args.models * one_model / 60:.1f} min for {args.models} models")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "model": args.checkpoint or args.model, "rows": rows,
            "paper_minutes_per_model": one_model / 60, "models": args.models,
            "paper_minutes_all_models": args.models * one_model / 60}, indent=1) + "\n")


if __name__ == "__main__":
    main()
