"""A second device on a CPU-only machine, with CUDA's rules for mixing devices (see test_device_mixing.py).

``fake_device()`` is a context manager. Inside it, ``torch.device("meta")`` stands for an accelerator: a
tensor "on" it is a ``OnDevice`` wrapper around a real CPU tensor, so values are computed exactly as on
the CPU, while ``tensor.device`` reports ``meta``. A ``TorchDispatchMode`` sees every ATen operation and

- runs it on the wrapped CPU values; its tensor outputs are on the device when an input is on the device
  or the call names the device (``device=``, ``.to(device)``), else plain CPU tensors;
- raises ``DeviceMixingError`` where CUDA raises "Expected all tensors to be on the same device": an
  operation that combines a device tensor with a CPU tensor, except the cases CUDA accepts: a 0-dim CPU
  tensor as an operand of a pointwise (TensorIterator) operation, CPU index tensors of ``index`` /
  ``index_put_``, and copies between devices (``copy_``, ``.to``). A generator must be on the device of
  the tensor it fills (``torch.Generator(device=...)`` is made device-aware for the duration).

``torch.autocast`` with device type ``meta`` behaves as ``cpu`` autocast inside the context (PyTorch has
no meta autocast; the tests run in fp32). Meta, not ``cuda``, is the reported device because PyTorch's
autograd engine asks a CUDA device for its stream (which needs a driver) and runs meta on the CPU queue.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

FAKE = torch.device("meta")
aten = torch.ops.aten

# Operations whose CPU index tensors CUDA accepts for a CUDA ``self`` (it copies them over).
_INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default,
              aten._unsafe_index.Tensor, aten._unsafe_index_put.default}
# Copies between devices.
_TRANSFER_OPS = {aten.copy_.default, aten._to_copy.default, aten.copy.default, aten._copy_from.default,
                 aten._copy_from_and_resize.default}


class DeviceMixingError(RuntimeError):
    """An operation combined a tensor on the device with a CPU tensor, which CUDA rejects."""


class OnDevice(torch.Tensor):
    """A CPU tensor ``elem`` presented as living on ``FAKE``."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor) -> "OnDevice":
        wrapper = torch.Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=FAKE, requires_grad=elem.requires_grad)
        wrapper.elem = elem
        return wrapper

    __torch_function__ = torch._C._disabled_torch_function_impl

    def __repr__(self) -> str:  # type: ignore[override]
        return f"OnDevice({self.elem!r})"

    def tolist(self) -> Any:  # a device-to-host copy, as on CUDA (PyTorch refuses it for subclasses)
        return self.elem.tolist()

    def numpy(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("can't convert a device tensor to numpy; use .cpu() first (as CUDA tensors require)")

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # pragma: no cover - the mode handles all
        raise DeviceMixingError(f"{func}: device tensors are only usable inside fake_device()")


def to_device(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (CPU) moved to the fake device."""
    return OnDevice(tensor.detach().clone().requires_grad_(tensor.requires_grad))


def to_cpu(value: Any) -> Any:
    """Device tensors (in any nesting) back as plain CPU tensors; use inside or outside the context."""
    return tree_map(lambda t: t.elem if isinstance(t, OnDevice) else t, value)


def _is_fake_device(device: Any) -> bool:
    return device is not None and torch.device(device).type == FAKE.type


_FAKE_GENERATORS: dict[int, torch.Generator] = {}
"""The Python objects under which operations see the device's generators, by id (kept alive while listed)."""


class _SeeGenerator(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen = (kwargs or {}).get("generator")
        return func(*args, **(kwargs or {}))


class _Generator(torch.Generator):
    """``torch.Generator(device=FAKE)`` inside the context: a CPU generator that reports the fake device.

    Operations receive a generator as a second Python object (PyTorch wraps the C++ generator once and
    keeps that wrapper); it is found here by passing the generator through one operation and listed.
    """

    def __new__(cls, device: Any = "cpu") -> "_Generator":
        on_fake = _is_fake_device(device)
        generator = super().__new__(cls, "cpu" if on_fake else device)
        generator.on_fake = on_fake
        if on_fake:
            with _SeeGenerator() as see:
                torch.empty(0).normal_(generator=generator)
            _FAKE_GENERATORS[id(see.seen)] = see.seen
        return generator

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return FAKE if self.on_fake else torch.device("cpu")


def _factory(original: Any) -> Any:
    """``torch.tensor`` / ``as_tensor`` / ``asarray`` build tensors without dispatching an operation: made
    on the CPU and wrapped when they name the device."""

    def make(data: Any, *args: Any, device: Any = None, **kwargs: Any) -> torch.Tensor:
        if original is torch.as_tensor and len(args) >= 2:
            args, device = args[:1], args[1]
        if not _is_fake_device(device):
            return original(data, *args, device=device, **kwargs)
        return OnDevice(original(to_cpu(data), *args, device="cpu", **kwargs))
    return make


class _Autocast(torch.amp.autocast):
    def __init__(self, device_type: str, *args: Any, **kwargs: Any) -> None:
        super().__init__("cpu" if device_type == FAKE.type else device_type, *args, **kwargs)


def _describe(t: torch.Tensor) -> str:
    return f"{'device' if isinstance(t, OnDevice) else 'cpu'} {t.dtype} {tuple(t.shape)}"


class FakeDeviceMode(TorchDispatchMode):
    """Runs every operation on the CPU values and enforces CUDA's device-mixing rules; records the ops seen."""

    def __init__(self) -> None:
        super().__init__()
        self.device_ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_device = [t for t in tensors if isinstance(t, OnDevice)]
        if any(t.device.type == FAKE.type and not isinstance(t, OnDevice) for t in tensors):
            raise DeviceMixingError(f"{func}: a real meta tensor (no values) reached an operation; it was made "
                                    "by a factory that fake_device() does not intercept")
        names_device = _is_fake_device(kwargs.get("device"))
        names_cpu = "device" in kwargs and kwargs["device"] is not None and not names_device
        if names_device:
            kwargs["device"] = torch.device("cpu")
        target_device = names_device or (bool(on_device) and not names_cpu)
        if on_device and func not in _TRANSFER_OPS and not names_device and not names_cpu:
            self._check_mixing(func, args, kwargs, tensors)
        generator = kwargs.get("generator")
        if isinstance(generator, torch._C.Generator):
            on_fake = id(generator) in _FAKE_GENERATORS
            if on_fake != target_device:
                raise DeviceMixingError(f"{func}: a generator on {'the device' if on_fake else 'the cpu'} fills a "
                                        f"tensor on {'the device' if target_device else 'the cpu'}")
        out = func(*to_cpu(args), **to_cpu(kwargs))
        if on_device:
            self.device_ops.add(str(func.overloadpacket))
        schema_returns = func._schema.returns
        if (len(schema_returns) == 1 and schema_returns[0].alias_info is not None
                and schema_returns[0].alias_info.is_write and args and isinstance(args[0], torch.Tensor)):
            return args[0]  # in-place: the result is the (wrapped) argument itself
        if target_device:
            return tree_map(lambda t: OnDevice(t) if isinstance(t, torch.Tensor) and not isinstance(t, OnDevice)
                            else t, out)
        return out

    @staticmethod
    def _check_mixing(func, args, kwargs, tensors: list[torch.Tensor]) -> None:
        pointwise = torch.Tag.pointwise in func.tags
        allowed: set[int] = set()
        if func in _INDEX_OPS:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            allowed = {id(t) for t in indices if isinstance(t, torch.Tensor)}
            if func is not aten.index.Tensor and len(args) > 2 and isinstance(args[2], torch.Tensor) \
                    and args[2].dim() == 0:
                allowed.add(id(args[2]))  # x[i] = cpu_scalar_tensor
        for t in tensors:
            if isinstance(t, OnDevice) or id(t) in allowed:
                continue
            if t.device.type == "cpu" and t.dim() == 0 and pointwise:
                continue  # CUDA accepts CPU scalars in TensorIterator operations
            raise DeviceMixingError(
                f"{func}: combines tensors on two devices ({', '.join(_describe(x) for x in tensors)}); "
                "CUDA raises 'Expected all tensors to be on the same device'")


@contextlib.contextmanager
def fake_device() -> Iterator[FakeDeviceMode]:
    """The context in which ``FAKE`` is a second device; yields the mode (``device_ops``: ops that ran there)."""
    patched = {"Generator": _Generator, "autocast": _Autocast, "tensor": _factory(torch.tensor),
               "as_tensor": _factory(torch.as_tensor), "asarray": _factory(torch.asarray)}
    saved = {name: getattr(torch, name) for name in patched}
    saved_amp = torch.amp.autocast
    for name, value in patched.items():
        setattr(torch, name, value)
    torch.amp.autocast = _Autocast  # type: ignore[misc]
    try:
        with FakeDeviceMode() as mode:
            yield mode
    finally:
        _FAKE_GENERATORS.clear()
        for name, value in saved.items():
            setattr(torch, name, value)
        torch.amp.autocast = saved_amp  # type: ignore[misc]
