"""Evaluate a model on suites and write one result directory per suite.

The runner alone owns what every suite shares (the suites themselves follow ``robustkd/evaluate/suite.py``):
parameter validation and each suite's needs, checked before anything runs; result naming
(``result_folder.py``); the work folder - ``.<suite>.partial`` kept across a kill for resumable suites (with
a resume key over the parameters that do not only add work items), ``.<suite>.tmp`` otherwise - renamed
into place when complete; the check that a suite returned only declared, finite metrics; and the typed
``summary.json`` (``summary.py``). An existing result is never overwritten unless ``overwrite`` is set.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from robustkd.data import ImageDataset, dataset_info, make_loader
from robustkd.data.loader import TensorBatchLoader
from robustkd.data.imagenet import EvalPreprocessing, imagenet_folder
from robustkd.data.sources import load_image_dataset
from robustkd.errors import RobustKDError
from robustkd.evaluate.context import SuiteContext
from robustkd.evaluate.finite import NonFiniteOutputError
from robustkd.evaluate.predictions import collect_logits
from robustkd.evaluate.result_folder import result_folder
from robustkd.evaluate.suite import Need, Suite, SuiteOutput, suite_class
from robustkd.evaluate.suite_file import SuiteFile
from robustkd.evaluate.suite_params import validate_params
from robustkd.evaluate.summary import ResultSummary
from robustkd.utils.atomic import is_leftover_temporary
from robustkd.utils.fault_injection import boundary
from robustkd.utils.folder_lock import lock_folder


def metric_unit(suite: str, key: str) -> str:
    """The declared unit of ``key`` in ``suite``'s summary."""
    return suite_class(suite).metric(key).unit


def resume_key(suite: SuiteFile) -> str:
    """A digest of the parameters that a resumed suite's finished items depend on (all but ``extends``)."""
    extends = suite_class(suite.name).extends
    kept = {k: v for k, v in asdict(suite.params).items() if k not in extends}
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


def model_protocol(dataset: str, model_info: dict[str, Any]) -> dict[str, Any]:
    """What every result's protocol records about the model's inputs and origin: for ImageNet the evaluation
    preprocessing the model's sidecar asks for (``preprocessing``: input size, resize, crop fraction,
    interpolation, crop mode, mean and std; robustkd's default without one), and ``model_source`` for a
    model brought in by ``robustkd import`` (kind, name, file SHA-256, library and version)."""
    extra: dict[str, Any] = {}
    if dataset == "imagenet":
        recorded = model_info.get("preprocessing") or {}
        record = EvalPreprocessing.from_record(recorded).describe()
        normalization = model_info.get("normalization") or {}
        for key in ("mean", "std"):  # as the source stated them, else as the checkpoint's float32 buffers hold them
            value = recorded.get(key, normalization.get(key))
            if value is not None:
                record[key] = value
        record["origin"] = recorded.get("origin") or "robustkd default (resize 256, centre crop 224, bilinear)"
        extra["preprocessing"] = record
    if model_info.get("source"):
        extra["model_source"] = model_info["source"]
    return extra


@dataclass(frozen=True)
class SuiteRun:
    """One (model, suite) result folder and whether this call wrote it (False: kept, finished before)."""

    suite: str
    target: Path
    written: bool


def check_suites(suites: list[SuiteFile], *, has_teacher: bool) -> None:
    """Every suite's parameters against their contract, and what it needs that a run can know up front."""
    for suite in suites:
        cls = suite_class(suite.name)
        if not isinstance(suite.params, cls.params):
            raise RobustKDError(f"evaluate: the {suite.name} suite takes {cls.params.__name__}, "
                                f"got {type(suite.params).__name__}")
        validate_params(f"{suite.name} suite", suite.params)
        cls().check(suite.params)
        if Need.TEACHER in cls.needs and not has_teacher:
            raise RobustKDError(f"evaluate: the {suite.name} suite compares against a teacher; pass --teacher CKPT")


