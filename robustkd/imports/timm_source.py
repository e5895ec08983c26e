"""timm networks: ``robustkd import timm:NAME[.TAG] --weights FILE`` (or timm's weights from the local cache).

The network is ``timm.create_model(NAME, pretrained=False, num_classes=N, **kwargs)``; the weights come from
``--weights`` (read without unpickling code) or, without it, from the file timm would download if it is
already in the local cache (the Hugging Face hub cache, ``$HF_HUB_CACHE``, or torch's hub folder): robustkd
never downloads. On ImageNet, timm's own ``pretrained_cfg`` supplies the preprocessing, resolved as timm's
``validate.py`` resolves it (``resolve_data_config(model=..., use_test_size=True)``: the test-time input size
and crop fraction where the config has them), mean and std included.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
from robustkd.models.foreign import TIMM_PREFIX, quiet_import, timm_network


def cached_weights(pretrained_cfg: dict[str, Any]) -> tuple[Path | None, list[str]]:
    """The cached file of timm's pretrained weights, if any, and where it looked (no network)."""
    looked: list[str] = []
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        try:
            import huggingface_hub
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - timm requires it
            huggingface_hub = None
        if huggingface_hub is not None:
            cache_dir = os.environ.get("HF_HUB_CACHE") or huggingface_hub.constants.HF_HUB_CACHE
            names = [pretrained_cfg.get("hf_hub_filename")] if pretrained_cfg.get("hf_hub_filename") else \
                ["model.safetensors", "pytorch_model.bin"]
            for name in names:
                looked.append(f"{hub_id}/{name} in {cache_dir}")
                found = try_to_load_from_cache(hub_id, name, cache_dir=cache_dir)
                if isinstance(found, str) and Path(found).is_file():
                    return Path(found), looked
    url = pretrained_cfg.get("url")
    if url:
        import torch.hub

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
        looked.append(str(path))
        if path.is_file():
            return path, looked
    if pretrained_cfg.get("file"):
        path = Path(pretrained_cfg["file"])
        looked.append(str(path))
        if path.is_file():
            return path, looked
    return None, looked


def timm_preprocessing(network: Any, name: str) -> tuple[EvalPreprocessing, tuple[list[float], list[float]]]:
    """timm's evaluation transform for ``network`` (as timm's validate.py resolves it) and its mean and std."""
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=network, use_test_size=True)
    _, height, width = config["input_size"]
    if height != width:
        raise RobustKDError(f"timm:{name}: input size {height}x{width} is not square; robustkd's ImageNet loader "
                            "crops squares")
    mode = config.get("crop_mode") or "center"
    if mode not in ("center", "squash"):
        raise RobustKDError(f"timm:{name}: crop mode {mode!r} is not supported (center and squash are)")
    preprocessing = EvalPreprocessing.from_crop_pct(int(height), float(config["crop_pct"]),
                                                    str(config["interpolation"]), mode)
    return preprocessing, (list(config["mean"]), list(config["std"]))


@register_importer(SourceKind.TIMM)
def import_timm(spec: SourceSpec, options: ImportOptions) -> ImportedModel:
    timm = quiet_import("timm")

    refuse_options(spec.kind, options, "architecture", "model_dir", "torchvision_weights")
    name = spec.name
    dataset, num_classes = resolve_dataset(spec, options, "imagenet")
    kwargs = json_kwargs(spec, options)
    network = timm_network(name, num_classes, kwargs)
    pretrained_cfg = dict(getattr(network, "pretrained_cfg", {}) or {})
    if options.weights is not None:
        path = Path(options.weights)
        if not path.is_file():
            raise RobustKDError(f"import timm:{name}: no such weights file: {path}")
        origin = "file"
    else:
        path, looked = cached_weights(pretrained_cfg)
        if path is None:
            raise RobustKDError(f"import timm:{name}: no --weights FILE, and timm's pretrained weights are not in the "
                                f"local cache (looked for {'; '.join(looked) or 'nothing: no pretrained source'}); "
                                "robustkd never downloads")
        origin = "timm cache"
    state = read_state_dict(path)
    fit_state_dict(network, state, what=f"timm:{name} with {num_classes} classes", where=path,
                   num_classes=num_classes)
    architecture, _, tag = name.partition(".")
    own_normalization = own_preprocessing = None
    if dataset == "imagenet":
        preprocessing, (mean, std) = timm_preprocessing(network, name)
        where = f"timm pretrained_cfg of {pretrained_cfg.get('architecture', architecture)}" + \
            (f".{pretrained_cfg['tag']}" if pretrained_cfg.get("tag") else "") + " (test size)"
        own_normalization = (mean, std, where)
        own_preprocessing = (preprocessing, where)
    options_record: dict[str, Any] = {"kwargs": kwargs}
    if tag:
        options_record["pretrained_tag"] = tag
    source = {"kind": spec.kind.value, "name": name, **file_record(path), "weights_from": origin,
              "library": "timm", "library_version": timm.__version__,
              "pretrained_cfg": {key: pretrained_cfg.get(key) for key in ("architecture", "tag", "hf_hub_id")
                                 if pretrained_cfg.get(key)}}
    return ImportedModel(network.eval(), f"{TIMM_PREFIX}{architecture}", dataset, num_classes, source,
                         architecture_options=options_record, own_normalization=own_normalization,
                         own_preprocessing=own_preprocessing)
