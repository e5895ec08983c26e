"""torchvision networks: ``robustkd import torchvision:NAME --weights FILE [--torchvision-weights ENUM]``.

The network is ``torchvision.models.get_model(NAME, weights=None, num_classes=N, **kwargs)``, filled from
``--weights`` (read without unpickling code). ``--torchvision-weights IMAGENET1K_V1`` (a member of the model's
weights enum, or ``DEFAULT``, or the full ``MobileNet_V3_Small_Weights.IMAGENET1K_V1``) names the weights the
file holds: their transforms supply the ImageNet preprocessing (resize, crop, interpolation, mean, std), and
without ``--weights`` their file is taken from torch's hub cache if it is there (robustkd never downloads).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torchvision

from robustkd.checkpoint.state_dicts import fit_state_dict, read_state_dict
from robustkd.data.imagenet import EvalPreprocessing
from robustkd.errors import RobustKDError
from robustkd.imports.base import (
    ImportedModel,
    ImportOptions,
    SourceKind,
    SourceSpec,
    file_record,
    json_kwargs,
    refuse_options,
    register_importer,
    resolve_dataset,
)
from robustkd.models.foreign import TORCHVISION_PREFIX, torchvision_network


def weights_enum(name: str, member: str) -> Any:
    """The member ``member`` of model ``name``'s weights enum (``IMAGENET1K_V1``, ``DEFAULT`` or the full name)."""
    enum_class = torchvision.models.get_model_weights(name)
    short = member.split(".", 1)[1] if member.startswith(f"{enum_class.__name__}.") else member
    if short == "DEFAULT":
        return enum_class.DEFAULT
    try:
        return enum_class[short]
    except KeyError:
        choices = ", ".join(["DEFAULT", *(m.name for m in enum_class)])
        raise RobustKDError(f"import torchvision:{name}: --torchvision-weights {member!r} is not a member of "
                            f"{enum_class.__name__}; expected one of: {choices}") from None


def enum_preprocessing(weights: Any) -> tuple[EvalPreprocessing, list[float], list[float]]:
    """The evaluation transform of a torchvision weights enum member (its ``transforms()``)."""
    transform = weights.transforms()
    crop, resize = transform.crop_size[0], transform.resize_size[0]
    interpolation = transform.interpolation.value
    preprocessing = EvalPreprocessing(int(crop), int(resize), round(crop / resize, 6), interpolation, "center")
    return preprocessing, list(transform.mean), list(transform.std)


@register_importer(SourceKind.TORCHVISION)
def import_torchvision(spec: SourceSpec, options: ImportOptions) -> ImportedModel:
    refuse_options(spec.kind, options, "architecture", "model_dir")
    name = spec.name
    dataset, num_classes = resolve_dataset(spec, options, "imagenet")
    kwargs = json_kwargs(spec, options)
    network = torchvision_network(name, num_classes, kwargs)
    weights = weights_enum(name, options.torchvision_weights) if options.torchvision_weights else None
    if options.weights is not None:
        path = Path(options.weights)
        if not path.is_file():
            raise RobustKDError(f"import torchvision:{name}: no such weights file: {path}")
        origin = "file"
    elif weights is not None:
        import torch.hub

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if not path.is_file():
            raise RobustKDError(f"import torchvision:{name}: no --weights FILE, and {weights} is not in torch's hub "
                                f"cache ({path}); robustkd never downloads")
        origin = "torch hub cache"
    else:
        raise RobustKDError(f"import torchvision:{name}: give --weights FILE (torchvision:NAME alone would be "
                            "random weights; `robustkd train --model torchvision:NAME` trains those)")
    state = read_state_dict(path)
    fit_state_dict(network, state, what=f"torchvision:{name} with {num_classes} classes", where=path,
                   num_classes=num_classes)
    own_normalization = own_preprocessing = None
    if weights is not None and dataset == "imagenet":
        preprocessing, mean, std = enum_preprocessing(weights)
        own_normalization = (mean, std, f"torchvision {weights}.transforms()")
        own_preprocessing = (preprocessing, f"torchvision {weights}.transforms()")
    source = {"kind": spec.kind.value, "name": name, **file_record(path), "weights_from": origin,
              "library": "torchvision", "library_version": torchvision.__version__,
              "weights_enum": str(weights) if weights is not None else None}
    return ImportedModel(network.eval(), f"{TORCHVISION_PREFIX}{name}", dataset, num_classes, source,
                         architecture_options={"kwargs": kwargs} if kwargs else None,
                         own_normalization=own_normalization, own_preprocessing=own_preprocessing)
