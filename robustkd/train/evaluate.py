"""Clean top-1 / top-5 accuracy and mean cross-entropy of a model over a loader (summed across ranks)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Returns ``{'top1', 'top5', 'loss', 'n'}``; top-k in percent. ``loader.epoch()`` yields [0, 1] inputs."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # correct1, correct5, loss_sum, count
    for inputs, labels in loader.epoch(0):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(inputs)
        logits = logits.float()
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        hits = topk.eq(labels[:, None])
        totals += torch.stack([
            hits[:, 0].sum(), hits.any(dim=1).sum(), F.cross_entropy(logits, labels, reduction="sum"),
            torch.tensor(len(labels), device=device),
        ]).double()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    model.train(was_training)
    correct1, correct5, loss_sum, count = totals.tolist()
    count = max(count, 1.0)
    return {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count, "loss": loss_sum / count, "n": int(count)}
