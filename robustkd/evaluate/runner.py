"""Evaluate a model on suites and write one result directory per suite.

``<out>/<name>/<suite>[-first<N>]/``: ``summary.json`` (RobustBench model-info fields where they exist -
name, architecture, dataset, clean_acc - extended with the suite, its metrics and units, protocol,
n_examples, subset flag, seed, device, package versions, checkpoint and suite-file sha256), the suite's
CSVs and PNGs. Each directory is written under a temporary name and renamed into place when complete; an
existing result is never overwritten unless ``overwrite`` is set.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from robustkd.data import dataset_info, make_loader
from robustkd.data.sources import load_image_dataset
from robustkd.data.dataset import ImageDataset
from robustkd.data.loader import TensorBatchLoader
from robustkd.errors import RobustKDError
from robustkd.evaluate.finite import NonFiniteOutputError
from robustkd.evaluate.predictions import collect_logits
from robustkd.evaluate.suite_file import SuiteFile
from robustkd.evaluate.suites.adversarial import run_adversarial
from robustkd.evaluate.suites.calibration import run_calibration
from robustkd.evaluate.suites.certified import RADII, certify_dataset, summarise_certificates
from robustkd.evaluate.suites.clean import run_clean
from robustkd.evaluate.suites.corruption import CleanImages, evaluate_cells, resolve_source, summarise_cells
from robustkd.evaluate.suites.relations import run_relations
from robustkd.utils.atomic import write_json_atomic

UNITS = {"abstain_rate": "percent", "smoothed_acc": "percent", "predict_abstain_rate": "percent", "n_certified": "images",
         "top1": "percent", "top5": "percent", "accuracy": "fraction", "ece": "fraction", "mce": "fraction",
         "adaptive_ece": "fraction", "nll": "nats", "brier": "sum over classes, [0, 2]", "temperature": "logit divisor"}


SUITE_UNITS = {"deepfool_l2_median": "L2 norm in [0, 1] pixel units", "gradient_zero_fraction": "fraction",
               "foolbox_pgd_gap": "percentage points",
               "pearson": "correlation", "spearman": "correlation", "kendall": "correlation",
               "class_correlation_distance": "Frobenius norm / C", "top5_overlap": "fraction"}


def metric_unit(suite: str, key: str) -> str:
    """The unit of a metric in a suite's summary (accuracies and mCEs in percent, calibration errors as fractions)."""
    key = key.removesuffix("_ts")
    if suite in ("corruption", "adversarial", "relations"):
        if key.startswith("ece"):
            return "fraction"
        return SUITE_UNITS.get(key, "percent")
    return UNITS.get(key, "percent" if key.startswith("certified_acc") else "")


# Parameters that only add work items (cells, attacks, images) to a resumable suite: changing them keeps
# the finished items; any other change starts the suite afresh.
EXTENDABLE = {"certified": {"max", "batch_size"}, "corruption": {"corruptions", "severities", "batch_size"},
              "adversarial": {"attacks", "eps_curve_255", "autoattack_versions", "masking_examples"}}


def resume_key(suite: SuiteFile) -> str:
    """A digest of the parameters that a resumed suite's finished items depend on."""
    kept = {k: v for k, v in asdict(suite.params).items() if k not in EXTENDABLE.get(suite.name, set())}
    return hashlib.sha256(json.dumps({"suite": suite.name, **kept}, sort_keys=True, default=str).encode()).hexdigest()


# Left out of the recorded training configuration: the seed, the model's identity (recorded in fields of its
# own: architecture, dataset, method, options, teacher) and settings that do not change what a run computes
# (where and how fast it ran). What remains decides which checkpoints are seeds of one model.
NOT_TRAINING = ("seed", "model", "dataset", "method", "method_options", "teacher", "teacher_sha256", "device",
                "deterministic", "compile", "channels_last", "eval_every", "test_limit", "fuse_teacher")


