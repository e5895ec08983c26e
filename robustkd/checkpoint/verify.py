"""What a checkpoint's two files must agree on before its weights are used (called by ``load_checkpoint``).

- **The sidecar is small, plain JSON**: at most ``MAX_SIDECAR_BYTES``; nesting too deep for the JSON parser is
  a one-line refusal, not a RecursionError.
- **Its files stay in its folder**: ``weights_file`` (and an imported model's ``architecture_options.onnx_file``)
  must resolve, symlinks followed, to a file directly in the sidecar's folder (symlinks resolved as well). A
  link that points elsewhere is refused like a path that does: the checkpoint would otherwise describe bytes
  it does not hold.
- **The weights fit the architecture tensor by tensor**: every tensor of the file has the shape of the rebuilt
  architecture's tensor of that name and the same kind of dtype: floating point stays floating point, integer
  stays integer, bool stays bool (a header that relabels float32 bytes as int32 passes the SHA-256 check and
  ``load_state_dict`` would convert the integers to floats: a different model). Missing and unexpected keys are
  left to the strict load, which names them.
- **The normalisation is the one the weights hold**: the sidecar's ``normalization`` mean and std must equal
  the ``mean``/``std`` buffers in the weights once both are rounded to float32 (the buffers' type), so the
  numbers a result records are the ones the model uses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkd.errors import RobustKDError

MAX_SIDECAR_BYTES = 4 * 1024 * 1024


def read_sidecar_json(path: Path) -> Any:
    """The JSON value of the sidecar at ``path``; too large, too deep or not JSON -> RobustKDError."""
    size = path.stat().st_size
    if size > MAX_SIDECAR_BYTES:
        raise RobustKDError(f"checkpoint: {path} is {size} bytes; a sidecar is at most {MAX_SIDECAR_BYTES} bytes "
                            "of JSON (is it the right file?)")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise RobustKDError(f"checkpoint: {path} is not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    except RecursionError:
        raise RobustKDError(f"checkpoint: {path} nests its JSON too deeply to be a sidecar") from None


def confined_file(sidecar_path: Path, field: str, name: str) -> Path:
    """``<sidecar folder>/<name>``, refused when it resolves (symlinks followed) outside that folder."""
    folder = sidecar_path.parent
    candidate = folder / name
    real, home = Path(os.path.realpath(candidate)), Path(os.path.realpath(folder))
    if real.parent != home:
        raise RobustKDError(f"checkpoint: {sidecar_path}: {field} = {name!r} is a link to {real}, outside the "
                            f"sidecar's folder {home}; expected a plain file in the sidecar's folder (copy it there)")
    return candidate


def checked_weights_path(meta: dict[str, Any], sidecar_path: Path) -> Path:
    """The weights' path (confined to the sidecar's folder), after confining an ONNX graph's file too."""
    options = meta.get("architecture_options")
    if isinstance(options, dict) and isinstance(options.get("onnx_file"), str):
        confined_file(sidecar_path, "architecture_options.onnx_file", options["onnx_file"])
    return confined_file(sidecar_path, "weights_file", meta["weights_file"])


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating point" if dtype.is_floating_point else "integer"


def check_state(state: dict[str, torch.Tensor], model: nn.Module, meta: dict[str, Any], weights_path: Path) -> None:
    """Every tensor of ``state`` fits ``model``'s tensor of that name (kind of dtype, shape), and the sidecar's
    normalisation equals the weights' ``mean``/``std``; RobustKDError naming the first misfit otherwise."""
    expected = model.state_dict()
    what = f"a {meta['architecture']} with {meta['num_classes']} classes"
    for key, tensor in state.items():
        ours = expected.get(key)
        if ours is None:
            continue  # the strict load names unexpected keys
        if _kind(tensor.dtype) != _kind(ours.dtype):
            raise RobustKDError(f"checkpoint: {weights_path}: tensor {key} is stored as {str(tensor.dtype)[6:]} "
                                f"({_kind(tensor.dtype)}) but {what} holds {_kind(ours.dtype)} values there "
                                f"({str(ours.dtype)[6:]}); the file's header does not describe these weights")
        if tuple(tensor.shape) != tuple(ours.shape):
            raise RobustKDError(f"checkpoint: {weights_path}: tensor {key} has shape {tuple(tensor.shape)} but {what} "
                                f"has {tuple(ours.shape)}")
    normalization = meta["normalization"]
    for name in ("mean", "std"):
        stored = state.get(name)
        if stored is None or not stored.dtype.is_floating_point:
            continue
        recorded = torch.tensor(normalization[name], dtype=torch.float32, device="cpu")  # compared on the CPU
        held = stored.detach().to("cpu", torch.float32).flatten()
        if held.shape != recorded.shape or not torch.allclose(held, recorded, rtol=2.0 ** -22, atol=0.0):
            raise RobustKDError(f"checkpoint: the sidecar's normalization {name} = {normalization[name]} differs from "
                                f"the {name} the weights in {weights_path} hold ({[round(v, 6) for v in held.tolist()]}); "
                                "the sidecar does not describe these weights")
