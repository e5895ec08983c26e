"""Foreign state dicts: read without unpickling code, unwrapped, and fitted to a network with one-line errors.

``read_weights_file(path)`` reads ``.safetensors`` (tensors only) or ``.pth``/``.pt``/``.bin`` through
``torch.load(weights_only=True)``, whose unpickler resolves only tensor-rebuilding globals and refuses every
other global *before* calling anything: a file that needs arbitrary unpickling is refused, nothing in it runs.

``unwrap_state_dict(obj)`` finds the state dict in what other code bases save: RepDistiller / mdistiller
(``{'model': sd, 'epoch': ..., 'optimizer': ...}``), ``{'state_dict': sd}`` (Lightning, RobustBench),
``{'net': sd}``, ``{'model_state_dict': sd}``, or a bare state dict; DataParallel's ``module.`` prefixes
are removed. ``fit_state_dict(network, state, ...)`` loads strictly after comparing keys and shapes itself,
so a mismatch is one line naming the first few keys (and, for a classifier of another size, the class count).
"""

from __future__ import annotations

import pickle
import re
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from robustkd.errors import RobustKDError, first_line

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
WRAPPER_KEYS = ("model", "state_dict", "net", "model_state_dict")
SHOWN = 3  # keys named in a mismatch message


def read_weights_file(path: Path) -> Any:
    """The object in ``path`` (``.safetensors``: a dict of tensors; ``.pth``/``.pt``/``.bin``: whatever
    ``torch.load(weights_only=True)`` accepts), or a RobustKDError; never runs code from the file."""
    path = Path(path)
    if not path.is_file():
        raise RobustKDError(f"no such weights file: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise RobustKDError(f"{path} is not a readable safetensors file ({first_line(exc)})") from None
    if path.suffix in TORCH_SUFFIXES:
        try:
            with warnings.catch_warnings():  # torch warns about an odd pickle protocol before refusing it
                warnings.simplefilter("ignore")
                return torch.load(str(path), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, ImportError,
                KeyError, IndexError, TypeError, struct.error) as exc:  # a damaged pickle's memo, stack, frames
            raise RobustKDError(f"refusing {path}: it cannot be read with weights_only=True ({_unpickling_reason(exc)}); "
                                "robustkd never unpickles code from a weights file") from None
    raise RobustKDError(f"{path} has suffix {path.suffix!r}; expected .safetensors, .pth, .pt or .bin")


def _unpickling_reason(exc: BaseException) -> str:
    """The part of torch's weights-only error that says what the file asked for (torch's own message goes on to
    advise loading the file with weights_only=False, which is exactly what must not happen here)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it names {found.group(1)}, which only arbitrary unpickling would call"
    found = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    if found:
        return found.group(1).strip().rstrip(".")
    return first_line(exc) if "weights_only" not in first_line(exc) else type(exc).__name__


def unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict of tensors in ``obj`` (see the module docstring), ``module.`` prefixes removed."""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping) and obj[key] and all(
                    isinstance(value, torch.Tensor) for value in obj[key].values()):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RobustKDError(f"{path} holds no state dict of tensors (looked at the top level and "
                            f"{', '.join(repr(k) for k in WRAPPER_KEYS)})")
    if not all(isinstance(key, str) for key in obj):
        odd = next(key for key in obj if not isinstance(key, str))
        raise RobustKDError(f"{path}: state dict keys must be parameter names (strings), got {type(odd).__name__} "
                            f"{str(odd)[:40]!r}")
    state = {}
    for key, value in obj.items():
        while key.startswith("module."):
            key = key[len("module."):]
        state[str(key)] = value
    return state


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """``unwrap_state_dict(read_weights_file(path))``."""
    return unwrap_state_dict(read_weights_file(path), Path(path))


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return f"{shown}, … ({len(keys)} in all)" if len(keys) > SHOWN else shown


def state_dict_problem(network: nn.Module, state: Mapping[str, torch.Tensor], *, num_classes: int | None = None,
                       allowed_missing: frozenset[str] = frozenset()) -> str | None:
    """Why ``state`` does not load strictly into ``network`` (one line), or None when it does.

    A mismatch only in output sizes where the network has ``num_classes`` is reported as a class count."""
    expected = network.state_dict()
    # BatchNorm's step counter is absent from files saved before PyTorch 0.4.1 (torchvision's original ResNets);
    # torch's strict load fills it in, so it is not missing.
    missing = [key for key in expected if key not in state and key not in allowed_missing
               and not key.endswith(".num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key{'s' if len(missing) > 1 else ''} ({_names(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key{'s' if len(unexpected) > 1 else ''} ({_names(unexpected)})")
        return "; ".join(parts)
    shapes = [(key, tuple(state[key].shape), tuple(expected[key].shape)) for key in expected
              if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
    kinds = [key for key in expected if key in state and state[key].is_floating_point() != expected[key].is_floating_point()]
    if kinds and not shapes:  # integer weights copied into float parameters would load as other numbers
        key = kinds[0]
        return (f"{key} holds {str(state[key].dtype)[6:]} values in the file, {str(expected[key].dtype)[6:]} in the "
                f"network" + (f" (and {len(kinds) - 1} more tensors of the wrong kind)" if len(kinds) > 1 else ""))
    if not shapes:
        return None
    if num_classes is not None and all(mine and theirs and mine[0] == num_classes and theirs[0] != mine[0]
                                       and theirs[1:] == mine[1:] for key, theirs, mine in shapes):
        key, theirs, mine = shapes[0]
        return (f"it has {theirs[0]} classes ({key} is {list(theirs)}), not {num_classes} "
                f"(give the dataset it was trained on, or --num-classes {theirs[0]})")
    key, theirs, mine = shapes[0]
    more = f" and {len(shapes) - 1} more shape mismatches" if len(shapes) > 1 else ""
    return f"shape mismatch: {key} is {list(theirs)} in the file, {list(mine)} in the network{more}"


def fit_state_dict(network: nn.Module, state: Mapping[str, torch.Tensor], *, what: str, where: Path | str,
                   num_classes: int | None = None, allowed_missing: frozenset[str] = frozenset()) -> nn.Module:
    """Load ``state`` into ``network`` (strictly, but for ``allowed_missing``, which keep their values) or
    raise ``<where> does not fit <what>: <why>``."""
    problem = state_dict_problem(network, state, num_classes=num_classes, allowed_missing=allowed_missing)
    if problem:
        raise RobustKDError(f"{where} does not fit {what}: {problem}")
    try:
        network.load_state_dict(dict(state), strict=not allowed_missing)
    except RuntimeError as exc:  # dtypes torch cannot copy, and what the checks above do not foresee
        raise RobustKDError(f"{where} does not fit {what} ({first_line(exc)})") from None
    return network
