"""The evaluation job: load models, run suites, record every result in the results database.

``evaluate_checkpoints`` is ``robustkd evaluate`` (robustkd checkpoints, one teacher for the relations suite);
``evaluate_module`` evaluates any ``nn.Module`` mapping [0, 1] inputs to logits (``robustkd.api.evaluate``).
Both write the same result folders (robustkd/evaluate/runner.py) and the same database rows
(robustkd/results/store.py), and both check everything they can before a suite runs: the suite files and
their parameters, the teacher against each model, the database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkd.data.selections import Selection
from robustkd.errors import RobustKDError
from robustkd.evaluate.sharding import SINGLE, Shard, ShardMode
from robustkd.evaluate.suite_file import SuiteFile
from robustkd.evaluate.suite_inputs import check_suite_inputs
from robustkd.evaluate.suite import suite_class
from robustkd.utils.short_repr import short_repr

Announce = Callable[[str], None]


@dataclass(frozen=True)
class Recording:
    """Where results are recorded: ``db`` (None: nowhere)."""

    db: Path | None

    @classmethod
    def under(cls, out: Path, db: Path | None = None, enabled: bool = True) -> Recording:
        """The database of a result root: ``db``, else ``<out>/robustkd.db``; none when not ``enabled``."""
        return cls(None if not enabled else Path(db) if db is not None else Path(out) / "robustkd.db")


@dataclass(frozen=True)
class EvaluatedSuite:
    """One (model, suite) result: its folder, whether this call wrote it, its metrics, and the rows recorded
    (None when nothing was recorded)."""

    model: str
    suite: str
    folder: Path
    written: bool
    metrics: dict[str, Any]
    subset: bool
    recorded_rows: int | None


def resolve_suites(names: Sequence[str | SuiteFile], *, has_teacher: bool,
                   official_dir: Path | None = None) -> list[SuiteFile]:
    """Suite files for ``names`` (packaged names, ``.toml`` paths, ``all``: every suite, relations only
    ``has_teacher``); ``official_dir`` sets the corruption suite to read the official files there."""
    from robustkd.evaluate.suite import Need, suites_in_order
    from robustkd.evaluate.suite_file import load_suite

    every = [cls.name for cls in suites_in_order() if Need.TEACHER not in cls.needs or has_teacher]
    if isinstance(names, (str, SuiteFile)):  # api.evaluate(..., suites="clean"): one suite, not five letters
        names = [names]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, (str, SuiteFile)) for n in names):
        raise RobustKDError(f"evaluate: suites={short_repr(names)}; expected a list of suite names, .toml paths or "
                            "SuiteFiles (at least one)")
    suites: list[SuiteFile] = []
    for entry in names:
        if isinstance(entry, SuiteFile):
            suites.append(entry)
        else:
            suites.extend(load_suite(name) for name in (every if entry == "all" else [entry]))
    if official_dir is not None:
        suites = _with_official_dir(suites, Path(official_dir))
    return suites


def _with_official_dir(suites: list[SuiteFile], folder: Path) -> list[SuiteFile]:
    if not any(suite.name == "corruption" for suite in suites):
        raise RobustKDError("--official-dir applies to the corruption suite; add --suite corruption")
    if not folder.is_dir():
        raise RobustKDError(f"--official-dir {folder}: no such folder")
    return [dataclasses.replace(suite, params=dataclasses.replace(suite.params, official_dir=str(folder.resolve()),
                                                                  source="official"))
            if suite.name == "corruption" else suite for suite in suites]


def check_imagenet_preprocessing(suites: Sequence[SuiteFile], path: Path, meta: dict[str, Any],
                                 teacher_meta: dict[str, Any] | None) -> None:
    """On ImageNet, refuse before any work what cannot honour a model's own preprocessing: corruption cells are
    224-pixel images (ImageNet-C's files and the generator's cells), and the relations suite feeds the teacher the
    student's images, so both need the same preprocessing."""
    if meta.get("dataset") != "imagenet":
        return
    from robustkd.data.imagenet import EvalPreprocessing
    from robustkd.evaluate.suite import Need

    mine = EvalPreprocessing.from_record(meta.get("preprocessing"))
    names = {suite.name for suite in suites}
    if "corruption" in names and mine.input_size != 224:
        raise RobustKDError(f"evaluate: {path} takes {mine.input_size}-pixel inputs; the corruption suite's ImageNet-C "
                            "cells are 224-pixel images (evaluate it without --suite corruption)")
    needs_teacher = any(Need.TEACHER in suite_class(name).needs for name in names)
    if needs_teacher and teacher_meta is not None:
        theirs = EvalPreprocessing.from_record(teacher_meta.get("preprocessing"))
        if theirs != mine:
            raise RobustKDError(f"evaluate: {path} and its teacher prepare ImageNet inputs differently ({mine} vs "
                                f"{theirs}); the relations suite shows both the same images, so it needs one "
                                "preprocessing")


