"""RobustBench model-zoo entries: ``robustkd import robustbench:DATASET/THREAT/NAME [--model-dir DIR]``.

The network is RobustBench's own definition of the entry (``robustbench.model_zoo``), built without network
access; the weights are the file RobustBench keeps in its model folder, ``<model-dir>/<dataset>/<threat>/<name>.pt``
(``--model-dir``, default ``./models`` as RobustBench's; or ``--weights FILE``). An absent file is an error
naming the path: robustkd never downloads. The file is read without unpickling code, and its keys are
prepared as ``robustbench.utils.load_model`` prepares them (``state_dict``/``last`` wrappers, ``module.`` and
``model.`` prefixes, ImageNet's ``model.`` wrapper), with RobustBench's own tolerance of normalisation buffers
that its published files lack (they keep the definition's values).

RobustBench models take inputs in [0, 1] and carry their own normalisation, so the checkpoint's is the
identity (mean 0, std 1) unless ``--mean``/``--std`` say otherwise; ImageNet entries bring their
preprocessing (``Res256Crop224``, ``Crop288``, ...) from RobustBench's own table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robustkd.checkpoint.state_dicts import fit_state_dict, read_weights_file
from robustkd.data.imagenet import EvalPreprocessing
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
from robustkd.models.foreign import ROBUSTBENCH_PREFIX, parse_robustbench_name, robustbench_network

# robustbench.utils._safe_load_state_dict: models whose published files lack (or add) these keys load anyway.
_TOLERATED_MODELS = {
    "Andriushchenko2020Understanding", "Augustin2020Adversarial", "Engstrom2019Robustness", "Pang2020Boosting",
    "Rice2020Overfitting", "Rony2019Decoupling", "Wong2020Fast", "Hendrycks2020AugMix_WRN",
    "Hendrycks2020AugMix_ResNeXt", "Kireev2021Effectiveness_Gauss50percent", "Kireev2021Effectiveness_AugMixNoJSD",
    "Kireev2021Effectiveness_RLAT", "Kireev2021Effectiveness_RLATAugMixNoJSD", "Kireev2021Effectiveness_RLATAugMix",
    "Chen2020Efficient", "Wu2020Adversarial", "Augustin2020Adversarial_34_10", "Augustin2020Adversarial_34_10_extra",
    "Diffenderfer2021Winning_LRR", "Diffenderfer2021Winning_LRR_CARD_Deck", "Diffenderfer2021Winning_Binary",
    "Diffenderfer2021Winning_Binary_CARD_Deck", "Huang2022Revisiting_WRN-A4", "Bai2024MixedNUTS",
}
_TOLERATED_MISSING = frozenset({"mu", "sigma", "normalize.mean", "normalize.std", "mean", "std"})
# ImageNet entries whose files already hold the normalising wrapper's keys (robustbench.utils.load_model).
_NO_MODEL_PREFIX = {"Singh2023Revisiting_ConvNeXt-T-ConvStem", "Singh2023Revisiting_ViT-B-ConvStem",
                    "Singh2023Revisiting_ConvNeXt-S-ConvStem", "Singh2023Revisiting_ConvNeXt-B-ConvStem",
                    "Singh2023Revisiting_ConvNeXt-L-ConvStem", "Peng2023Robust", "Chen2024Data_WRN_50_2",
                    "Xu2024MIMIR_Swin-B", "Xu2024MIMIR_Swin-L"}


def robustbench_state_dict(obj: Any, dataset: str, name: str, model: torch.nn.Module, path: Path) -> dict[str, Any]:
    """The state dict ``robustbench.utils.load_model`` would load from the file's object ``obj``."""
    from robustbench.utils import add_substr_to_state_dict, rm_substr_from_state_dict

    if ("Kireev2021Effectiveness" in name or name == "Andriushchenko2020Understanding") and isinstance(obj, dict) \
            and "last" in obj:
        obj = obj["last"]
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = rm_substr_from_state_dict(obj["state_dict"], "module.")
    elif isinstance(obj, dict):
        state = rm_substr_from_state_dict(obj, "module.")
    else:
        raise RobustKDError(f"{path} holds no state dict (a {type(obj).__name__})")
    state = rm_substr_from_state_dict(state, "model.")
    if dataset == "imagenet":
        if "Swin" in name and hasattr(model, "model"):
            try:
                from timm.models.swin_transformer import checkpoint_filter_fn

                state = checkpoint_filter_fn(state, model.model)
            except Exception:  # noqa: BLE001 - RobustBench ignores the filter's failures the same way
                pass
        if name not in _NO_MODEL_PREFIX:
            state = add_substr_to_state_dict(state, "model.")
    if not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise RobustKDError(f"{path} holds no state dict of tensors")
    return dict(state)


