"""Where a temperature is fitted: never on images the model trained on.

``crossfit`` (the default of the calibration suites): the evaluated test images are split into two
class-stratified folds (within each class, its images in test order alternate between fold 0 and fold 1); the
temperature applied to an image is the one fitted on the other fold, so no image's scaled probabilities depend
on its own label, and every image is scored. It works for any model and any dataset, streaming or not.

``train_holdout``: the last ``holdout`` images of the training split, only for a model whose sidecar says it
drew its training images from fewer first images (``train_images``, set by ``robustkd train --holdout N``);
otherwise refused before it is fitted. ``folder``: a user-named folder of held-out images (``fit_folder``). Both
are read by robustkd/evaluate/held_out_logits.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustkd.errors import RobustKDError
from robustkd.evaluate.calibration import fit_temperature

FITS = ("crossfit", "train_holdout", "folder")


def crossfit_folds(labels: torch.Tensor) -> torch.Tensor:
    """Fold 0 or 1 (int64, (N,)) of each position: the k-th image of its class (in test order) goes to fold k % 2."""
    labels = labels.cpu().long()
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    first_of_class = torch.searchsorted(sorted_labels, sorted_labels, side="left")
    rank_in_class = torch.arange(len(labels), device=labels.device) - first_of_class
    folds = torch.empty_like(labels)
    folds[order] = rank_in_class % 2
    return folds


@dataclass(frozen=True)
class CrossFit:
    """``per_image``: the temperature applied to each position (float64, (N,)); ``fold_temperatures``: the
    temperature fitted on fold 0 (applied to fold 1) and on fold 1 (applied to fold 0)."""

    per_image: torch.Tensor
    fold_temperatures: tuple[float, float]
    fold_sizes: tuple[int, int]


def crossfit_temperatures(logits: torch.Tensor, labels: torch.Tensor) -> CrossFit:
    """Two-fold cross-fitted temperatures of clean ``logits`` (N, C) with ``labels`` (N,); N >= 2."""
    if len(labels) < 2:
        raise RobustKDError(f"calibration: a cross-fitted temperature needs at least 2 test images, got {len(labels)}")
    folds = crossfit_folds(labels)
    fitted = tuple(fit_temperature(logits[folds == fold], labels[folds == fold]) for fold in (0, 1))
    per_image = torch.where(folds == 0, torch.tensor(fitted[1], dtype=torch.float64, device=folds.device),
                            torch.tensor(fitted[0], dtype=torch.float64, device=folds.device))
    sizes = (int((folds == 0).sum()), int((folds == 1).sum()))
    return CrossFit(per_image, (float(fitted[0]), float(fitted[1])), sizes)
