"""The sidecar of a trained checkpoint: the one place that says what ``model.json`` records about training.

``robustkd train`` (a model trained from labels) and ``robustkd distill`` (every student, alone or in a
cohort) both build their checkpoint metadata here, so the two cannot drift apart. The checkpoint writer
adds ``epoch``, ``metrics``, the weights' SHA-256 and the normalisation (robustkd/checkpoint/io.py).
"""

from __future__ import annotations

from typing import Any

from robustkd.data import DatasetInfo
from robustkd.models import canonical_model_name
from robustkd.train.config import TrainConfig


def training_sidecar(config: TrainConfig, info: DatasetInfo, *, data_source: str, n_train: int, train_images: int,
                     split_images: int, task_description: dict[str, Any], kind: str,
                     **extra: Any) -> dict[str, Any]:
    """The checkpoint metadata of a run trained by ``config`` on ``info``'s dataset.

    ``n_train``: training images per epoch over all ranks (steps x batch x world size); ``train_images``: the
    images the epochs draw from, the first of the training split (the last ``holdout`` are never among them);
    ``split_images``: the training split's size, so the last ``split_images - train_images`` were never seen;
    ``task_description``: the task's ``describe()`` (a distillation task's method, options and teacher);
    ``kind``: ``train`` or ``distill``; ``extra``: further keys (``init_from``, ``cohort``), added last.
    """
    return {
        "architecture": canonical_model_name(config.model),
        "num_classes": info.num_classes,
        "dataset": config.dataset,
        "data_source": data_source,
        "n_train": n_train,
        "train_images": train_images,
        "train_split_images": split_images,
        "holdout": config.holdout,
        "recipe": config.recipe,
        "hyperparameters": config.to_dict(),
        "seed": config.seed,
        "noise_sd": config.noise_sd,
        **task_description,
        "kind": kind,
        **extra,
    }
