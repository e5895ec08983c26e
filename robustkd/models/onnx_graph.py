"""ONNX graphs as torch modules through onnx2torch (the optional ``onnx`` extra), checked and made convertible.

``read_onnx_file(path)`` reads an ``.onnx`` file with any external data files beside it (torch's exporter
writes its weights to ``<name>.onnx.data`` by default) into one self-contained graph; ``onnx_to_torch(data,
where)`` parses such bytes, checks them (one input image tensor, every operator convertible), rewrites what onnx2torch 1.5.15 trips over in torch 2.14's own
exports, converts it, and returns the module in eval mode. Every failure is one RobustKDError line.

Rewrites, all exact (the graph computes the same values):

- *Identity of an initializer*: the legacy exporter (``dynamo=False``) with constant folding shares equal
  initializers through ``Identity`` nodes, and onnx2torch's Conv/Gemm converters look biases up among the
  initializers only (a KeyError on the Identity's output name). The Identity becomes a copy of the initializer.
- *Reshape with allowzero=1* (the new exporter's) whose constant target shape holds no 0: allowzero only
  changes what a 0 in the shape means, so it is dropped (onnx2torch refuses allowzero=1).
- *Newer opset versions*: the new exporter (``dynamo=True``, opset 18+) uses ``ReduceMean-18`` (axes as an
  input instead of an attribute) and ``Identity-19``, ``Reshape-19``, ... whose only change over a version
  onnx2torch converts is wider element types. Converters are registered for those versions (the reductions
  with constant axes; ``Pad`` only without its ``axes`` input, which onnx2torch's converter would ignore).

The graph is also run through onnx's own reference evaluator (``reference_logits``) so an import can check the
converted module against an implementation that is not onnx2torch.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustkd.errors import RobustKDError, first_line

ONNX_EXTRA_HINT = "install the optional extra: pip install 'robustkd[onnx]' (onnx, onnx2torch)"

# Operators whose versions after the newest one onnx2torch 1.5.15 converts change only the element types they
# accept (ONNX's Changelog), so the newest converter serves them unchanged.
_TYPE_ONLY_CHANGES = ("Identity", "Reshape", "Cast", "CastLike", "Constant", "Flatten", "Shape", "Size", "Squeeze",
                      "Unsqueeze", "Transpose", "Relu", "Sigmoid", "Tanh", "Add", "Sub", "Mul", "Div", "Gemm",
                      "MatMul", "Concat", "Gather", "Where", "Equal", "Less", "Greater", "Expand", "Tile", "Slice",
                      "Clip", "Max", "Min", "Neg", "Sqrt", "Pow", "Exp", "Log", "Erf", "Softmax", "LogSoftmax",
                      "ConstantOfShape", "Range", "Not", "And", "Or", "Abs", "Floor", "Ceil")
_REDUCTIONS = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
               "ReduceLogSumExp", "ReduceSumSquare")


def _require(module: str) -> Any:
    from robustkd.models.foreign import quiet_import

    try:
        return quiet_import(module)
    except ImportError:
        raise RobustKDError(f"ONNX models need {module}: {ONNX_EXTRA_HINT}") from None


@cache
def _register_converters() -> None:
    """Converters for the operator versions of opset 18+ exports (see the module docstring); idempotent."""
    from onnx import defs
    from onnx2torch.node_converters import registry
    from onnx2torch.node_converters.identity import OnnxCopyIdentity
    from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value

    known = registry._CONVERTER_REGISTRY  # noqa: SLF001 - the registry has no public listing
    history: dict[str, list[int]] = {}
    for schema in defs.get_all_schemas_with_history():
        if schema.domain in ("", "ai.onnx"):
            history.setdefault(schema.name, []).append(schema.since_version)

    def newest(op: str) -> tuple[int, Any] | None:
        versions = [d.version for d in known if d.domain == "" and d.operation_type == op]
        return (max(versions), known[registry.OperationDescription("", op, max(versions))]) if versions else None

    def add(op: str, version: int, converter: Any) -> None:
        if registry.OperationDescription("", op, version) not in known:
            registry.add_converter(operation_type=op, version=version)(converter)

    for op in _TYPE_ONLY_CHANGES:
        found = newest(op)
        if found is None:
            continue
        top, converter = found
        for version in history.get(op, []):
            if version > top:
                add(op, version, converter)

    def reduce_with_axes_input(node: Any, graph: Any) -> Any:
        keepdims = node.attributes.get("keepdims", 1)
        noop = node.attributes.get("noop_with_empty_axes", 0)
        axes = None
        if len(node.input_values) > 1 and node.input_values[1]:
            try:
                axes = [int(a) for a in torch.as_tensor(get_const_value(node.input_values[1], graph)).flatten()]
            except KeyError:
                raise NotImplementedError(f"{node.operation_type} with axes computed at run time") from None
        if not axes and noop:
            module: nn.Module = OnnxCopyIdentity()
        else:
            module = OnnxReduceStaticAxes(operation_type=node.operation_type, axes=axes or None, keepdims=keepdims)
        return OperationConverterResult(torch_module=module,
                                        onnx_mapping=OnnxMapping(inputs=(node.input_values[0],),
                                                                 outputs=node.output_values))

    for op in _REDUCTIONS:
        for version in history.get(op, []):
            if version >= 18:
                add(op, version, reduce_with_axes_input)

    found = newest("Pad")
    if found is not None:
        top, pad = found

        def pad_without_axes(node: Any, graph: Any) -> Any:
            if len(node.input_values) > 3 and node.input_values[3]:
                raise NotImplementedError("Pad with an axes input")
            return pad(node, graph)

        for version in history.get("Pad", []):
            if version > top:
                add("Pad", version, pad_without_axes)


def parse_onnx(data: bytes, where: str) -> Any:
    """The checked, self-contained ``onnx.ModelProto`` in ``data`` (the bytes of ``where``)."""
    onnx = _require("onnx")
    model = _load(data, where)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise RobustKDError(f"{where} keeps {len(external)} tensors in external data files ({', '.join(external[:3])}); "
                            "expected a self-contained graph")
    _check(model, where)
    return model


def _load(data: bytes, where: str) -> Any:
    onnx = _require("onnx")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise RobustKDError(f"{where} is not an ONNX model ({first_line(exc)})") from None
    if model.ir_version < 3 or not model.graph.node or not model.graph.output:
        raise RobustKDError(f"{where} is not an ONNX model (no graph with nodes and an output)")
    return model


def _check(model: Any, where: str) -> None:
    onnx = _require("onnx")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError
        raise RobustKDError(f"{where} is not a valid ONNX model ({first_line(exc)})") from None


def read_onnx_file(path: Path) -> tuple[bytes, dict[str, str]]:
    """The bytes of a self-contained version of the ``.onnx`` file ``path`` and the SHA-256 of each external
    data file it names (torch's exporter writes the weights to ``<name>.onnx.data`` beside the graph by
    default). External data must be plain files in the graph's own folder; they are read into the graph."""
    import hashlib

    onnx = _require("onnx")
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model

    path = Path(path)
    data = path.read_bytes()
    model = _load(data, str(path))
    tensors = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if not tensors:
        _check(model, str(path))
        return data, {}
    folder = path.parent.resolve()
    files: dict[str, str] = {}
    for tensor in tensors:
        location = ExternalDataInfo(tensor).location
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or ".." in Path(location).parts or target.parent != folder:
            raise RobustKDError(f"{path}: tensor {tensor.name} names external data {location!r}; expected a file "
                                "beside the graph")
        if not target.is_file():
            raise RobustKDError(f"{path}: the external data file {target} of tensor {tensor.name} is missing")
        if location not in files:
            files[location] = hashlib.sha256(target.read_bytes()).hexdigest()
    try:
        load_external_data_for_model(model, str(folder))
        whole = model.SerializeToString()
    except Exception as exc:  # a truncated data file, or a graph too large for one protobuf (2 GB)
        raise RobustKDError(f"{path}: cannot read its external data into one graph ({first_line(exc)})") from None
    _check(model, str(path))
    return whole, files


