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

from robustkd.data import dataset_info
from robustkd.data.imagenet import EvalPreprocessing, imagenet_folder
from robustkd.data.selections import Selection, selection_indices
from robustkd.data.sources import load_image_dataset
from robustkd.errors import RobustKDError
from robustkd.evaluate.clean_pass import clean_pass
from robustkd.evaluate.context import SuiteContext
from robustkd.evaluate.finite import NonFiniteOutputError
from robustkd.evaluate.result_folder import result_folder
from robustkd.evaluate.suite import Need, Suite, SuiteOutput, suite_class
from robustkd.evaluate.suite_file import SuiteFile
from robustkd.evaluate.suite_params import validate_params
from robustkd.evaluate.sharding import SINGLE, Shard, ShardMode
from robustkd.evaluate.summary import ResultSummary
from robustkd.evaluate.test_images import FolderImages, MemoryImages, TestImages
from robustkd.utils.atomic import is_leftover_temporary, write_text_atomic
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
    from robustkd.train.config import without_later_defaults

    record = {key: value for key, value in sorted(hyperparameters.items()) if key not in NOT_TRAINING}
    return {**without_later_defaults(record), "epochs_completed": model_info.get("epoch")}


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
    selection: Selection | str = Selection.ALL, shard: Shard = SINGLE, workers: int | None = None,
) -> list[SuiteRun]:
    """Run ``suites`` on ``model`` (inputs in [0, 1] -> logits) over the test split of ``dataset`` (its
    ``selection``, then the first ``n_examples`` of it); returns one ``SuiteRun`` per suite, in order, from the
    process that summarises (``shard.summarises``), none from the others.

    A finished result folder is replaced with ``overwrite``, kept (not run again) when ``keep_existing``
    says so, and otherwise refused before anything runs. The model's folder ``<out_root>/<name>`` is held for
    this process while its suites run (``.robustkd.lock``, robustkd/utils/folder_lock.py: beside the result
    folders, never in one): another process evaluating the same model into it is refused. Under torchrun rank 0
    holds it for every rank; a ``--shard K/N`` job holds ``<name>/.shardKofN`` (the same shard twice is refused).
    ``workers``: DataLoader processes decoding ImageNet images (default: up to 8).
    """
    folder = Path(out_root) / name
    if shard.mode is ShardMode.JOB:
        held = lock_folder(folder / shard.suffix, option="--out", what=f"{shard.label} of this model's results")
    else:
        held = lock_folder(folder, option="--out", what="results of this model", enabled=shard.summarises)
    with held:
        return _evaluate_model(model, name=name, dataset=dataset, suites=suites, out_root=out_root,
                               data_dir=data_dir, device=device, n_examples=n_examples, model_info=model_info,
                               allow_embedded=allow_embedded, overwrite=overwrite, seed=seed, teacher=teacher,
                               teacher_info=teacher_info, keep_existing=keep_existing, threads=threads,
                               selection=Selection.parse(selection), shard=shard, workers=workers)


def test_images(dataset: str, data_dir: Path, *, allow_embedded: bool, selection: Selection,
                n_examples: int | None, model_info: dict[str, Any], device: torch.device,
                workers: int | None = None) -> tuple[TestImages, int | None]:
    """The evaluated images: ``selection`` of the test split, then its first ``n_examples`` (returned as None
    when that covers the whole selection: then the result is not a prefix)."""
    if dataset == "imagenet":
        folder = imagenet_folder(data_dir, "test")
        total, paths, memory = len(folder.samples), [path for path, _ in folder.samples], None
    else:
        memory = load_image_dataset(dataset, "test", data_dir, allow_embedded=allow_embedded)
        total, paths = len(memory), None
    chosen = selection_indices(selection, dataset, total, paths)
    size = total if chosen is None else len(chosen)
    if n_examples is not None and n_examples >= size:
        whole = f"{dataset} test set" if selection is Selection.ALL else f"{selection.value} selection of the {dataset} test set"
        print(f"evaluate: --n-examples {n_examples} covers the whole {whole} ({size} images); recorded as "
              f"{'the full test set' if selection is Selection.ALL else 'the selection'}")
        n_examples = None
    if n_examples is not None:
        chosen = (chosen if chosen is not None else list(range(total)))[:n_examples]
    if memory is not None:
        return MemoryImages(memory, chosen), n_examples
    preprocessing = EvalPreprocessing.from_record(model_info.get("preprocessing"))
    return FolderImages(folder, preprocessing, chosen, num_classes=dataset_info(dataset).num_classes, workers=workers,
                        pin_memory=device.type == "cuda"), n_examples


