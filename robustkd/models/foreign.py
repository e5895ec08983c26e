"""Networks of other libraries, rebuilt from a checkpoint's sidecar (``robustkd import`` writes such checkpoints).

An imported checkpoint names its network the way ``robustkd import`` was given it, and the sidecar's
``architecture_options`` hold what the constructor needs besides the class count:

| ``architecture`` | built by | ``architecture_options`` |
|---|---|---|
| ``timm:<name>`` | ``timm.create_model(name, pretrained=False, num_classes=N, **kwargs)`` | ``{"kwargs": {...}, "pretrained_tag"}`` |
| ``torchvision:<name>`` | ``torchvision.models.get_model(name, weights=None, num_classes=N, **kwargs)`` | ``{"kwargs": {...}}`` |
| ``robustbench:<dataset>/<threat>/<name>`` | the RobustBench model zoo's own definition | none |
| ``onnx:<stem>`` | onnx2torch from the ``.onnx`` file beside the sidecar (SHA-256 checked) | ``{"onnx_file", "onnx_sha256"}`` |
| a zoo name (``resnet20``) | robustkd's zoo | none |

Every builder returns the bare network with untrained weights (no download: ``pretrained=False``, no weights
enum); the checkpoint's safetensors then fill it, strictly. Unknown names are one RobustKDError line.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from robustkd.errors import RobustKDError, first_line

TIMM_PREFIX = "timm:"
ROBUSTBENCH_PREFIX = "robustbench:"
ONNX_PREFIX = "onnx:"
TORCHVISION_PREFIX = "torchvision:"
FOREIGN_PREFIXES = (TIMM_PREFIX, ROBUSTBENCH_PREFIX, ONNX_PREFIX)
ROBUSTBENCH_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}


def quiet_import(module: str) -> ModuleType:
    """Import a library without its import-time deprecation warnings (timm's, robustbench's on torch 2.14),
    which would break the command line's one-line errors; the library's own warnings later are kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if module == "robustbench":
            from robustkd.compat.robustbench_import import import_robustbench

            return import_robustbench()
        return importlib.import_module(module)


def is_foreign(architecture: str) -> bool:
    """Whether ``architecture`` is built here rather than by the zoo (``robustkd.models.zoo``)."""
    return architecture.startswith(FOREIGN_PREFIXES)


def _close(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


# Constructor arguments that load or fetch weights or files (timm's ``checkpoint_path`` unpickles with
# weights_only=False; ``pretrained*`` downloads; torchvision's ``weights_backbone`` fetches): never passed on,
# whether they come from ``--model-arg`` or from a sidecar. Matched on substrings, case-insensitively.
LOADING_ARGUMENT_PARTS = ("checkpoint", "pretrained", "weight", "cache", "url", "path", "file", "hub", "download")


def refuse_loading_arguments(kwargs: dict[str, Any] | None, library: str) -> None:
    """RobustKDError (one line) for a constructor argument that would load, fetch or unpickle anything."""
    bad = sorted(key for key in (kwargs or {}) if any(part in str(key).lower() for part in LOADING_ARGUMENT_PARTS))
    if bad:
        raise RobustKDError(f"{library} constructor argument(s) {', '.join(bad)} refused: robustkd never lets a "
                            "constructor load, download or unpickle weights (weights come from the checkpoint's "
                            "safetensors or from --weights)")


def timm_network(name: str, num_classes: int, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)``; ``name`` may carry a
    pretrained tag (``resnet10t.c3_in1k``), which selects timm's config for it, never a download."""
    timm = quiet_import("timm")

    refuse_loading_arguments(kwargs, "timm")
    architecture = name.split(".", 1)[0]
    if not timm.is_model(architecture):
        raise RobustKDError(f"unknown timm model {name!r}{_close(architecture, timm.list_models())} "
                            f"(timm {timm.__version__}; `timm.list_models()` lists them)")
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **(kwargs or {}))
    except Exception as exc:  # a library's constructor raises anything (AttributeError for a bad pretrained_cfg)
        raise RobustKDError(f"timm cannot build {name} with {num_classes} classes and {kwargs or {}} "
                            f"({type(exc).__name__}: {first_line(exc)})") from None