def evaluate_model(
    model: nn.Module, *, name: str, dataset: str, suites: list[SuiteFile], out_root: Path, data_dir: Path,
    device: torch.device, n_examples: int | None = None, model_info: dict[str, Any] | None = None,
    allow_embedded: bool = False, overwrite: bool = False, seed: int = 0,
    teacher: nn.Module | None = None, teacher_info: dict[str, Any] | None = None,
    keep_existing: Callable[[Path], bool] = lambda target: False, threads: int | None = None,
) -> list[SuiteRun]:
    """Run ``suites`` on ``model`` (inputs in [0, 1] -> logits) over the test split of ``dataset``; returns
    one ``SuiteRun`` per suite, in order.

    A finished result folder is replaced with ``overwrite``, kept (not run again) when ``keep_existing``
    says so, and otherwise refused before anything runs. The model's folder ``<out_root>/<name>`` is held for
    this process while its suites run (``.robustkd.lock``, robustkd/utils/folder_lock.py: beside the result
    folders, never in one): another process evaluating the same model into it is refused.
    """
    with lock_folder(Path(out_root) / name, option="--out", what="results of this model"):
        return _evaluate_model(model, name=name, dataset=dataset, suites=suites, out_root=out_root,
                               data_dir=data_dir, device=device, n_examples=n_examples, model_info=model_info,
                               allow_embedded=allow_embedded, overwrite=overwrite, seed=seed, teacher=teacher,
                               teacher_info=teacher_info, keep_existing=keep_existing, threads=threads)


def _evaluate_model(
    model: nn.Module, *, name: str, dataset: str, suites: list[SuiteFile], out_root: Path, data_dir: Path,
    device: torch.device, n_examples: int | None, model_info: dict[str, Any] | None, allow_embedded: bool,
    overwrite: bool, seed: int, teacher: nn.Module | None, teacher_info: dict[str, Any] | None,
    keep_existing: Callable[[Path], bool], threads: int | None,
) -> list[SuiteRun]:
    info = dataset_info(dataset)
    model_info = model_info or {}
    check_suites(suites, has_teacher=teacher is not None)
    about_model = model_protocol(dataset, model_info)
    loaded: list[ImageDataset] = []

    def test_split() -> ImageDataset:  # an in-memory test split, read once per call
        if not loaded:
            loaded.append(load_image_dataset(dataset, "test", data_dir, allow_embedded=allow_embedded))
        return loaded[0]

    n_examples = _prefix_or_whole(dataset, data_dir, n_examples, test_split)
    subset = n_examples is not None
    targets = [result_folder(out_root, name, suite.name, n_examples) for suite in suites]
    kept = {target for target in targets if target.exists() and not overwrite and keep_existing(target)}
    for target in targets:
        if target.exists() and not overwrite and target not in kept:
            raise RobustKDError(f"evaluate: {target} already holds a result; pass --overwrite to replace it "
                                "or --skip-finished to keep it")
    for suite, target in zip(suites, targets):
        if target in kept:
            _check_same_suite(target, suite)
    todo = [(suite, target) for suite, target in zip(suites, targets) if target not in kept]
    if not todo:
        return [SuiteRun(suite.name, target, False) for suite, target in zip(suites, targets)]
    model = model.to(device).eval()
    batch = max(suite.params.batch_size for suite, _ in todo)
    if dataset == "imagenet":
        test = make_loader(dataset, "test", data_dir, batch, device, train=False, limit=n_examples,
                           preprocessing=EvalPreprocessing.from_record(model_info.get("preprocessing")))
    else:
        split = test_split()
        test = TensorBatchLoader(split if n_examples is None else split.subset(n_examples), batch, device, train=False)
    try:
        logits, labels = collect_logits(model, test, info.num_classes)
    except NonFiniteOutputError as exc:
        raise RobustKDError(f"evaluate: {name} ({', '.join(suite.name for suite, _ in todo)}): {exc}; "
                            f"nothing was recorded") from None
    classes = test.dataset.classes if hasattr(test, "dataset") else tuple(str(i) for i in range(info.num_classes))
    context = SuiteContext(model=model, dataset=dataset, test=getattr(test, "dataset", None), logits=logits,
                           labels=labels, classes=classes, device=device, data_dir=data_dir, model_info=model_info,
                           allow_embedded=allow_embedded, num_classes=info.num_classes,
                           teacher=teacher.to(device).eval() if teacher is not None else None,
                           teacher_info=teacher_info or {}, test_loader=test)
    for suite, _ in todo:
        if Need.IN_MEMORY_TEST in suite_class(suite.name).needs:
            context.in_memory_test(suite.name)
    for suite, target in todo:
        output = _run_suite(suite, target, context, name)
        summary = ResultSummary(
            name=name, architecture=model_info.get("architecture"), dataset=dataset,
            clean_acc=100.0 * context.clean_accuracy, suite=suite.name, metrics=output.metrics,
            units={key: metric_unit(suite.name, key) for key in output.metrics},
            protocol={**asdict(suite.params), **output.protocol, **about_model}, n_examples=len(labels), subset=subset, seed=seed,
            device=str(device), package_versions=package_versions(), checkpoint_sha256=model_info.get("weights_sha256"),
            suite_file=str(suite.path), suite_sha256=suite.sha256,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), method=model_info.get("method"),
            teacher_sha256=(model_info.get("teacher") or {}).get("sha256"), method_options=model_info.get("method_options"),
            kind=model_info.get("kind"), training=training_record(model_info), cohort=model_info.get("cohort"),
            counts=output.counts, threads=threads or torch.get_num_threads(),
            suite_params=json.loads(json.dumps(asdict(suite.params))))
        work = _work_folder(target, suite)
        summary.write(work)
        if target.exists():
            shutil.rmtree(target)
        boundary(f"rename result {target.name}")
        work.rename(target)
        boundary(f"renamed result {target.name}")
    return [SuiteRun(suite.name, target, target not in kept) for suite, target in zip(suites, targets)]


