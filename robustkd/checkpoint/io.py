"""Model checkpoints: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (sidecar), see checkpoints/README.md.

The weights are written first, the sidecar last; the sidecar records the weights' sha256, so a reader
that finds a sidecar finds the weights it describes (a torn pair fails the hash check with a clear
message). Nothing here unpickles: safetensors holds tensors only, and foreign ``.pth``/``.pt`` files are
read with ``torch.load(weights_only=True)`` (``state_dicts.py``). A checkpoint written by ``robustkd import``
names a network of another library (``timm:``, ``torchvision:``, ``robustbench:``, ``onnx:``) and its
``architecture_options``; ``robustkd.models.foreign`` rebuilds it before the weights are loaded strictly.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import robustkd
from robustkd.checkpoint.state_dicts import fit_state_dict, read_state_dict
from robustkd.checkpoint.verify import check_state, checked_weights_path, read_sidecar_json
from robustkd.utils.safetensors_io import save_safetensors
from robustkd.errors import RobustKDError
from robustkd.models import Normalized, build_network, canonical_model_name
from robustkd.models.foreign import build_checkpoint_network, is_foreign
from robustkd.utils.atomic import write_json_atomic, write_with_atomic

CHECKPOINT_FORMAT = "robustkd-checkpoint/1"
REQUIRED_FIELDS = ("format", "architecture", "num_classes", "dataset", "normalization", "weights_file", "weights_sha256")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, on the requested device) and its sidecar."""

    model: Normalized
    meta: dict[str, Any]
    sidecar_path: Path

    @property
    def sha256(self) -> str:
        return str(self.meta["weights_sha256"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _contiguous_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}


def save_checkpoint(stem: Path, model: Normalized, meta: dict[str, Any]) -> Path:
    """Write ``stem.safetensors`` and ``stem.json``; ``meta`` must name architecture, num_classes, dataset.

    Returns the sidecar's path. Fields added here: format, normalization, weights file and sha256,
    package versions, creation time.
    """
    stem = Path(stem)
    weights_path = stem.with_name(stem.name + ".safetensors")
    sidecar_path = stem.with_name(stem.name + ".json")
    state = _contiguous_state(model)
    write_with_atomic(weights_path, lambda tmp: save_safetensors(state, tmp, metadata={"format": CHECKPOINT_FORMAT}))
    sidecar = {
        **meta,
        "format": CHECKPOINT_FORMAT,
        "normalization": {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()},
        "weights_file": weights_path.name,
        "weights_sha256": sha256_file(weights_path),
        "robustkd_version": robustkd.__version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(sidecar_path, sidecar)
    return sidecar_path


def _sidecar_path(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "model.json"
    elif path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    return path


def read_sidecar(path: Path) -> tuple[dict[str, Any], Path]:
    """The sidecar of the checkpoint at ``path`` (run directory, ``.json`` or ``.safetensors``), validated."""
    sidecar_path = _sidecar_path(path)
    if not sidecar_path.is_file():
        raise RobustKDError(f"checkpoint: no sidecar {sidecar_path}; expected a robustkd checkpoint (.json + .safetensors)")
    meta = read_sidecar_json(sidecar_path)  # bounded size and depth (robustkd/checkpoint/verify.py)
    if not isinstance(meta, dict):
        raise RobustKDError(f"checkpoint: {sidecar_path} must hold a JSON object (a {CHECKPOINT_FORMAT} sidecar)")
    missing = [field for field in REQUIRED_FIELDS if field not in meta]
    if missing or meta.get("format") != CHECKPOINT_FORMAT:
        raise RobustKDError(f"checkpoint: {sidecar_path} is not a {CHECKPOINT_FORMAT} sidecar (missing: {', '.join(missing) or 'format'})")
    problem = _sidecar_problem(meta)
    if problem:
        raise RobustKDError(f"checkpoint: {sidecar_path}: {problem}")
    return meta, sidecar_path


MAX_CLASSES = 100_000


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value: Any, count: int) -> bool:
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def _sidecar_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the sidecar's fields (types, ranges, a weights file outside its folder), if anything."""
    if not isinstance(meta["architecture"], str) or not meta["architecture"]:
        return f"architecture = {meta['architecture']!r}; expected a model name"
    if not _is_int(meta["num_classes"]) or not 1 <= meta["num_classes"] <= MAX_CLASSES:
        return f"num_classes = {meta['num_classes']!r}; expected an integer in 1..{MAX_CLASSES}"
    name = meta["weights_file"]
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", "..") or "\\" in name:
        return f"weights_file = {name!r}; expected a plain file name in the sidecar's folder"
    sha = meta["weights_sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        return f"weights_sha256 = {sha!r}; expected 64 lowercase hex digits"
    norm = meta["normalization"]
    if not isinstance(norm, dict) or not _numbers(norm.get("mean"), 3) or not _numbers(norm.get("std"), 3) \
            or min(norm["std"]) <= 0:
        return f"normalization = {norm!r}; expected {{\"mean\": [3 numbers], \"std\": [3 positive numbers]}}"
    for key in ("seed", "epoch"):
        if key in meta and meta[key] is not None and (not _is_int(meta[key]) or meta[key] < 0):
            return f"{key} = {meta[key]!r}; expected a non-negative integer"
    if "dataset" in meta and not isinstance(meta["dataset"], str):
        return f"dataset = {meta['dataset']!r}; expected a dataset name"
    return _imported_fields_problem(meta)


def _imported_fields_problem(meta: dict[str, Any]) -> str | None:
    """The fields ``robustkd import`` adds: ``architecture_options`` (constructor arguments, the ONNX graph's
    file), ``preprocessing`` (how inputs are prepared) and ``source`` (where the weights came from)."""
    from robustkd.data.imagenet import EvalPreprocessing

    options = meta.get("architecture_options")
    if options is not None:
        if not isinstance(options, dict) or not isinstance(options.get("kwargs", {}), dict):
            return f"architecture_options = {options!r}; expected an object (with kwargs an object)"
        onnx_file = options.get("onnx_file")
        if onnx_file is not None and (not isinstance(onnx_file, str) or Path(onnx_file).name != onnx_file
                                      or onnx_file in (".", "..") or "\\" in onnx_file):
            return f"architecture_options.onnx_file = {onnx_file!r}; expected a plain file name in the sidecar's folder"
    preprocessing = meta.get("preprocessing")
    if preprocessing is not None:
        if not isinstance(preprocessing, dict):
            return f"preprocessing = {preprocessing!r}; expected an object"
        try:
            EvalPreprocessing.from_record(preprocessing)
        except RobustKDError as exc:
            return str(exc)
    if meta.get("source") is not None and not isinstance(meta["source"], dict):
        return f"source = {meta['source']!r}; expected an object"
    return None


def load_checkpoint(
    path: Path,
    device: torch.device | str = "cpu",
    *,
    expect_architecture: str | None = None,
    expect_num_classes: int | None = None,
) -> Checkpoint:
    """Load a robustkd checkpoint; verify the weights' sha256 and, if given, the architecture and classes."""
    meta, sidecar_path = read_sidecar(path)
    if expect_architecture is not None and _canonical(expect_architecture) != meta["architecture"]:
        raise RobustKDError(f"checkpoint: {sidecar_path} holds a {meta['architecture']}, expected {expect_architecture}")
    if expect_num_classes is not None and int(meta["num_classes"]) != expect_num_classes:
        raise RobustKDError(f"checkpoint: {sidecar_path} has {meta['num_classes']} classes, expected {expect_num_classes}")
    weights_path = checked_weights_path(meta, sidecar_path)  # symlinks resolved, confined to the folder
    if not weights_path.is_file():
        raise RobustKDError(f"checkpoint: weights file {weights_path} named by {sidecar_path.name} is missing")
    digest = sha256_file(weights_path)
    if digest != meta["weights_sha256"]:
        raise RobustKDError(f"checkpoint: {weights_path} sha256 {digest[:12]}… does not match its sidecar ({meta['weights_sha256'][:12]}…)")
    norm = meta["normalization"]
    network = build_checkpoint_network(meta["architecture"], int(meta["num_classes"]),
                                       meta.get("architecture_options"), sidecar_path.parent)
    model = Normalized(network, norm["mean"], norm["std"])
    try:
        state = load_file(str(weights_path))
        check_state(state, model, meta, weights_path)  # dtypes, shapes, normalization (verify.py)
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as exc:
        raise RobustKDError(f"checkpoint: {weights_path} does not fit a {meta['architecture']} with {meta['num_classes']} classes ({str(exc).splitlines()[0]})") from None
    return Checkpoint(model.to(device).eval(), meta, sidecar_path)


def _canonical(architecture: str) -> str:
    """The zoo's spelling of a zoo name; imported architectures (``timm:``, ``robustbench:``, ``onnx:``) as given."""
    return architecture if is_foreign(architecture) else canonical_model_name(architecture)


def load_foreign_weights(path: Path, architecture: str, num_classes: int, mean, std) -> Normalized:
    """Load a foreign ``.pth``/``.pt``/``.safetensors`` state dict (e.g. a RepDistiller teacher) into a model.

    ``.pth``/``.pt`` use ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is
    refused. Keys may carry a ``module.`` prefix (DataParallel); the bare network's keys or the
    normalised wrapper's (``net.``) are accepted.
    """
    path = Path(path)
    try:
        state = read_state_dict(path)
    except RobustKDError as exc:
        raise RobustKDError(f"checkpoint: {exc}") from None
    model = Normalized(build_network(architecture, num_classes), mean, std)
    target = model if any(key.startswith("net.") for key in state) else model.net
    try:
        fit_state_dict(target, state, what=f"a {architecture} with {num_classes} classes", where=path,
                       num_classes=num_classes)
    except RobustKDError as exc:
        raise RobustKDError(f"checkpoint: {exc}") from None
    return model.eval()
