"""What every importer shares: the source vocabulary, the user's options, the imported model, the registry.

A source is ``timm:NAME``, ``torchvision:NAME``, ``robustbench:DATASET/THREAT/NAME``, an ``.onnx`` file or a
state dict file (``.pth``/``.pt``/``.bin``/``.safetensors``); ``onnx:PATH`` and ``state_dict:PATH`` say so
explicitly. One importer per kind (``robustkd/imports/<kind>.py``) turns it into an ``ImportedModel``: the
bare network with its weights loaded, how to rebuild it (architecture and constructor options), the
dataset and class count, its own input normalisation and ImageNet preprocessing when the source states
them, and the source record. Importers read and check everything and write nothing; the job
(``robustkd/jobs/import_model.py``) writes the checkpoint.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkd.data.imagenet import EvalPreprocessing
from robustkd.errors import RobustKDError, first_line  # noqa: F401  (the importers import it from here)

STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


class SourceKind(str, enum.Enum):
    """The kinds of model ``robustkd import`` takes (the registry's keys)."""

    STATE_DICT = "state_dict"
    TIMM = "timm"
    TORCHVISION = "torchvision"
    ROBUSTBENCH = "robustbench"
    ONNX = "onnx"


@dataclass(frozen=True)
class SourceSpec:
    """A parsed SOURCE: its kind and the rest (a model name, or a file path for state dicts and ONNX)."""

    kind: SourceKind
    name: str

    @property
    def text(self) -> str:
        return f"{self.kind.value}:{self.name}"


def parse_source(text: str) -> SourceSpec:
    """``timm:NAME``, ``torchvision:NAME``, ``robustbench:D/T/NAME``, ``onnx:PATH``, ``state_dict:PATH``, or a
    path whose suffix says what it is."""
    if not isinstance(text, str) or not text.strip():
        raise RobustKDError("import: SOURCE is empty")
    for kind in SourceKind:
        prefix = f"{kind.value}:"
        if text.startswith(prefix):
            name = text[len(prefix):]
            if not name:
                raise RobustKDError(f"import: {text!r} names no model or file after {prefix}")
            return SourceSpec(kind, name)
    suffix = Path(text).suffix.lower()
    if suffix == ".onnx":
        return SourceSpec(SourceKind.ONNX, text)
    if suffix in STATE_DICT_SUFFIXES:
        return SourceSpec(SourceKind.STATE_DICT, text)
    raise RobustKDError(f"import: cannot tell what {text!r} is; expected timm:NAME, torchvision:NAME, "
                        "robustbench:DATASET/THREAT/NAME, a .onnx file or a state dict (.pth, .pt, .bin, .safetensors)")


@dataclass(frozen=True)
class ImportOptions:
    """What the user said besides SOURCE (None: not given). ``model_kwargs``: constructor keyword arguments
    (timm, torchvision); ``input_size``, ``crop_pct``, ``interpolation``: ImageNet preprocessing overrides."""

    architecture: str | None = None
    dataset: str | None = None
    num_classes: int | None = None
    weights: Path | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    model_dir: Path | None = None
    torchvision_weights: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None


@dataclass
class ImportedModel:
    """An importer's result: everything the checkpoint records, nothing written yet.

    ``network`` is the bare network (eval mode, weights loaded) that expects normalised inputs;
    ``own_normalization`` is (mean, std, origin) when the source states its own (timm's pretrained_cfg, a
    torchvision weights enum, RobustBench's [0, 1] convention), else None (the dataset's statistics apply);
    ``own_preprocessing`` likewise for ImageNet. ``files``: files to keep beside the checkpoint (the ONNX
    graph); ``reference``: a second implementation of the network (the ONNX reference evaluator) to compare
    with on the probe batch; ``input_size``: the probe's image size when the network fixes one;
    ``fixed_batch``: the batch size the network declares, if it fixes one (an ONNX graph exported without a
    dynamic batch axis), named when the probe batch fails.
    """

    network: nn.Module
    architecture: str
    dataset: str
    num_classes: int
    source: dict[str, Any]
    architecture_options: dict[str, Any] | None = None
    own_normalization: tuple[Sequence[float], Sequence[float], str] | None = None
    own_preprocessing: tuple[EvalPreprocessing, str] | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    reference: Callable[[torch.Tensor], torch.Tensor | None] | None = None
    input_size: int | None = None
    fixed_batch: int | None = None


Importer = Callable[[SourceSpec, ImportOptions], ImportedModel]
IMPORTERS: dict[SourceKind, Importer] = {}
_MODULES = {SourceKind.STATE_DICT: "state_dict", SourceKind.TIMM: "timm_source",
            SourceKind.TORCHVISION: "torchvision_source", SourceKind.ROBUSTBENCH: "robustbench_source",
            SourceKind.ONNX: "onnx_source"}


def register_importer(kind: SourceKind) -> Callable[[Importer], Importer]:
    def add(function: Importer) -> Importer:
        if kind in IMPORTERS:
            raise TypeError(f"an importer for {kind.value} is registered already")
        IMPORTERS[kind] = function
        return function

    return add


def importer(kind: SourceKind) -> Importer:
    """The importer of ``kind`` (its module is imported on first use: timm, robustbench and onnx load lazily)."""
    if kind not in IMPORTERS:
        importlib.import_module(f"robustkd.imports.{_MODULES[kind]}")
    return IMPORTERS[kind]


# ----- helpers the importers share -----

def library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def file_record(path: Path) -> dict[str, Any]:
    """``file`` (absolute path) and ``sha256`` of a source file."""
    from robustkd.checkpoint import sha256_file

    return {"file": str(Path(path).resolve()), "sha256": sha256_file(path)}


def resolve_dataset(spec: SourceSpec, options: ImportOptions, default: str | None) -> tuple[str, int]:
    """The dataset (``--dataset``, else ``default``) and its class count, checked against ``--num-classes``."""
    from robustkd.data import dataset_info

    dataset = options.dataset or default
    if dataset is None:
        raise RobustKDError(f"import {spec.name}: --dataset is required for a {spec.kind.value.replace('_', ' ')} "
                            "(cifar100, cifar10, imagenet or synthetic): it decides the class count, the input "
                            "statistics and the evaluation data")
    info = dataset_info(dataset)
    wanted = options.num_classes
    if wanted is not None and (wanted != info.num_classes or isinstance(wanted, bool) or not isinstance(wanted, int)):
        raise RobustKDError(f"import {spec.name}: --num-classes {options.num_classes!r} does not match {dataset}, which "
                            f"has {info.num_classes} classes (robustkd evaluates and distils over a dataset's classes)")
    return dataset, info.num_classes


def json_kwargs(spec: SourceSpec, options: ImportOptions) -> dict[str, Any]:
    """The constructor keyword arguments as the sidecar will hold them (a JSON round trip, so the network built
    now is built the same way at every load: tuples become lists)."""
    import json

    try:
        kwargs = json.loads(json.dumps(dict(options.model_kwargs), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RobustKDError(f"import {spec.text}: constructor arguments must be JSON values ({exc})") from None
    if not all(isinstance(key, str) and key.isidentifier() for key in kwargs):
        raise RobustKDError(f"import {spec.text}: constructor argument names must be identifiers, got {sorted(kwargs)}")
    return kwargs


def refuse_options(spec: SourceKind, options: ImportOptions, *names: str) -> None:
    """Options that mean nothing for this kind are refused rather than silently ignored."""
    flags = {"architecture": "--architecture", "weights": "--weights", "model_dir": "--model-dir",
             "torchvision_weights": "--torchvision-weights", "model_kwargs": "--model-arg"}
    for name in names:
        if getattr(options, name):
            raise RobustKDError(f"import: {flags[name]} does not apply to a {spec.value.replace('_', ' ')} source")