def module_sha256(model: nn.Module) -> str:
    """SHA-256 of ``model``'s state dict serialised exactly as ``save_checkpoint`` writes weights (safetensors,
    CPU, contiguous, the checkpoint format's metadata): the identity of a model that has no checkpoint file,
    equal to the ``weights_sha256`` it would have as a robustkd checkpoint."""
    from safetensors.torch import save

    from robustkd.checkpoint import CHECKPOINT_FORMAT

    # Copies: safetensors refuses tensors that share memory (tied weights).
    state = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in model.state_dict().items()}
    return hashlib.sha256(save(state, metadata={"format": CHECKPOINT_FORMAT})).hexdigest()


def evaluate_checkpoints(
    checkpoints: Sequence[Path], suites: Sequence[str | SuiteFile], *, out: Path = Path("results"),
    recording: Recording | None = None, teacher: Path | None = None, n_examples: int | None = None,
    data_dir: str | Path | None = None, allow_embedded: bool = False, device: str | None = None,
    overwrite: bool = False, skip_finished: bool = False, official_dir: Path | None = None,
    threads: int | None = None, announce: Announce = print, selection: Selection | str = Selection.ALL,
    shard: Shard | None = None, workers: int | None = None,
) -> list[EvaluatedSuite]:
    """``robustkd evaluate``: every suite on every checkpoint, recorded in ``recording.db``.

    ``selection``: a named selection of test images (robustkd/data/selections.py); ``shard``: this process's
    share of the work (``Shard.parse("K/N")`` for a scheduler job; under torchrun the ranks are read from its
    environment and rank 0 alone records); ``workers``: DataLoader processes decoding ImageNet images.

    Refused before any suite runs (RobustKDError): unknown suites or bad parameters, a teacher of another
    dataset or class count than a checkpoint, an unusable database, contradictory options.
    """
    from robustkd.checkpoint import load_checkpoint, read_sidecar
    from robustkd.distill.teacher import check_teacher_matches
    from robustkd.evaluate.result_folder import model_folder_name
    from robustkd.utils.threads import set_threads

    recording = recording or Recording.under(out)
    suite_files = resolve_suites(suites, has_teacher=teacher is not None, official_dir=official_dir)
    threads_in_use = set_threads(threads)
    selection = Selection.parse(selection)
    _check_options(n_examples, overwrite, skip_finished, recording, workers)
    shard, resolved = evaluation_shard(shard, device)
    teacher_checkpoint = load_checkpoint(teacher, resolved) if teacher else None
    for path in checkpoints:  # every sidecar read (and matched to the teacher) before any suite runs
        meta, _ = read_sidecar(path)
        if teacher_checkpoint is not None:
            check_teacher_matches(teacher_checkpoint.meta, teacher, meta["dataset"], meta["num_classes"],
                                  whom=f"{path} is evaluated")
        check_imagenet_preprocessing(suite_files, path, meta, teacher_checkpoint.meta if teacher_checkpoint else None)
        for suite in suite_files:
            suite_class(suite.name)().check_model(suite.params, meta)
    check_suite_inputs(suite_files, (read_sidecar(path)[0]["dataset"] for path in checkpoints), n_examples=n_examples,
                       data_dir=data_dir, allow_embedded=allow_embedded)  # the suites' own files, per dataset
    teacher_info = {**teacher_checkpoint.meta, "weights_sha256": teacher_checkpoint.sha256} if teacher_checkpoint else None
    done: list[EvaluatedSuite] = []
    for path in checkpoints:
        checkpoint = load_checkpoint(path, resolved)
        done += _evaluate_and_record(
            checkpoint.model, name=model_folder_name(checkpoint.meta["architecture"], checkpoint.sha256),
            dataset=checkpoint.meta["dataset"], model_info=checkpoint.meta, suites=suite_files, out=out,
            recording=recording, n_examples=n_examples, data_dir=data_dir, allow_embedded=allow_embedded,
            device=resolved, overwrite=overwrite, skip_finished=skip_finished,
            teacher=teacher_checkpoint.model if teacher_checkpoint else None, teacher_info=teacher_info,
            threads=threads_in_use, announce=announce, selection=selection, shard=shard, workers=workers)
    return done


