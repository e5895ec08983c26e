"""The clean pass: a model's logits on the evaluated test images, computed once and shared by every suite.

One process computes it in memory. Shards split it by batch (batch ``b`` holds positions ``[b*B, (b+1)*B)``,
the single process's batches, so every logit is computed exactly as there) and store each finished batch as
``batch-<b>.safetensors`` (logits float32, labels int64) in a work folder the summarising process reads back: a
killed shard's batches are redone on the rerun, the others are kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from robustkd.errors import RobustKDError
from robustkd.evaluate.finite import nonfinite_count, raise_if_nonfinite
from robustkd.evaluate.predictions import checked_logits
from robustkd.evaluate.sharding import Shard, ShardMode
from robustkd.evaluate.test_images import TestImages, as_inputs
from robustkd.utils.atomic import atomic_path
from robustkd.utils.safetensors_io import save_safetensors


def _batch_file(folder: Path, number: int) -> Path:
    return folder / f"batch-{number:07d}.safetensors"


@torch.no_grad()
def _logits_of_batches(model: nn.Module, images: TestImages, numbers: list[int], batch_size: int, num_classes: int,
                       device: torch.device, what: str) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(batch number, logits, labels)`` of each of ``numbers`` (ascending), decoded by one loader: the positions
    of the batches joined keep the batch boundaries, since only the last batch of all can be short."""
    positions = [p for number in numbers for p in range(number * batch_size, min((number + 1) * batch_size, len(images)))]
    for number, (pixels, labels) in zip(numbers, images.batches(positions, batch_size)):
        logits = checked_logits(model, as_inputs(pixels, device), num_classes)
        raise_if_nonfinite(int(nonfinite_count(logits)), logits.numel(), f"on {len(logits)} {what}")
        yield number, logits, labels.cpu().long()


@torch.no_grad()
def clean_pass(model: nn.Module, images: TestImages, batch_size: int, num_classes: int, device: torch.device,
               shard: Shard, folder: Path, *, need_all: bool = False, what: str = "clean test images"
               ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(N, C) float32 logits and (N,) labels (CPU, position order), or None for a ``--shard`` job that has done
    its batches and does not need the rest (``need_all`` False). Inputs outside [0, 1], wrongly shaped outputs
    and non-finite logits are refused (RobustKDError / NonFiniteOutputError) before anything is stored."""
    model.eval()
    count = math.ceil(len(images) / batch_size)
    if shard.mode is ShardMode.SINGLE:
        parts = [(logits, labels) for _, logits, labels in
                 _logits_of_batches(model, images, list(range(count)), batch_size, num_classes, device, what)]
        return _joined(parts, images)
    if shard.prepares_work or shard.mode is ShardMode.JOB:
        folder.mkdir(parents=True, exist_ok=True)
    shard.wait_for_all()  # the folder exists before any rank writes into it
    numbers = list(range(count))
    finished = {int(m.group(1)) for path in folder.glob("batch-*.safetensors")
                if (m := re.fullmatch(r"batch-(\d+)\.safetensors", path.name))} if folder.is_dir() else set()
    mine = shard.todo(numbers, lambda number: number in finished, f"clean-pass batches of {what}")
    if shard.mode is ShardMode.JOB and need_all:
        mine = [number for number in numbers if number not in finished]
    for number, logits, labels in _logits_of_batches(model, images, mine, batch_size, num_classes, device, what):
        with atomic_path(_batch_file(folder, number)) as tmp:
            save_safetensors({"logits": logits.contiguous(), "labels": labels.contiguous()}, tmp)
    shard.wait_for_all()
    if shard.mode is ShardMode.JOB and not need_all:
        return None
    return _joined([_read_batch(folder, number) for number in numbers], images)


def _read_batch(folder: Path, number: int) -> tuple[torch.Tensor, torch.Tensor]:
    path = _batch_file(folder, number)
    try:
        stored = load_file(str(path))
        return stored["logits"], stored["labels"]
    except FileNotFoundError:
        raise RobustKDError(f"evaluate: {path} is missing; a shard has not finished its clean-pass batches") from None
    except (SafetensorError, KeyError, OSError) as exc:
        raise RobustKDError(f"evaluate: {path} is unreadable ({exc}); delete it and run again") from None


def _joined(parts: list[tuple[torch.Tensor, torch.Tensor]], images: TestImages) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.cat([logits for logits, _ in parts])
    labels = torch.cat([labels for _, labels in parts])
    if logits.shape[0] != len(images) or not torch.equal(labels, images.labels):
        raise RobustKDError("evaluate: the stored clean-pass batches do not match the test images (another selection "
                            "or batch size); delete the .clean-pass folder and run again")  # pragma: no cover
    return logits, labels
