"""The import job: any model in, a verified robustkd checkpoint out (``robustkd import``, ``robustkd.api.import_model``).

``import_model(request)``:

1. checks ``out`` (absent, or an empty folder) and parses SOURCE into a kind (``robustkd.imports``);
2. the kind's importer reads and checks the source (never unpickling code, never downloading): the network
   with its weights, the dataset and class count, the source record;
3. resolves the input normalisation (``--mean``/``--std``, else the source's own, else the dataset's
   statistics) and, for ImageNet, the evaluation preprocessing (the source's own, else robustkd's default,
   then ``--input-size``/``--crop-pct``/``--interpolation``), and runs a seeded probe batch: the outputs must
   be one finite logit per class (and, for ONNX, agree with onnx's reference evaluator);
4. only then writes: ``model.safetensors`` + ``model.json`` (and any file the kind keeps, the ``.onnx``
   graph) into a temporary sibling folder ``.<out>.<random>.tmp``, reloads it with ``load_checkpoint`` and
   requires the reloaded model's logits on the probe to equal the imported module's exactly, and renames the
   folder to ``out``. Any failure leaves nothing under ``out``.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robustkd.data import dataset_info
from robustkd.data.imagenet import DEFAULT_EVAL_PREPROCESSING, EvalPreprocessing
from robustkd.errors import RobustKDError
from robustkd.imports.base import ImportedModel, ImportOptions, first_line, importer, parse_source
from robustkd.models import Normalized
from robustkd.utils.atomic import write_bytes_atomic

PROBE_BATCH = 2
PROBE_SEED = 0
# onnx2torch's module against onnx's reference evaluator (float32 NumPy vs torch kernels): relative to the
# logits' scale.
REFERENCE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ImportRequest:
    """``source``: SOURCE as the command takes it; ``out``: the checkpoint folder to create."""

    source: str
    out: Path
    options: ImportOptions = ImportOptions()


@dataclass(frozen=True)
class ImportOutcome:
    """The checkpoint written: its folder and sidecar, and what the sidecar records."""

    folder: Path
    sidecar: Path
    architecture: str
    dataset: str
    num_classes: int
    source: dict[str, Any]
    preprocessing: dict[str, Any]
    reference_max_abs_diff: float | None

    def line(self) -> str:
        source = self.source
        version = f"{source.get('library')} {source.get('library_version')}"
        shown = {k: v for k, v in self.preprocessing.items() if k in ("input_size", "resize", "crop_pct", "interpolation")}
        prep = (", preprocessing " + " ".join(f"{k}={v}" for k, v in shown.items())) if shown else ""
        return (f"imported {source['kind']} {source['name']} ({version}, sha256 {str(source.get('sha256'))[:12]}…) as "
                f"{self.architecture} for {self.dataset} ({self.num_classes} classes){prep}: {self.sidecar}; "
                "reloaded logits equal the imported module's")


def _check_out(out: Path) -> None:
    from robustkd.utils.output_path import check_output_folder

    if out.is_symlink():
        raise RobustKDError(f"import: --out {out} is a symbolic link; expected a new folder for the checkpoint")
    check_output_folder(out, what="checkpoint")
    if out.exists() and not out.is_dir():
        raise RobustKDError(f"import: --out {out} is a file; expected a new folder for the checkpoint")
    if out.is_dir() and any(out.iterdir()):
        raise RobustKDError(f"import: --out {out} is not empty; choose a new folder (nothing is overwritten)")


def _check_vector(name: str, values: Any) -> list[float] | None:
    if values is None:
        return None
    values = list(values)
    if len(values) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                   for v in values):
        raise RobustKDError(f"import: --{name} takes 3 finite numbers (one per RGB channel), got {values}")
    if name == "std" and min(values) <= 0:
        raise RobustKDError(f"import: --std must be positive, got {values}")
    return [float(v) for v in values]


def _given_normalization(options: ImportOptions) -> tuple[list[float] | None, list[float] | None]:
    mean, std = _check_vector("mean", options.mean), _check_vector("std", options.std)
    if (mean is None) != (std is None):
        raise RobustKDError("import: --mean and --std go together (give both, or neither for the source's or "
                            "dataset's statistics)")
    return mean, std


def resolve_normalization(imported: ImportedModel, options: ImportOptions) -> tuple[list[float], list[float], str]:
    """``--mean``/``--std``, else the source's own statistics, else the dataset's."""
    mean, std = _given_normalization(options)
    if mean is not None:
        return mean, std, "given (--mean, --std)"
    if imported.own_normalization is not None:
        own_mean, own_std, origin = imported.own_normalization
        return [float(v) for v in own_mean], [float(v) for v in own_std], origin
    info = dataset_info(imported.dataset)
    return list(info.mean), list(info.std), f"the {imported.dataset} statistics"


def resolve_preprocessing(imported: ImportedModel, options: ImportOptions) -> tuple[EvalPreprocessing | None, str]:
    """ImageNet only: the source's own preprocessing, else robustkd's default (at the graph's input size where
    it fixes one), then the overrides."""
    overrides = {"--input-size": options.input_size, "--crop-pct": options.crop_pct,
                 "--interpolation": options.interpolation}
    if imported.dataset != "imagenet":
        given = [flag for flag, value in overrides.items() if value is not None]
        if given:
            raise RobustKDError(f"import: {', '.join(given)} apply to ImageNet models only ({imported.dataset} images "
                                "are used as they are)")
        return None, ""
    if imported.own_preprocessing is not None:
        base, origin = imported.own_preprocessing
    elif imported.input_size is not None:
        base = EvalPreprocessing.from_crop_pct(imported.input_size, 0.875)
        origin = f"robustkd default at the graph's input size {imported.input_size} (crop 0.875, bilinear)"
    else:
        base, origin = DEFAULT_EVAL_PREPROCESSING, "robustkd default (resize 256, centre crop 224, bilinear)"
    if all(value is None for value in overrides.values()):
        return base, origin
    size = options.input_size if options.input_size is not None else base.input_size
    if options.crop_pct is not None:
        crop_pct = options.crop_pct
    elif base.resize is not None:
        crop_pct = base.crop_pct if base.crop_pct is not None else base.input_size / base.resize
    else:
        crop_pct = 1.0
    interpolation = options.interpolation or base.interpolation
    mode = "center" if base.crop_mode == "crop" else base.crop_mode
    changed = ", ".join(f"{flag} {value}" for flag, value in overrides.items() if value is not None)
    return EvalPreprocessing.from_crop_pct(size, crop_pct, interpolation, mode), f"{origin}, then {changed}"


def _probe(imported: ImportedModel, preprocessing: EvalPreprocessing | None) -> torch.Tensor:
    if preprocessing is not None:
        size = preprocessing.input_size
    elif imported.input_size is not None:
        size = imported.input_size
    else:
        size = dataset_info(imported.dataset).image_size
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.rand(PROBE_BATCH, 3, size, size, generator=generator, device="cpu")  # the same probe on any device


@torch.no_grad()
def _run_probe(model: Normalized, imported: ImportedModel, probe: torch.Tensor, where: str) -> torch.Tensor:
    try:
        logits = model(probe)
    except Exception as exc:  # the foreign network's own failure on a batch (a graph with a fixed batch size, ...)
        hint = (f"; the graph declares a fixed batch size of {imported.fixed_batch}: export it with a dynamic batch "
                "axis" if imported.fixed_batch is not None and imported.fixed_batch != PROBE_BATCH else "")
        raise RobustKDError(f"import {where}: the model fails on a probe batch of shape {tuple(probe.shape)} "
                            f"({type(exc).__name__}: {first_line(exc)}){hint}") from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (PROBE_BATCH, imported.num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise RobustKDError(f"import {where}: the model outputs {shape} for a batch of {PROBE_BATCH}; "
                            f"{imported.dataset} has {imported.num_classes} classes")
    if not torch.isfinite(logits).all():
        raise RobustKDError(f"import {where}: the model's logits on the probe batch are not finite")
    return logits


def _check_reference(model: Normalized, imported: ImportedModel, probe: torch.Tensor, where: str) -> float | None:
    """The largest difference between the network and its reference implementation on the probe (ONNX)."""
    if imported.reference is None:
        return None
    with torch.no_grad():
        normalised = (probe - model.mean) / model.std
        ours = model.net(normalised)
    theirs = imported.reference(normalised)
    if theirs is None:
        return None
    if tuple(theirs.shape) != tuple(ours.shape):
        raise RobustKDError(f"import {where}: onnx's reference evaluator outputs {tuple(theirs.shape)}, the converted "
                            f"module {tuple(ours.shape)}")
    difference = float((theirs - ours).abs().max())
    scale = 1.0 + float(theirs.abs().max())
    if not math.isfinite(difference) or difference > REFERENCE_TOLERANCE * scale:
        raise RobustKDError(f"import {where}: onnx2torch's module differs from onnx's reference evaluator by "
                            f"{difference:.3g} on the probe batch (more than {REFERENCE_TOLERANCE:g} x {scale:.3g}); "
                            "the conversion is not faithful")
    return difference


def import_model(request: ImportRequest, announce: Callable[[str], None] = print) -> ImportOutcome:
    """Import ``request.source`` into a new checkpoint folder ``request.out`` (see the module docstring)."""
    from robustkd.checkpoint import load_checkpoint, save_checkpoint

    out = Path(request.out)
    _check_out(out)
    spec = parse_source(request.source)
    options = request.options
    _given_normalization(options)  # the cheap checks of the options first
    imported = importer(spec.kind)(spec, options)
    mean, std, normalization_origin = resolve_normalization(imported, options)
    preprocessing, preprocessing_origin = resolve_preprocessing(imported, options)
    model = Normalized(imported.network, mean, std).eval()
    probe = _probe(imported, preprocessing)
    logits = _run_probe(model, imported, probe, request.source)
    reference_difference = _check_reference(model, imported, probe, request.source)

    record: dict[str, Any] = {"mean": mean, "std": std, "normalization_origin": normalization_origin}
    if preprocessing is not None:
        record.update(preprocessing.describe())
        record["origin"] = preprocessing_origin
    meta: dict[str, Any] = {
        "architecture": imported.architecture, "num_classes": imported.num_classes, "dataset": imported.dataset,
        "kind": "import", "source": imported.source, "preprocessing": record,
        "verification": {"probe": f"torch.rand({PROBE_BATCH}, 3, {probe.shape[-1]}, {probe.shape[-1]}) seed {PROBE_SEED}",
                         "reloaded_equal": True, "reference_max_abs_diff": reference_difference},
    }
    if imported.architecture_options:
        meta["architecture_options"] = imported.architecture_options

    json.dumps(meta, allow_nan=False)  # what the sidecar will hold is JSON (a failure here is a bug, before any write)
    staging = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    try:
        for name, data in imported.files.items():
            write_bytes_atomic(staging / name, data)
        sidecar = save_checkpoint(staging / "model", model, meta)
        reloaded = load_checkpoint(staging)
        with torch.no_grad():
            again = reloaded.model(probe)
        if not torch.equal(again, logits):
            raise RuntimeError(f"import: the reloaded checkpoint's logits differ from the imported module's by "
                               f"{float((again - logits).abs().max()):.3g}: a robustkd bug")
        _check_out(out)  # nothing appeared there meanwhile
        if out.is_dir():
            out.rmdir()
        os.rename(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    sidecar = out / sidecar.name
    outcome = ImportOutcome(out, sidecar, imported.architecture, imported.dataset, imported.num_classes,
                            imported.source, record, reference_difference)
    announce(outcome.line())
    return outcome