def evaluation_shard(shard: Shard | None, device: str | None) -> tuple[Shard, torch.device]:
    """This process's shard and device: ``shard`` as given (a ``--shard K/N`` job, a merge), else the rank of a
    torchrun process group (joined here, as training joins it: NCCL on GPUs - the device ``cuda:LOCAL_RANK`` -,
    gloo on CPUs), else one process."""
    import os

    from robustkd.utils.device import resolve_device

    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if shard is not None and shard.mode is not ShardMode.SINGLE and under_torchrun:
        raise RobustKDError("evaluate: --shard and results merge run without torchrun (torchrun shares the work "
                            "among its ranks by itself)")
    if not under_torchrun:
        return shard or SINGLE, resolve_device(device)
    from robustkd.train.distributed import init_placement

    placement = init_placement(device)
    return Shard(placement.rank, placement.world_size, ShardMode.COLLECTIVE), placement.device


def evaluate_module(
    model: nn.Module, suites: Sequence[str | SuiteFile], *, dataset: str, name: str | None = None,
    model_info: dict[str, Any] | None = None, out: Path = Path("results"), recording: Recording | None = None,
    teacher: nn.Module | None = None, teacher_info: dict[str, Any] | None = None, n_examples: int | None = None,
    data_dir: str | Path | None = None, allow_embedded: bool = False, device: str | None = None,
    overwrite: bool = False, skip_finished: bool = False, threads: int | None = None, announce: Announce = print,
    selection: Selection | str = Selection.ALL, shard: Shard | None = None, workers: int | None = None,
) -> list[EvaluatedSuite]:
    """Any model (inputs in [0, 1], NCHW float -> logits) evaluated and recorded like a checkpoint
    (``selection``, ``shard``, ``workers``: as for ``evaluate_checkpoints``).

    Its identity is the SHA-256 of its state dict (``module_sha256``); its result folder is
    ``<name>-<sha256[:12]>`` (``name`` defaults to the architecture, else the class name), so two models never
    share one; ``model_info`` may add sidecar-like fields (architecture, method, seed).
    """
    from robustkd.data import dataset_info
    from robustkd.evaluate.result_folder import model_folder_name
    from robustkd.utils.threads import set_threads

    if not isinstance(model, nn.Module):
        raise RobustKDError(f"evaluate: expected a torch.nn.Module or a checkpoint path, got {type(model).__name__}")
    _check_module_info(name, model_info)
    recording = recording or Recording.under(out)
    info = dataset_info(dataset)
    suite_files = resolve_suites(suites, has_teacher=teacher is not None)
    threads_in_use = set_threads(threads)
    selection = Selection.parse(selection)
    _check_options(n_examples, overwrite, skip_finished, recording, workers)
    shard, resolved = evaluation_shard(shard, device)
    check_suite_inputs(suite_files, [dataset], n_examples=n_examples, data_dir=data_dir, allow_embedded=allow_embedded)
    sha = module_sha256(model)
    architecture = str((model_info or {}).get("architecture") or type(model).__name__)
    meta = {"architecture": architecture, "dataset": dataset, "num_classes": info.num_classes, "kind": "module",
            **(model_info or {}), "weights_sha256": sha}
    if teacher is not None and teacher_info is None:
        teacher_info = {"architecture": type(teacher).__name__, "dataset": dataset, "num_classes": info.num_classes,
                        "weights_sha256": module_sha256(teacher)}
    return _evaluate_and_record(
        model, name=model_folder_name(name or architecture, sha), dataset=dataset, model_info=meta,
        suites=suite_files, out=out, recording=recording, n_examples=n_examples, data_dir=data_dir,
        allow_embedded=allow_embedded, device=resolved, overwrite=overwrite,
        skip_finished=skip_finished, teacher=teacher, teacher_info=teacher_info, threads=threads_in_use,
        announce=announce, selection=selection, shard=shard, workers=workers)