def _evaluate_model(
    model: nn.Module, *, name: str, dataset: str, suites: list[SuiteFile], out_root: Path, data_dir: Path,
    device: torch.device, n_examples: int | None, model_info: dict[str, Any] | None, allow_embedded: bool,
    overwrite: bool, seed: int, teacher: nn.Module | None, teacher_info: dict[str, Any] | None,
    keep_existing: Callable[[Path], bool], threads: int | None, selection: Selection, shard: Shard,
    workers: int | None,
) -> list[SuiteRun]:
    info = dataset_info(dataset)
    model_info = model_info or {}
    check_suites(suites, has_teacher=teacher is not None)
    about_model = model_protocol(dataset, model_info)
    images, n_examples = test_images(dataset, data_dir, allow_embedded=allow_embedded, selection=selection,
                                     n_examples=n_examples, model_info=model_info, device=device, workers=workers)
    subset = n_examples is not None or selection is not Selection.ALL
    targets = [result_folder(out_root, name, suite.name, n_examples, selection.label) for suite in suites]
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
        return [SuiteRun(suite.name, target, False) for suite, target in zip(suites, targets)] if shard.summarises else []
    shard.check_shared_folder(Path(out_root) / name)
    model = model.to(device).eval()
    batch = max(suite.params.batch_size for suite, _ in todo)
    needs = {need for suite, _ in todo for need in suite_class(suite.name).needs}
    pass_key = _clean_pass_key(model_info, images, batch)
    passes = [Path(out_root) / name / f".clean-pass-{pass_key}"]
    try:
        clean = clean_pass(model, images, batch, info.num_classes, device, shard, passes[0],
                           need_all=Need.CLEAN_LOGITS in needs)
        teacher_logits = None
        if teacher is not None and Need.TEACHER in needs:
            teacher = teacher.to(device).eval()
            passes.append(Path(out_root) / name / f".teacher-pass-{pass_key}-{_teacher_key(teacher_info)}")
            teacher_pass = clean_pass(teacher, images, batch, info.num_classes, device, shard, passes[1], what="clean test images "
                                      "(the teacher)")
            teacher_logits = teacher_pass[0] if teacher_pass is not None else None
    except NonFiniteOutputError as exc:
        raise RobustKDError(f"evaluate: {name} ({', '.join(suite.name for suite, _ in todo)}): {exc}; "
                            f"nothing was recorded") from None
    logits, labels = clean if clean is not None else (torch.empty(0, info.num_classes, device=images.labels.device), images.labels)
    context = SuiteContext(model=model, dataset=dataset, images=images, logits=logits, labels=labels, device=device,
                           data_dir=data_dir, model_info=model_info, allow_embedded=allow_embedded,
                           num_classes=info.num_classes, teacher=teacher, teacher_info=teacher_info or {},
                           teacher_logits=teacher_logits, shard=shard)
    for suite, target in todo:
        if not shard.summarises and not suite_class(suite.name).resumable:
            continue  # no work items: the summarising process runs it on the merged clean pass
        output = _run_suite(suite, target, context, name)
        if output is None:
            continue
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
            suite_params=json.loads(json.dumps(asdict(suite.params))), selection=selection.label,
            prefix=n_examples if selection is not Selection.ALL else None,
            processes=shard.count if shard.count > 1 else None)
        work = _work_folder(target, suite)
        summary.write(work)
        if target.exists():
            shutil.rmtree(target)
        boundary(f"rename result {target.name}")
        work.rename(target)
        boundary(f"renamed result {target.name}")
    if not shard.summarises:
        return []
    for finished_pass in passes:
        shutil.rmtree(finished_pass, ignore_errors=True)
    return [SuiteRun(suite.name, target, target not in kept) for suite, target in zip(suites, targets)]


