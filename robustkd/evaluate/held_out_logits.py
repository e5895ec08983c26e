"""Logits of images a model never trained on, for fitting a temperature outside the evaluated test images.

Two sources, named by the calibration suites' ``temperature_fit``:

- ``train_holdout``: the last ``holdout`` images of the training split. Accepted only for a model whose sidecar
  says its epochs drew from fewer first images (``train_images`` of ``train_split_images``; ``robustkd train
  --holdout N`` makes the last N unseen); any other model is refused before work starts.
- ``folder``: a user-named folder in ImageFolder layout (one sub-folder per class) that the user vouches the model
  never trained on, e.g. a split kept apart from training. Its class folders must be the test set's classes, in
  the same order (ImageNet's wnids, CIFAR-100's class names); its images are prepared as the test images are
  (the model's own resize and crop on ImageNet, a centre crop at the test images' size otherwise).

``check_held_out`` runs from the suites' ``check_model`` (before any suite runs); ``held_out_logits`` returns
(N, C) float32 logits and (N,) labels on the CPU with a description for the result's protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision import datasets

from robustkd.data.imagenet import EvalPreprocessing
from robustkd.data.loader import TensorBatchLoader
from robustkd.data.sources import load_image_dataset
from robustkd.errors import RobustKDError
from robustkd.evaluate.context import SuiteContext
from robustkd.evaluate.finite import nonfinite_count, raise_if_nonfinite
from robustkd.evaluate.predictions import checked_logits, collect_logits
from robustkd.evaluate.test_images import FolderImages, as_inputs


def check_held_out(params: Any, model_info: dict[str, Any]) -> None:
    """Refuse, before any work, a held-out source the model or the files cannot honour (RobustKDError)."""
    if params.temperature_fit == "train_holdout":
        seen, split = model_info.get("train_images"), model_info.get("train_split_images")
        if seen is None or split is None or split - seen < params.holdout:
            trained = "an unknown number of" if seen is None or split is None else f"the first {seen} of {split}"
            raise RobustKDError(f"calibration: temperature_fit = \"train_holdout\" fits on the last {params.holdout} "
                                f"training images, but the model trained on {trained} images; use temperature_fit = "
                                f"\"crossfit\" (the default) or a model trained with --holdout {params.holdout}")
    elif params.temperature_fit == "folder":
        folder = _image_folder(params.fit_folder)
        if len(folder.classes) != model_info.get("num_classes"):
            raise RobustKDError(f"calibration: fit_folder {params.fit_folder} has {len(folder.classes)} class folders; "
                                f"the model has {model_info.get('num_classes')} classes")


def held_out_logits(ctx: SuiteContext, params: Any) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The held-out images' logits and labels (CPU) and a description of them."""
    check_held_out(params, ctx.model_info)
    if params.temperature_fit == "train_holdout":
        return (*_training_tail_logits(ctx, params), f"last {params.holdout} training images, not trained on")
    return (*_folder_logits(ctx, params), f"the images of fit_folder {params.fit_folder} (named held out by the user)")


def _training_tail_logits(ctx: SuiteContext, params: Any) -> tuple[torch.Tensor, torch.Tensor]:
    train = load_image_dataset(ctx.dataset, "train", ctx.data_dir, allow_embedded=ctx.allow_embedded,
                               announce=lambda _: None)
    expected = ctx.model_info["train_split_images"]
    if len(train) != expected:
        raise RobustKDError(f"calibration: the training split in {ctx.data_dir} has {len(train)} images; the model's "
                            f"sidecar says {expected}: its held-out images cannot be located")
    held = train.rows(len(train) - params.holdout, len(train), f"last {params.holdout}")
    return collect_logits(ctx.model, TensorBatchLoader(held, params.batch_size, ctx.device, train=False),
                          ctx.num_classes)


@torch.no_grad()
def _folder_logits(ctx: SuiteContext, params: Any) -> tuple[torch.Tensor, torch.Tensor]:
    folder = _image_folder(params.fit_folder)
    if tuple(folder.classes) != tuple(ctx.images.classes):
        raise RobustKDError(f"calibration: the class folders of fit_folder {params.fit_folder} are not the test set's "
                            f"classes in its order (first: {folder.classes[0]!r}, expected {ctx.images.classes[0]!r})")
    if ctx.dataset == "imagenet":
        preprocessing = EvalPreprocessing.from_record(ctx.model_info.get("preprocessing"))
    else:
        preprocessing = EvalPreprocessing(input_size=ctx.images.image_size, resize=None, crop_pct=None,
                                          crop_mode="crop")
    images = FolderImages(folder, preprocessing, None, num_classes=ctx.num_classes)
    ctx.model.eval()
    logits, labels = [], []
    for batch, batch_labels in images.batches(range(len(images)), params.batch_size):
        logits.append(checked_logits(ctx.model, as_inputs(batch, ctx.device), ctx.num_classes))
        labels.append(batch_labels.cpu())
    all_logits = torch.cat(logits)
    raise_if_nonfinite(int(nonfinite_count(all_logits)), all_logits.numel(), f"on {len(all_logits)} held-out images")
    return all_logits, torch.cat(labels)


def _image_folder(path: str) -> datasets.ImageFolder:
    if not path or not Path(path).is_dir():
        raise RobustKDError(f"calibration: temperature_fit = \"folder\" needs fit_folder, a folder of class "
                            f"sub-folders; got {path!r}")
    try:
        return datasets.ImageFolder(path)
    except (FileNotFoundError, RuntimeError) as exc:
        raise RobustKDError(f"calibration: fit_folder {path}: {str(exc).splitlines()[0]}") from None
