"""State dicts of robustkd's zoo architectures saved by other code bases (RepDistiller, mdistiller, ...).

``robustkd import teacher.pth --architecture resnet32x4 --dataset cifar100``: the file is read without
unpickling code (``robustkd.checkpoint.state_dicts``), unwrapped (``{'model': sd}``, ``{'state_dict': sd}``,
``module.`` prefixes, bare) and loaded strictly into the zoo's network. A robustkd checkpoint's own weights
(keys ``mean``, ``std``, ``net.*``) bring their normalisation with them.
"""

from __future__ import annotations

from pathlib import Path

from robustkd.checkpoint.state_dicts import fit_state_dict, read_state_dict
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
from robustkd.models import build_network, canonical_model_name


@register_importer(SourceKind.STATE_DICT)
def import_state_dict(spec: SourceSpec, options: ImportOptions) -> ImportedModel:
    refuse_options(spec.kind, options, "weights", "model_dir", "torchvision_weights", "model_kwargs")
    path = Path(spec.name)
    if not options.architecture:
        raise RobustKDError(f"import {path}: a state dict needs --architecture NAME (a `robustkd models` name); "
                            "for timm or torchvision networks import timm:NAME or torchvision:NAME --weights FILE")
    if options.architecture.startswith(("timm:", "robustbench:")):
        raise RobustKDError(f"import {path}: --architecture {options.architecture}: import "
                            f"{options.architecture} --weights {path} instead")
    architecture = canonical_model_name(options.architecture)
    dataset, num_classes = resolve_dataset(spec, options, None)
    if not path.is_file():
        raise RobustKDError(f"import: no such state dict file: {path}")
    state = read_state_dict(path)
    own = None
    if "mean" in state and "std" in state and any(key.startswith("net.") for key in state):  # a robustkd wrapper
        mean, std = state.pop("mean").flatten().tolist(), state.pop("std").flatten().tolist()
        state = {key[len("net."):] if key.startswith("net.") else key: value for key, value in state.items()}
        own = (mean, std, f"the mean and std buffers of {path.name}")
    network = build_network(architecture, num_classes)
    fit_state_dict(network, state, what=f"a {architecture} with {num_classes} classes", where=path,
                   num_classes=num_classes)
    library = "safetensors" if path.suffix == ".safetensors" else "torch"
    source = {"kind": spec.kind.value, "name": path.name, **file_record(path), "library": library,
              "library_version": library_version(library)}
    return ImportedModel(network.eval(), architecture, dataset, num_classes, source, own_normalization=own)
