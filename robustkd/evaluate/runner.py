"""Evaluate a model on suites and write one result directory per suite.

``<out>/<name>/<suite>[-first<N>]/``: ``summary.json`` (RobustBench model-info fields where they exist -
name, architecture, dataset, clean_acc - extended with the suite, its metrics and units, protocol,
n_examples, subset flag, seed, device, package versions, checkpoint and suite-file sha256), the suite's
CSVs and PNGs. Each directory is written under a temporary name and renamed into place when complete; an
existing result is never overwritten unless ``overwrite`` is set.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkd.data import dataset_info, make_loader
from robustkd.data.sources import load_image_dataset
from robustkd.data.loader import TensorBatchLoader
from robustkd.errors import RobustKDError
from robustkd.evaluate.predictions import collect_logits
from robustkd.evaluate.suite_file import SuiteFile
from robustkd.evaluate.suites.calibration import run_calibration
from robustkd.evaluate.suites.certified import RADII, certify_dataset, summarise_certificates
from robustkd.evaluate.suites.clean import run_clean
from robustkd.utils.atomic import write_json_atomic

UNITS = {"abstain_rate": "percent", "n_certified": "images", "top1": "percent", "top5": "percent", "accuracy": "fraction", "ece": "fraction", "mce": "fraction",
         "adaptive_ece": "fraction", "nll": "nats", "brier": "sum over classes, [0, 2]", "temperature": "logit divisor"}


def package_versions() -> dict[str, str]:
    """Installed versions; torch and torchvision with their build tag (e.g. ``2.14.1+cu130``)."""
    import torchvision

    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    for name in ("robustkd", "numpy", "scipy", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def evaluate_model(
    model: nn.Module, *, name: str, dataset: str, suites: list[SuiteFile], out_root: Path, data_dir: Path,
    device: torch.device, n_examples: int | None = None, model_info: dict[str, Any] | None = None,
    allow_embedded: bool = False, overwrite: bool = False, seed: int = 0,
) -> list[Path]:
    """Run ``suites`` on ``model`` (inputs in [0, 1] -> logits) over the test split of ``dataset``."""
    info = dataset_info(dataset)
    model_info = model_info or {}
    model = model.to(device).eval()
    subset = n_examples is not None
    targets = [out_root / name / (suite.name + (f"-first{n_examples}" if subset else "")) for suite in suites]
    for target in targets:
        if target.exists() and not overwrite:
            raise RobustKDError(f"evaluate: {target} already holds a result; pass --overwrite to replace it")
    batch = max(suite.params.batch_size for suite in suites)
    test = make_loader(dataset, "test", data_dir, batch, device, train=False, limit=n_examples, allow_embedded=allow_embedded)
    logits, labels = collect_logits(model, test, info.num_classes)
    classes = test.dataset.classes if hasattr(test, "dataset") else tuple(str(i) for i in range(info.num_classes))
    written = []
    for suite, target in zip(suites, targets):
        # Certification is resumable: its work folder survives a killed run; other suites start afresh.
        resumable = suite.name == "certified"
        tmp = target.with_name(f".{target.name}.{'partial' if resumable else 'tmp'}")
        if not resumable:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
        if suite.name == "clean":
            metrics = run_clean(logits, labels, classes, tmp)
            protocol: dict[str, Any] = {}
        elif suite.name == "calibration":
            holdout_logits, holdout_labels, seen = _holdout_logits(model, dataset, data_dir, device, suite.params, model_info,
                                                                   allow_embedded, info.num_classes)
            metrics = run_calibration(logits, labels, holdout_logits, holdout_labels, suite.params.n_bins, tmp)
            protocol = {"temperature_fit": f"last {suite.params.holdout} training images", "holdout_seen_in_training": seen}
        elif suite.name == "certified":
            if not hasattr(test, "dataset"):
                raise RobustKDError("evaluate: the certified suite needs an in-memory dataset (CIFAR or synthetic)")
            metrics = summarise_certificates(certify_dataset(model, test.dataset, suite.params, tmp, device), tmp)
            protocol = {"radii": list(RADII), "noise": "Gaussian in [0, 1] input space, before the model's normalisation"}
        else:  # pragma: no cover - the registry admits only implemented suites
            raise RobustKDError(f"evaluate: suite {suite.name} is not implemented")
        clean_acc = 100.0 * float(logits.argmax(1).eq(labels).double().mean())
        summary = {
            "name": name, "architecture": model_info.get("architecture"), "dataset": dataset, "clean_acc": clean_acc,
            "suite": suite.name, "metrics": metrics, "units": {k: UNITS.get(k.removesuffix("_ts"), "percent" if k.startswith("certified_acc") else "") for k in metrics},
            "protocol": {**asdict(suite.params), **protocol}, "n_examples": len(labels), "subset": subset,
            "seed": seed, "device": str(device), "package_versions": package_versions(),
            "checkpoint_sha256": model_info.get("weights_sha256"), "suite_file": str(suite.path),
            "suite_sha256": suite.sha256, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "method": model_info.get("method"), "teacher_sha256": (model_info.get("teacher") or {}).get("sha256"),
        }
        write_json_atomic(tmp / "summary.json", summary)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        written.append(target)
    return written


def _holdout_logits(model, dataset, data_dir, device, params, model_info, allow_embedded, num_classes):
    train = load_image_dataset(dataset, "train", data_dir, allow_embedded=allow_embedded, announce=lambda _: None)
    start = max(0, len(train) - params.holdout)
    held = train.rows(start, len(train), f"last {len(train) - start}")
    loader = TensorBatchLoader(held, params.batch_size, device, train=False)
    logits, labels = collect_logits(model, loader, num_classes)
    trained_on = model_info.get("n_train")
    seen = trained_on is None or start < int(trained_on)
    return logits, labels, seen