def _clean_pass_key(model_info: dict[str, Any], images: TestImages, batch: int) -> str:
    """What a stored clean pass depends on: the weights, the images (by test-set index) and the batches."""
    record = {"weights": model_info.get("weights_sha256"), "indices": images.indices, "batch": batch,
              "images": images.description}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _teacher_key(teacher_info: dict[str, Any] | None) -> str:
    return str((teacher_info or {}).get("weights_sha256") or "teacher")[:16]


def _check_same_suite(target: Path, suite: SuiteFile) -> None:
    """A kept result must come from the same suite file and parameters as the ones asked for now."""
    recorded = ResultSummary.from_json(target / "summary.json")
    asked = json.loads(json.dumps(asdict(suite.params)))
    if recorded.suite_sha256 != suite.sha256 or recorded.suite_params not in (None, asked):
        raise RobustKDError(f"evaluate: {target} holds a result of another {suite.name} suite file or parameters "
                            f"({recorded.suite_file}); pass --overwrite to replace it")


def _work_folder(target: Path, suite: SuiteFile) -> Path:
    return target.with_name(f".{target.name}.{'partial' if suite_class(suite.name).resumable else 'tmp'}")


def _run_suite(suite: SuiteFile, target: Path, context: SuiteContext, name: str) -> SuiteOutput | None:
    """Run one suite in its work folder (resumed when resumable and started with the same resume key); None
    from a process that does not summarise. Only a process that ``prepares_work`` clears or restarts a work
    folder; under torchrun the other ranks wait for it, and a ``--shard`` job refuses a folder that another
    job started with other parameters rather than deleting it."""
    cls = suite_class(suite.name)
    shard = context.shard
    work = _work_folder(target, suite)
    stamp, key = work / ".resume_key", resume_key(suite)
    stale = cls.resumable and work.exists() and (not stamp.is_file() or stamp.read_text() != key)
    if stale and shard.mode in (ShardMode.JOB, ShardMode.MERGE) and stamp.is_file():
        raise RobustKDError(f"evaluate: {work} was started with other {suite.name} parameters; run every shard "
                            "with the same arguments (or delete the folder to start afresh)")
    if shard.prepares_work:
        if stale:
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
        write_text_atomic(stamp, key)
    elif shard.mode is ShardMode.JOB:
        work.mkdir(parents=True, exist_ok=True)
        write_text_atomic(stamp, key)
    if cls.resumable:
        shard.wait_for_all()  # the work folder is ready before any rank writes into it
    try:
        output = cls().run(context, suite.params, work)
    except NonFiniteOutputError as exc:
        shutil.rmtree(work, ignore_errors=True)  # no partial result of a broken model to resume
        raise RobustKDError(f"evaluate: {name}, {suite.name} suite: {exc}; nothing was recorded") from None
    if output is None:
        if shard.summarises:
            raise RobustKDError(f"evaluate: the {cls.name} suite returned no output")  # pragma: no cover - a bug
        return None
    _check_output(cls, output)
    return output


def _check_output(cls: type[Suite], output: SuiteOutput) -> None:
    """Only declared metrics, each a finite number."""
    for key, value in output.metrics.items():
        cls.metric(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RobustKDError(f"evaluate: the {cls.name} suite produced {key} = {value!r}; expected a finite "
                                "number (nothing was recorded)")
