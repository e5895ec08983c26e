"""ONNX graphs: ``robustkd import model.onnx --dataset D`` (the optional ``onnx`` extra: onnx, onnx2torch).

The graph is converted by onnx2torch (``robustkd.models.onnx_graph``: checked, made convertible by exact
rewrites, every operator convertible or one error line naming those that are not) and its output compared,
on the probe batch, with onnx's own reference evaluator. The checkpoint keeps the graph beside its sidecar
(``model.onnx``, SHA-256 in ``architecture_options``): the file itself, or, when its weights were in external
data files (torch's exporter's default, ``<name>.onnx.data``), one self-contained graph holding them (the
source records every file's SHA-256). The module is rebuilt from it at every load;
the safetensors hold the converted module's tensors, loaded strictly into that rebuild.

The graph is taken to expect normalised inputs (an export of a bare network): mean and std default to the
dataset's statistics. A graph exported with its normalisation inside takes ``--mean 0 0 0 --std 1 1 1``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from robustkd.data import dataset_info
from robustkd.errors import RobustKDError
from robustkd.imports.base import (
    ImportedModel,
    ImportOptions,
    SourceKind,
    SourceSpec,
    file_record,
    library_version,
    refuse_options,
    register_importer,
    resolve_dataset,
)
from robustkd.models.foreign import ONNX_PREFIX
from robustkd.models.onnx_graph import graph_input, onnx_to_torch, parse_onnx, read_onnx_file, reference_logits

ONNX_FILE = "model.onnx"


@register_importer(SourceKind.ONNX)
def import_onnx(spec: SourceSpec, options: ImportOptions) -> ImportedModel:
    refuse_options(spec.kind, options, "architecture", "weights", "model_dir", "torchvision_weights", "model_kwargs")
    path = Path(spec.name)
    dataset, num_classes = resolve_dataset(spec, options, None)
    if not path.is_file():
        raise RobustKDError(f"import: no such ONNX file: {path}")
    data, external = read_onnx_file(path)
    _, dims = graph_input(parse_onnx(data, str(path)), str(path))
    network = onnx_to_torch(data, str(path))
    height, width = dims[2], dims[3]
    if height is not None and width is not None and height != width:
        raise RobustKDError(f"import {path}: the graph takes {height}x{width} images; robustkd feeds square ones")
    size = dataset_info(dataset).image_size
    if height is not None and dataset != "imagenet" and height != size:
        raise RobustKDError(f"import {path}: the graph takes {height}x{width} images; {dataset} images are {size}x{size}")
    if dataset == "imagenet" and height is not None and options.input_size is not None and options.input_size != height:
        raise RobustKDError(f"import {path}: the graph takes {height}x{width} images, not --input-size {options.input_size}")
    record = file_record(path)
    source = {"kind": spec.kind.value, "name": path.name, **record, "library": "onnx2torch",
              "library_version": library_version("onnx2torch"), "onnx_version": library_version("onnx")}
    if external:
        source["external_data"] = external

    def reference(inputs: torch.Tensor) -> torch.Tensor | None:
        return reference_logits(data, inputs)

    return ImportedModel(network, f"{ONNX_PREFIX}{path.stem}", dataset, num_classes, source,
                         architecture_options={"onnx_file": ONNX_FILE, "onnx_sha256": hashlib.sha256(data).hexdigest()},
                         files={ONNX_FILE: data}, reference=reference, input_size=height,
                         fixed_batch=dims[0])
