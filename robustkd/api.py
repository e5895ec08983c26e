"""The Python API: what the command line does, for scripts and notebooks (the CLI calls the same jobs).

    from robustkd import api
    api.evaluate(model, suites=["clean", "calibration"], dataset="cifar100", out="results")   # any nn.Module
    api.evaluate("runs/student", suites=["corruption"], n_examples=1000)                      # a checkpoint
    api.train(model="resnet20", recipe="quick", run_dir="runs/teacher")
    api.distill(teacher="runs/teacher", students="resnet8", methods="ce,kd,dist,cmkd", seeds=[0, 1, 2],
                run_dir="runs/cohort")
    api.study("quick", plan=True)
    api.import_model("timm:resnet10t", out="checkpoints/resnet10t", weights="resnet10t.safetensors")

Every function records what the command records (result folders and database rows for ``evaluate``; run
folders for ``train`` and ``distill``; a verified checkpoint folder for ``import_model``) and raises
``robustkd.errors.RobustKDError`` for a bad input before any work starts. Models take inputs in [0, 1] (NCHW
float) and return logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from robustkd.errors import RobustKDError
from robustkd.evaluate.sharding import Shard
from robustkd.evaluate.suite_file import SuiteFile
from robustkd.jobs.distill import DistillOutcome
from robustkd.jobs.evaluate import EvaluatedSuite
from robustkd.jobs.import_model import ImportOutcome
from robustkd.jobs.run_plan import Mode
from robustkd.jobs.train import TrainOutcome
from robustkd.utils.short_repr import short_repr

__all__ = ["distill", "evaluate", "import_model", "study", "train"]


def evaluate(
    model_or_checkpoint: nn.Module | str | Path | Sequence[str | Path], suites: Sequence[str | SuiteFile] = ("clean",), *,
    dataset: str | None = None, out: str | Path = "results", db: str | Path | None = None, record: bool = True,
    name: str | None = None, model_info: dict[str, Any] | None = None, teacher: nn.Module | str | Path | None = None,
    n_examples: int | None = None, data_dir: str | Path | None = None, allow_embedded: bool = False,
    device: str | None = None, overwrite: bool = False, skip_finished: bool = False, threads: int | None = None,
    announce: Callable[[str], None] = print, selection: str = "all", shard: str | Shard | None = None,
    workers: int | None = None,
) -> list[EvaluatedSuite]:
    """Run ``suites`` on a checkpoint (path, or a list of paths) or on any ``nn.Module`` and record every result
    in ``db`` (default ``<out>/robustkd.db``; ``record=False``: folders only).

    ``selection``: all, robustbench5000 or every100 (robustkd/data/selections.py); ``shard``: ``"K/N"`` for one
    of N scheduler jobs (then ``robustkd results merge``); under torchrun every rank calls this and the ranks
    share the work (robustkd/evaluate/sharding.py); ``workers``: DataLoader processes decoding ImageNet images.

    A module needs ``dataset`` (its test split is what it is evaluated on) and may carry ``name`` and
    ``model_info`` (architecture, method, seed, ...); its identity in the database is the SHA-256 of its state
    dict. A checkpoint brings its own dataset (``dataset``, if given, must agree). ``teacher``: a checkpoint
    path for checkpoints, a module for a module (the relations suite compares against it).
    """
    from robustkd.jobs.evaluate import Recording, evaluate_checkpoints, evaluate_module

    recording = Recording.under(Path(out), None if db is None else Path(db), enabled=record)
    scale = {"selection": selection, "shard": Shard.parse(shard) if isinstance(shard, str) else shard,
             "workers": workers}
    if isinstance(model_or_checkpoint, nn.Module):
        if dataset is None:
            raise RobustKDError("evaluate: a module needs dataset= (cifar100, cifar10, imagenet or synthetic)")
        if teacher is not None and not isinstance(teacher, nn.Module):
            raise RobustKDError("evaluate: a module's teacher= must be a module too")
        return evaluate_module(model_or_checkpoint, suites, dataset=dataset, name=name, model_info=model_info,
                               out=Path(out), recording=recording, teacher=teacher, n_examples=n_examples,
                               data_dir=data_dir, allow_embedded=allow_embedded, device=device, overwrite=overwrite,
                               skip_finished=skip_finished, threads=threads, announce=announce, **scale)
    if isinstance(model_or_checkpoint, (str, Path)):
        paths = [Path(model_or_checkpoint)]
    elif isinstance(model_or_checkpoint, (list, tuple)) and model_or_checkpoint and all(
            isinstance(item, (str, Path)) for item in model_or_checkpoint):
        paths = [Path(item) for item in model_or_checkpoint]
    else:
        raise RobustKDError(f"evaluate: expected a torch.nn.Module, a checkpoint path or a list of them, got "
                            f"{type(model_or_checkpoint).__name__} {short_repr(model_or_checkpoint)}")
    if isinstance(teacher, nn.Module):
        raise RobustKDError("evaluate: checkpoints take a teacher checkpoint path, not a module")
    if dataset is not None:
        from robustkd.checkpoint import read_sidecar

        for path in paths:
            recorded = read_sidecar(path)[0]["dataset"]
            if recorded != dataset:
                raise RobustKDError(f"evaluate: {path} is a {recorded} model; dataset={dataset!r} was asked for")
    return evaluate_checkpoints(paths, suites, out=Path(out), recording=recording,
                                teacher=None if teacher is None else Path(teacher), n_examples=n_examples,
                                data_dir=data_dir, allow_embedded=allow_embedded, device=device, overwrite=overwrite,
                                skip_finished=skip_finished, threads=threads, announce=announce, **scale)


def train(*, run_dir: str | Path | None = None, config: str | Path | None = None, skip_finished: bool = False,
          resume: bool = False, data_dir: str | Path | None = None, allow_embedded: bool = False,
          stop_after: int | None = None, announce: Callable[[str], None] = print, **values: Any) -> TrainOutcome:
    """Train a model from labels: ``values`` are TrainConfig keys (``model``, ``recipe``, ``epochs``, ``lr``,
    ``init_from``, ...). ``skip_finished``: skip a finished run in ``run_dir``, resume an interrupted one."""
    from robustkd.jobs.train import TrainRequest, plan_training, run_training
    from robustkd.train.command import TrainRunConfig

    _check_keys(values, TrainRunConfig, "train")
    request = TrainRequest(values, None if config is None else Path(config),
                           None if run_dir is None else Path(run_dir), _mode(resume, skip_finished))
    return run_training(plan_training(request), data_dir=data_dir, stop_after=stop_after,
                        allow_embedded=allow_embedded, announce=announce)


def distill(*, teacher: str | Path, students: str | None = None, methods: str | None = None,
            seeds: Sequence[int] | None = None,
            options: dict[str, Any] | None = None, run_dir: str | Path | None = None, config: str | Path | None = None,
            skip_finished: bool = False, resume: bool = False, data_dir: str | Path | None = None,
            allow_embedded: bool = False, stop_after: int | None = None, announce: Callable[[str], None] = print,
            **values: Any) -> DistillOutcome:
    """Distil ``students`` (comma-separated architectures) from ``teacher`` with ``methods`` (comma-separated,
    ``cmkd[cmkd_spearman=0.5]`` for per-member options): one student without ``seeds`` is a solo run, anything
    else a cohort paired by seed (defaults: the config file's, else resnet8x4 and kd). ``options``: method options
    for every member; ``values``: TrainConfig keys."""
    from robustkd.distill.command import DistillConfig
    from robustkd.jobs.distill import DistillRequest, plan_distillation, run_distillation

    _check_keys(values, DistillConfig, "distill")
    if options is not None and not isinstance(options, dict):
        raise RobustKDError(f"distill: options={short_repr(options)}; expected a dict of method options")
    request = DistillRequest({**values, "teacher": str(teacher)}, methods=methods, students=students,
                             seeds=None if seeds is None else list(seeds), options=dict(options or {}),
                             config_file=None if config is None else Path(config),
                             run_dir=None if run_dir is None else Path(run_dir), mode=_mode(resume, skip_finished))
    return run_distillation(plan_distillation(request), data_dir=data_dir, stop_after=stop_after,
                            allow_embedded=allow_embedded, announce=announce)


def study(name_or_file: str | Path, *, plan: bool = False, stage: str | None = None, only: str | None = None,
          cohorts: Sequence[str] = (), runs_dir: str | Path | None = None, results_dir: str | Path | None = None,
          data_dir: str | Path | None = None, device: str | None = None, seeds: Sequence[int] | None = None,
          announce: Callable[[str], None] = print) -> list[str]:
    """Run (or, with ``plan``, only plan) a packaged study or a study file; returns the plan's lines."""
    from robustkd.data import resolve_data_dir
    from robustkd.jobs.study import StudyRunner, StudySettings, select_stages
    from robustkd.jobs.study_file import load_study

    stages = select_stages(stage, only)
    spec = load_study(name_or_file)
    settings = StudySettings(runs=Path(runs_dir or spec.runs), results=Path(results_dir or spec.results),
                             data_dir=resolve_data_dir(data_dir), device=device,
                             seeds=None if seeds is None else list(seeds),
                             cohorts=(cohorts,) if isinstance(cohorts, str) else tuple(cohorts))  # a bare name: one
    runner = StudyRunner(spec, settings, announce)
    lines = runner.plan_lines(stages)
    if not plan:
        runner.run(stages)
    return lines


def import_model(source: str, out: str | Path, *, architecture: str | None = None, dataset: str | None = None,
                 num_classes: int | None = None, weights: str | Path | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 model_dir: str | Path | None = None, torchvision_weights: str | None = None,
                 model_kwargs: dict[str, Any] | None = None, input_size: int | None = None,
                 crop_pct: float | None = None, interpolation: str | None = None,
                 announce: Callable[[str], None] = print) -> ImportOutcome:
    """``robustkd import``: write a verified checkpoint of ``source`` (``timm:NAME``, ``torchvision:NAME``,
    ``robustbench:DATASET/THREAT/NAME``, a ``.onnx`` file, or a state dict file of a zoo ``architecture``) into the
    new folder ``out``; the sidecar records the source (kind, name, file SHA-256, library and version) and the
    input preprocessing. Nothing is downloaded, no code in a file runs, nothing is written on an error."""
    from robustkd.imports import ImportOptions
    from robustkd.jobs.import_model import ImportRequest
    from robustkd.jobs.import_model import import_model as run_import

    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise RobustKDError(f"import: model_kwargs={short_repr(model_kwargs)}; expected a dict of constructor "
                            "arguments")
    options = ImportOptions(architecture=architecture, dataset=dataset, num_classes=num_classes,
                            weights=None if weights is None else Path(weights), mean=mean, std=std,
                            model_dir=None if model_dir is None else Path(model_dir),
                            torchvision_weights=torchvision_weights, model_kwargs=dict(model_kwargs or {}),
                            input_size=input_size, crop_pct=crop_pct, interpolation=interpolation)
    return run_import(ImportRequest(str(source), Path(out), options), announce=announce)


def _check_keys(values: dict[str, Any], config_cls: type, what: str) -> None:
    import dataclasses

    known = {field.name for field in dataclasses.fields(config_cls)} - {"teacher", "method", "model", "teacher_sha256",
                                                                         "init_sha256", "method_options"}
    if what == "train":
        known |= {"model"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RobustKDError(f"{what}: unknown setting(s) {', '.join(unknown)}; expected some of: {', '.join(sorted(known))}")


def _mode(resume: bool, skip_finished: bool) -> Mode:
    if resume and skip_finished:
        raise RobustKDError("resume and skip_finished: give one (skip_finished resumes an interrupted run itself)")
    return Mode.RESUME if resume else Mode.SKIP_FINISHED if skip_finished else Mode.NEW