def robustbench_preprocessing(dataset: str, threat: str, name: str) -> EvalPreprocessing:
    """RobustBench's own evaluation transform of an ImageNet entry, as an ``EvalPreprocessing``."""
    from robustbench.data import get_preprocessing
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    from torchvision import transforms

    compose = get_preprocessing(BenchmarkDataset(dataset), ThreatModel(threat), name, None)
    resize, crop, interpolation, squash = None, None, "bilinear", False
    for step in compose.transforms:
        if isinstance(step, transforms.Resize):
            size = step.size
            squash = isinstance(size, (list, tuple)) and len(size) == 2
            resize = int(size[0] if isinstance(size, (list, tuple)) else size)
            interpolation = step.interpolation.value
        elif isinstance(step, transforms.CenterCrop):
            crop = int(step.size[0])
        elif not isinstance(step, (transforms.ToTensor, transforms.Normalize)):
            raise RobustKDError(f"robustbench:{dataset}/{threat}/{name}: RobustBench's preprocessing {compose} has a "
                                f"step robustkd's ImageNet loader does not reproduce ({type(step).__name__})")
    if crop is None:
        if resize is None:
            raise RobustKDError(f"robustbench:{dataset}/{threat}/{name}: RobustBench's preprocessing fixes no size")
        crop = resize
    mode = "squash" if squash else ("center" if resize is not None else "crop")
    crop_pct = round(crop / resize, 6) if resize else None
    return EvalPreprocessing(crop, resize, crop_pct, interpolation, mode)


@register_importer(SourceKind.ROBUSTBENCH)
def import_robustbench(spec: SourceSpec, options: ImportOptions) -> ImportedModel:
    refuse_options(spec.kind, options, "architecture", "torchvision_weights", "model_kwargs")
    dataset, threat, name = parse_robustbench_name(spec.name)
    if options.dataset is not None and options.dataset != dataset:
        raise RobustKDError(f"import robustbench:{spec.name} is a {dataset} model; --dataset {options.dataset} "
                            "contradicts it")
    dataset, num_classes = resolve_dataset(spec, options, dataset)
    network = robustbench_network(spec.name, num_classes)
    if options.weights is not None:
        path = Path(options.weights)
        if not path.is_file():
            raise RobustKDError(f"import robustbench:{spec.name}: no such weights file: {path}")
    else:
        path = Path(options.model_dir or "models") / dataset / threat.replace("_3d", "") / f"{name}.pt"
        if not path.is_file():
            raise RobustKDError(f"import robustbench:{spec.name}: no file {path} (RobustBench's layout "
                                "<model-dir>/<dataset>/<threat>/<name>.pt); robustkd never downloads: put the file "
                                "there, or pass --model-dir DIR or --weights FILE")
    state = robustbench_state_dict(read_weights_file(path), dataset, name, network, path)
    tolerated = frozenset()
    if name in _TOLERATED_MODELS or dataset == "imagenet":
        tolerated = _TOLERATED_MISSING & set(network.state_dict())
    kept = sorted(key for key in tolerated if key not in state)
    fit_state_dict(network, state, what=f"RobustBench's {name} ({dataset}, {num_classes} classes)", where=path,
                   num_classes=num_classes, allowed_missing=frozenset(kept))
    own_preprocessing = None
    if dataset == "imagenet":
        own_preprocessing = (robustbench_preprocessing(dataset, threat, name), f"RobustBench's preprocessing of {name}")
    source = {"kind": spec.kind.value, "name": spec.name, **file_record(path), "library": "robustbench",
              "library_version": library_version("robustbench"),
              "kept_from_definition": kept or None}
    return ImportedModel(network.eval(), f"{ROBUSTBENCH_PREFIX}{spec.name}", dataset, num_classes, source,
                         own_normalization=([0.0, 0.0, 0.0], [1.0, 1.0, 1.0],
                                            "RobustBench models take [0, 1] inputs and normalise themselves"),
                         own_preprocessing=own_preprocessing)