def _check_same_suite(target: Path, suite: SuiteFile) -> None:
    """A kept result must come from the same suite file and parameters as the ones asked for now."""
    recorded = ResultSummary.from_json(target / "summary.json")
    asked = json.loads(json.dumps(asdict(suite.params)))
    if recorded.suite_sha256 != suite.sha256 or recorded.suite_params not in (None, asked):
        raise RobustKDError(f"evaluate: {target} holds a result of another {suite.name} suite file or parameters "
                            f"({recorded.suite_file}); pass --overwrite to replace it")


def _prefix_or_whole(dataset: str, data_dir: Path, n_examples: int | None,
                     test_split: Callable[[], ImageDataset]) -> int | None:
    """``n_examples``, or None when it covers the whole test set (then the result is not a subset)."""
    if n_examples is None:
        return None
    if dataset == "imagenet":
        total = len(imagenet_folder(data_dir, "test").samples)
    else:
        total = len(test_split())
    if n_examples >= total:
        print(f"evaluate: --n-examples {n_examples} covers the whole {dataset} test set ({total} images); "
              "recorded as the full test set")
        return None
    return n_examples


def _work_folder(target: Path, suite: SuiteFile) -> Path:
    return target.with_name(f".{target.name}.{'partial' if suite_class(suite.name).resumable else 'tmp'}")


def _run_suite(suite: SuiteFile, target: Path, context: SuiteContext, name: str) -> SuiteOutput:
    """Run one suite in its work folder (resumed when resumable and started with the same resume key)."""
    cls = suite_class(suite.name)
    work = _work_folder(target, suite)
    stamp, key = work / ".resume_key", resume_key(suite)
    if cls.resumable and work.exists() and (not stamp.is_file() or stamp.read_text() != key):
        print(f"evaluate: {work} was started with other {suite.name} parameters; starting it afresh")
        shutil.rmtree(work)
    if not cls.resumable:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    for leftover in [entry for entry in work.iterdir() if is_leftover_temporary(entry)]:  # a write cut by a kill
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    stamp.write_text(key)
    try:
        output = cls().run(context, suite.params, work)
    except NonFiniteOutputError as exc:
        shutil.rmtree(work, ignore_errors=True)  # no partial result of a broken model to resume
        raise RobustKDError(f"evaluate: {name}, {suite.name} suite: {exc}; nothing was recorded") from None
    _check_output(cls, output)
    return output


def _check_output(cls: type[Suite], output: SuiteOutput) -> None:
    """Only declared metrics, each a finite number."""
    for key, value in output.metrics.items():
        cls.metric(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RobustKDError(f"evaluate: the {cls.name} suite produced {key} = {value!r}; expected a finite "
                                "number (nothing was recorded)")