def _check_module_info(name: Any, model_info: Any) -> None:
    """``name`` a string; ``model_info`` a dict whose fields the result summary and protocol read have their types."""
    if name is not None and not isinstance(name, str):
        raise RobustKDError(f"evaluate: name={short_repr(name)}; expected a string")
    if model_info is None:
        return
    if not isinstance(model_info, dict):
        raise RobustKDError(f"evaluate: model_info={short_repr(model_info)}; expected a dict (architecture, method, ...)")
    for keys, kind, expected in ((("architecture", "method", "kind"), str, "a string"),
                                 (("method_options", "cohort", "teacher", "hyperparameters", "preprocessing",
                                   "normalization", "source"), dict, "a dict")):
        for key in keys:
            if model_info.get(key) is not None and not isinstance(model_info[key], kind):
                raise RobustKDError(f"evaluate: model_info {key}={short_repr(model_info[key])}; expected {expected}")


def _check_options(n_examples: int | None, overwrite: bool, skip_finished: bool, recording: Recording,
                   workers: int | None = None) -> None:
    from robustkd.results.store import check_database

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 256):
        raise RobustKDError(f"--workers {workers}: expected an integer in 0..256 (0: decode in this process)")
    if n_examples is not None and (isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1):
        raise RobustKDError(f"--n-examples must be a positive integer, got {n_examples}")
    if overwrite and skip_finished:
        raise RobustKDError("--overwrite and --skip-finished contradict each other; pass one")
    if recording.db is not None:
        check_database(recording.db)


def _evaluate_and_record(
    model: nn.Module, *, name: str, dataset: str, model_info: dict[str, Any], suites: list[SuiteFile], out: Path,
    recording: Recording, n_examples: int | None, data_dir: str | Path | None, allow_embedded: bool,
    device: torch.device, overwrite: bool, skip_finished: bool, teacher: nn.Module | None,
    teacher_info: dict[str, Any] | None, threads: int, announce: Announce, selection: Selection = Selection.ALL,
    shard: Shard = SINGLE, workers: int | None = None,
) -> list[EvaluatedSuite]:
    from robustkd.data import resolve_data_dir
    from robustkd.evaluate.runner import evaluate_model
    from robustkd.results.store import is_recorded, record_result

    db = recording.db

    def keep_existing(target: Path) -> bool:
        # A finished result is kept with --skip-finished, and also when it was never recorded (the database
        # write failed after the suite finished): then this run records it instead of refusing.
        return skip_finished or (db is not None and not is_recorded(db, target))

    runs = evaluate_model(model, name=name, dataset=dataset, suites=suites, out_root=Path(out),
                          data_dir=resolve_data_dir(data_dir), device=device, n_examples=n_examples,
                          model_info=model_info, allow_embedded=allow_embedded, overwrite=overwrite,
                          seed=int(model_info.get("seed", 0) or 0), teacher=teacher, teacher_info=teacher_info,
                          keep_existing=keep_existing, threads=threads, selection=selection, shard=shard,
                          workers=workers)
    if shard.mode is ShardMode.JOB:
        announce(f"{Path(out) / name}: {shard.label} has finished its work items; when every shard has, run "
                 "robustkd results merge with the same arguments (without --shard)")
    done = []
    for run in runs:  # only the summarising process has runs: it alone records
        rows = None
        if db is not None and (run.written or not is_recorded(db, run.target)):
            outcome = record_result(db, run.target)
            rows = outcome.rows
            verb = f"replaced its {outcome.replaced} earlier rows with" if outcome.replaced else "added"
            announce(f"{db}: {verb} {outcome.rows} rows for {run.target}")
        summary = json.loads((run.target / "summary.json").read_text())
        evaluated = EvaluatedSuite(name, run.suite, run.target, run.written, summary["metrics"], bool(summary["subset"]),
                                   rows)
        announce(describe(evaluated))
        done.append(evaluated)
    return done


def describe(result: EvaluatedSuite) -> str:
    """One line: ``<folder>: finished already`` or ``<folder>: <metric> <value>, ... [(subset)]``."""
    if not result.written:
        return f"{result.folder}: finished already"
    shown = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if isinstance(v, float))
    return f"{result.folder}: {shown}{' (subset)' if result.subset else ''}"