def graph_input(model: Any, where: str) -> tuple[str, list[int | None]]:
    """The graph's one image input: its name and dims (None where symbolic)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise RobustKDError(f"{where} takes {len(inputs)} inputs ({', '.join(v.name for v in inputs)}); expected one "
                            "image batch (N, 3, H, W)")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] not in (None, 3):
        raise RobustKDError(f"{where}: input {inputs[0].name} has shape {dims}; expected (N, 3, H, W)")
    if len(model.graph.output) != 1:
        raise RobustKDError(f"{where} has {len(model.graph.output)} outputs; expected one (the logits)")
    return inputs[0].name, dims


def _make_convertible(model: Any) -> Any:
    """A copy of ``model`` with the exact rewrites of the module docstring: ``Identity`` nodes of initializers
    made initializers, ``allowzero`` dropped from Reshapes whose constant shape holds no 0."""
    onnx = _require("onnx")
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.attribute and node.attribute[0].name == "value":
            tensors.setdefault(node.output[0], node.attribute[0].t)
    outputs = {value.name for value in graph.output}
    for node in graph.node:
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in tensors:
            for attribute in list(node.attribute):
                if attribute.name == "allowzero" and attribute.i == 1 \
                        and not (numpy_helper.to_array(tensors[node.input[1]]) == 0).any():
                    node.attribute.remove(attribute)
    tensors = {t.name: t for t in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.input[0] in tensors \
                and node.output[0] not in outputs:
            copy = onnx.TensorProto()
            copy.CopyFrom(tensors[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
            tensors[copy.name] = copy
        else:
            kept.append(node)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    return model


def unsupported_operators(model: Any) -> list[str]:
    """``Op-version`` for every operator of ``model`` that onnx2torch cannot convert (empty: all convertible)."""
    _require("onnx2torch")
    _register_converters()
    from onnx2torch.node_converters.registry import get_converter

    opsets = {entry.domain or "": entry.version for entry in model.opset_import}
    missing = []
    for node in model.graph.node:
        domain = node.domain if node.domain != "ai.onnx" else ""
        version = opsets.get(domain)
        label = f"{(domain + '.') if domain else ''}{node.op_type} (opset {version})"
        if version is None:
            missing.append(label)
            continue
        try:
            get_converter(operation_type=node.op_type, version=version, domain=domain)
        except NotImplementedError:
            missing.append(label)
    return sorted(set(missing))


def onnx_to_torch(data: bytes, where: str) -> nn.Module:
    """The module onnx2torch makes of the ONNX bytes ``data`` (``where`` names them in errors), in eval mode."""
    model = _make_convertible(parse_onnx(data, where))
    graph_input(model, where)
    missing = unsupported_operators(model)
    if missing:
        raise RobustKDError(f"{where} uses operators onnx2torch cannot convert: {', '.join(missing[:5])}"
                            f"{' …' if len(missing) > 5 else ''}")
    from onnx2torch import convert

    try:
        module = convert(model)
    except NotImplementedError as exc:
        raise RobustKDError(f"{where}: onnx2torch cannot convert it ({first_line(exc)})") from None
    except Exception as exc:  # the converter's own KeyError/ValueError/...: one line, not a traceback
        raise RobustKDError(f"{where}: onnx2torch failed to convert it ({type(exc).__name__}: {first_line(exc)})") from None
    return module.eval()


def reference_logits(data: bytes, inputs: torch.Tensor) -> torch.Tensor | None:
    """The graph's output on ``inputs`` through onnx's reference evaluator (NumPy; independent of onnx2torch);
    None when the evaluator cannot run this graph."""
    onnx = _require("onnx")
    from onnx.reference import ReferenceEvaluator

    model = onnx.load_model_from_string(data)
    name, _ = graph_input(model, "the graph")
    try:
        (output,) = ReferenceEvaluator(model).run(None, {name: inputs.detach().cpu().numpy().astype(np.float32)})[:1]
    except Exception:  # an operator the reference implementation lacks: no second opinion, not an error
        return None
    return torch.from_numpy(np.asarray(output, dtype=np.float32))