def torchvision_network(name: str, num_classes: int, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)``."""
    torchvision = quiet_import("torchvision")

    refuse_loading_arguments(kwargs, "torchvision")
    names = sorted(torchvision.models.list_models(module=torchvision.models))
    if name not in names:
        raise RobustKDError(f"unknown torchvision model {name!r}{_close(name, names)} (`robustkd models` lists them)")
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **(kwargs or {}))
    except Exception as exc:  # a library's constructor raises anything
        raise RobustKDError(f"torchvision cannot build {name} with {num_classes} classes and {kwargs or {}} "
                            f"({first_line(exc)})") from None


def parse_robustbench_name(spec: str) -> tuple[str, str, str]:
    """``DATASET/THREAT/NAME`` -> its three parts (checked against RobustBench's vocabulary)."""
    parts = spec.split("/")
    if len(parts) != 3 or not all(parts):
        raise RobustKDError(f"robustbench:{spec}: expected robustbench:DATASET/THREAT/NAME, e.g. "
                            "robustbench:cifar10/Linf/Carmon2019Unlabeled")
    return parts[0], parts[1], parts[2]


def robustbench_entry(spec: str) -> dict[str, Any]:
    """The RobustBench model-zoo entry of ``DATASET/THREAT/NAME`` (its ``model`` constructor, ``gdrive_id``, ...)."""
    dataset, threat, name = parse_robustbench_name(spec)
    quiet_import("robustbench")
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    datasets = [d.value for d in model_dicts]
    if dataset not in datasets:
        raise RobustKDError(f"robustbench:{spec}: unknown dataset {dataset!r}; RobustBench has {', '.join(datasets)}")
    by_threat = model_dicts[BenchmarkDataset(dataset)]
    threats = [t.value for t in by_threat]
    if threat not in threats:
        raise RobustKDError(f"robustbench:{spec}: unknown threat model {threat!r} for {dataset}; RobustBench has "
                            f"{', '.join(threats)}")
    entries = by_threat[ThreatModel(threat)]
    if name not in entries:
        raise RobustKDError(f"robustbench:{spec}: unknown model {name!r} in RobustBench's {dataset}/{threat} zoo"
                            f"{_close(name, list(entries))} ({len(entries)} models there)")
    return entries[name]


def robustbench_network(spec: str, num_classes: int | None = None) -> nn.Module:
    """The network RobustBench's own definition of ``DATASET/THREAT/NAME`` builds (inputs in [0, 1]; the
    definition carries any normalisation), untrained. Entries RobustBench itself serves through timm's hub
    or torchvision's pretrained download, and ensembles of several files, are refused with what to do."""
    timm = quiet_import("timm")

    dataset, threat, name = parse_robustbench_name(spec)
    entry = robustbench_entry(spec)
    expected = ROBUSTBENCH_CLASSES[dataset]
    if num_classes is not None and num_classes != expected:
        raise RobustKDError(f"robustbench:{spec} is a {dataset} model with {expected} classes, not {num_classes}")
    timm_name = f"{name.lower().replace('-', '_')}_{dataset}_{threat.lower()}"
    if timm.is_model(timm_name):
        raise RobustKDError(f"robustbench:{spec} is served by RobustBench through timm's hub; import it as "
                            f"timm:{timm_name} --weights FILE")
    if isinstance(entry.get("gdrive_id"), list):
        raise RobustKDError(f"robustbench:{spec} is an ensemble of {len(entry['gdrive_id'])} files; robustkd import "
                            "takes single-file RobustBench models")
    if dataset == "imagenet" and "Standard" in name:
        raise RobustKDError(f"robustbench:{spec} is torchvision's pretrained model (RobustBench downloads it); "
                            "import it as torchvision:<name> --weights FILE")
    try:
        return entry["model"]()
    except Exception as exc:  # a definition that needs the network or a missing optional package
        raise RobustKDError(f"robustbench:{spec}: RobustBench's definition failed to build "
                            f"({type(exc).__name__}: {first_line(exc)})") from None


def onnx_network(folder: Path, options: dict[str, Any]) -> nn.Module:
    """The onnx2torch module of the ``.onnx`` file a checkpoint keeps beside its sidecar (SHA-256 checked)."""
    from robustkd.models.onnx_graph import onnx_to_torch

    name, sha = options.get("onnx_file"), options.get("onnx_sha256")
    if not isinstance(name, str) or Path(name).name != name or not isinstance(sha, str):
        raise RobustKDError(f"checkpoint in {folder}: architecture_options = {options!r}; expected onnx_file (a file "
                            "name beside the sidecar) and onnx_sha256")
    path = Path(folder) / name
    if not path.is_file():
        raise RobustKDError(f"checkpoint: the ONNX graph {path} named by its sidecar is missing")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        raise RobustKDError(f"checkpoint: {path} sha256 {digest[:12]}… does not match its sidecar ({sha[:12]}…)")
    return onnx_to_torch(data, str(path))


def build_checkpoint_network(architecture: str, num_classes: int, options: dict[str, Any] | None = None,
                             folder: Path | None = None) -> nn.Module:
    """The bare network a sidecar describes (see the module docstring); zoo names go to the zoo."""
    from robustkd.models.zoo import build_network

    options = options or {}
    if not isinstance(options, dict):
        raise RobustKDError(f"architecture_options = {options!r}; expected an object")
    kwargs = options.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise RobustKDError(f"architecture_options.kwargs = {kwargs!r}; expected an object")
    if architecture.startswith(TIMM_PREFIX):
        tag = options.get("pretrained_tag")
        name = architecture[len(TIMM_PREFIX):] + (f".{tag}" if isinstance(tag, str) and tag else "")
        return timm_network(name, num_classes, kwargs)
    if architecture.startswith(ROBUSTBENCH_PREFIX):
        return robustbench_network(architecture[len(ROBUSTBENCH_PREFIX):], num_classes)
    if architecture.startswith(ONNX_PREFIX):
        if folder is None:
            raise RobustKDError(f"{architecture} is rebuilt from the .onnx file of its checkpoint folder only")
        return onnx_network(Path(folder), options)
    if architecture.startswith(TORCHVISION_PREFIX) and kwargs:
        return torchvision_network(architecture[len(TORCHVISION_PREFIX):], num_classes, kwargs)
    return build_network(architecture, num_classes)