def training_record(model_info: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's training configuration (recipe, epochs, batch size, lr schedule, train subset, noise,
    AMP) without the fields of ``NOT_TRAINING``, plus the epochs it actually completed (a stopped run's
    checkpoint holds fewer than configured)."""
    hyperparameters = model_info.get("hyperparameters") or {}
    record = {key: value for key, value in sorted(hyperparameters.items()) if key not in NOT_TRAINING}
    return {**record, "epochs_completed": model_info.get("epoch")}


def package_versions() -> dict[str, str]:
    """Installed versions; torch and torchvision with their build tag (e.g. ``2.14.1+cu130``)."""
    import torchvision

    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    for name in ("robustkd", "numpy", "scipy", "pandas", "torchattacks", "foolbox", "pyautoattack", "imagecorruptions"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def evaluate_model(
    model: nn.Module, *, name: str, dataset: str, suites: list[SuiteFile], out_root: Path, data_dir: Path,
    device: torch.device, n_examples: int | None = None, model_info: dict[str, Any] | None = None,
    allow_embedded: bool = False, overwrite: bool = False, seed: int = 0,
    teacher: nn.Module | None = None, teacher_info: dict[str, Any] | None = None,
) -> list[Path]:
    """Run ``suites`` on ``model`` (inputs in [0, 1] -> logits) over the test split of ``dataset``."""
    info = dataset_info(dataset)
    model_info = model_info or {}
    model = model.to(device).eval()
    subset = n_examples is not None
    if teacher is None and any(suite.name == "relations" for suite in suites):
        raise RobustKDError("evaluate: the relations suite compares against a teacher; pass --teacher CKPT")
    targets = [out_root / name / (suite.name + (f"-first{n_examples}" if subset else "")) for suite in suites]
    for target in targets:
        if target.exists() and not overwrite:
            raise RobustKDError(f"evaluate: {target} already holds a result; pass --overwrite to replace it")
    batch = max(suite.params.batch_size for suite in suites)
    test = make_loader(dataset, "test", data_dir, batch, device, train=False, limit=n_examples, allow_embedded=allow_embedded)
    try:
        logits, labels = collect_logits(model, test, info.num_classes)
    except NonFiniteOutputError as exc:
        raise RobustKDError(f"evaluate: {name} ({', '.join(suite.name for suite in suites)}): {exc}; "
                            f"nothing was recorded") from None
    classes = test.dataset.classes if hasattr(test, "dataset") else tuple(str(i) for i in range(info.num_classes))
    context = SuiteContext(model=model, dataset=dataset, test=getattr(test, "dataset", None), logits=logits,
                           labels=labels, classes=classes, device=device, data_dir=data_dir, model_info=model_info,
                           allow_embedded=allow_embedded, num_classes=info.num_classes,
                           teacher=teacher.to(device).eval() if teacher is not None else None,
                           teacher_info=teacher_info or {}, test_loader=test)
    written = []
    for suite, target in zip(suites, targets):
        # Long suites keep their work folder across a killed run and resume; the others start afresh.
        resumable = suite.name in RESUMABLE_SUITES
        tmp = target.with_name(f".{target.name}.{'partial' if resumable else 'tmp'}")
        stamp, key = tmp / ".resume_key", resume_key(suite)
        if resumable and tmp.exists() and (not stamp.is_file() or stamp.read_text() != key):
            print(f"evaluate: {tmp} was started with other {suite.name} parameters; starting it afresh")
            shutil.rmtree(tmp)
        if not resumable:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)
        try:
            metrics, protocol = SUITE_RUNNERS[suite.name](context, suite.params, tmp)
        except NonFiniteOutputError as exc:
            shutil.rmtree(tmp, ignore_errors=True)  # no partial result of a broken model to resume
            raise RobustKDError(f"evaluate: {name}, {suite.name} suite: {exc}; nothing was recorded") from None
        clean_acc = 100.0 * context.clean_accuracy
        summary = {
            "name": name, "architecture": model_info.get("architecture"), "dataset": dataset, "clean_acc": clean_acc,
            "suite": suite.name, "metrics": metrics, "units": {k: metric_unit(suite.name, k) for k in metrics},
            "protocol": {**asdict(suite.params), **protocol}, "n_examples": len(labels), "subset": subset,
            "seed": seed, "device": str(device), "package_versions": package_versions(),
            "checkpoint_sha256": model_info.get("weights_sha256"), "suite_file": str(suite.path),
            "suite_sha256": suite.sha256, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "method": model_info.get("method"), "teacher_sha256": (model_info.get("teacher") or {}).get("sha256"),
            "method_options": model_info.get("method_options"), "kind": model_info.get("kind"),
            "training": training_record(model_info),
            "cohort": model_info.get("cohort"),
        }
        write_json_atomic(tmp / "summary.json", summary)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        written.append(target)
    return written


@dataclass
class SuiteContext:
    """What every suite may use: the model, the test set (in memory when it is CIFAR/synthetic), its clean
    logits and labels (computed once), and where the data lives."""

    model: nn.Module
    dataset: str
    test: ImageDataset | None
    logits: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    device: torch.device
    data_dir: Path
    model_info: dict[str, Any]
    allow_embedded: bool
    num_classes: int
    teacher: nn.Module | None
    teacher_info: dict[str, Any]
    test_loader: Any

    def in_memory_test(self, suite: str) -> ImageDataset:
        if self.test is None:
            raise RobustKDError(f"evaluate: the {suite} suite needs an in-memory dataset (CIFAR or synthetic)")
        return self.test

    @property
    def clean_accuracy(self) -> float:
        return float(self.logits.argmax(1).eq(self.labels).double().mean())


SuiteResult = tuple[dict[str, float], dict[str, Any]]


def _run_clean(ctx: SuiteContext, params: Any, out: Path) -> SuiteResult:
    return run_clean(ctx.logits, ctx.labels, ctx.classes, out), {}


def _run_calibration(ctx: SuiteContext, params: Any, out: Path) -> SuiteResult:
    holdout_logits, holdout_labels, seen = _holdout_logits(ctx, params)
    metrics = run_calibration(ctx.logits, ctx.labels, holdout_logits, holdout_labels, params.n_bins, out)
    return metrics, {"temperature_fit": f"last {params.holdout} training images", "holdout_seen_in_training": seen}


def _run_certified(ctx: SuiteContext, params: Any, out: Path) -> SuiteResult:
    test = ctx.in_memory_test("certified")
    rows, protocol = certify_dataset(ctx.model, test, params, out, ctx.device)
    metrics = summarise_certificates(rows, out)
    return metrics, {"radii": list(RADII), "noise": "Gaussian in [0, 1] input space, before the model's normalisation",
                     **protocol}


def _run_corruption(ctx: SuiteContext, params: Any, out: Path) -> SuiteResult:
    if ctx.test is not None:
        clean, size = CleanImages.from_dataset(ctx.test), ctx.test.images.shape[-1]
    else:
        clean, size = CleanImages.from_loader(ctx.test_loader, len(ctx.labels)), 224
    source = resolve_source(params, ctx.dataset)
    cells = evaluate_cells(ctx.model, clean, params, source, ctx.dataset, ctx.device, out)
    metrics = summarise_cells(cells, ctx.clean_accuracy, params, ctx.dataset, out)
    protocol = {"source": source.kind, "official_dir": str(source.folder) if source.folder else None,
                "parameters": "cifar (make_cifar_c.py)" if size == 32 else "imagenet (make_imagenet_c.py)",
                "ece_bins": params.n_bins, "definitions": "docs/corruptions.md"}
    return metrics, protocol


def _run_adversarial(ctx: SuiteContext, params: Any, out: Path) -> SuiteResult:
    return run_adversarial(ctx.model, ctx.in_memory_test("adversarial"), params, ctx.device, out)


def _run_relations(ctx: SuiteContext, params: Any, out: Path) -> SuiteResult:
    try:
        teacher_logits, teacher_labels = collect_logits(ctx.teacher, ctx.test_loader, ctx.num_classes)
    except NonFiniteOutputError as exc:
        raise NonFiniteOutputError(f"(the teacher) {exc}") from None
    if not torch.equal(teacher_labels, ctx.labels):  # pragma: no cover - same loader, same order
        raise RobustKDError("relations: teacher and student saw different test images")
    metrics = run_relations(teacher_logits, ctx.logits, ctx.classes, out)
    teacher_acc = 100.0 * float(teacher_logits.argmax(1).eq(ctx.labels).double().mean())
    protocol = {"teacher_sha256": ctx.teacher_info.get("weights_sha256"),
                "teacher_architecture": ctx.teacher_info.get("architecture"), "teacher_clean_acc": teacher_acc,
                "logits": "raw logits (no temperature)", "class_correlation_distance": "||R_T - R_S||_F / C"}
    return metrics, protocol


SUITE_RUNNERS: dict[str, Callable[[SuiteContext, Any, Path], SuiteResult]] = {
    "clean": _run_clean, "calibration": _run_calibration, "certified": _run_certified, "corruption": _run_corruption,
    "adversarial": _run_adversarial,
    "relations": _run_relations,
}
RESUMABLE_SUITES = ("certified", "corruption", "adversarial")


def _holdout_logits(ctx: SuiteContext, params: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    model, dataset, data_dir, device = ctx.model, ctx.dataset, ctx.data_dir, ctx.device
    model_info, allow_embedded, num_classes = ctx.model_info, ctx.allow_embedded, ctx.num_classes
    train = load_image_dataset(dataset, "train", data_dir, allow_embedded=allow_embedded, announce=lambda _: None)
    start = max(0, len(train) - params.holdout)
    held = train.rows(start, len(train), f"last {len(train) - start}")
    loader = TensorBatchLoader(held, params.batch_size, device, train=False)
    logits, labels = collect_logits(model, loader, num_classes)
    trained_on = model_info.get("n_train")
    seen = trained_on is None or start < int(trained_on)
    return logits, labels, seen
