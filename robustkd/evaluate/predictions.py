"""Run a model over a loader once and keep its logits: every logit-based suite reuses them."""

from __future__ import annotations

import torch
from torch import nn

from robustkd.errors import RobustKDError
from robustkd.evaluate.finite import nonfinite_count, raise_if_nonfinite


def checked_logits(model: nn.Module, inputs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``model(inputs)`` as float32 on the CPU; refuses inputs outside [0, 1] and outputs that are not one row of
    ``num_classes`` logits per input (non-finite values are the caller's to count)."""
    if float(inputs.min()) < 0.0 or float(inputs.max()) > 1.0:
        raise RobustKDError(f"evaluate: inputs must lie in [0, 1], got [{float(inputs.min()):.3g}, {float(inputs.max()):.3g}]")
    logits = model(inputs)
    if not isinstance(logits, torch.Tensor):
        raise RobustKDError(f"evaluate: the model returns a {type(logits).__name__}; expected a tensor of logits "
                            f"(one row of {num_classes} per input)")
    if logits.ndim == 2 and logits.shape[0] != inputs.shape[0]:
        raise RobustKDError(f"evaluate: the model returns {logits.shape[0]} rows of logits for a batch of "
                            f"{inputs.shape[0]} inputs; expected one row per input")
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise RobustKDError(f"evaluate: the model outputs {tuple(logits.shape[1:])} per input; the dataset has {num_classes} classes")
    return logits.float().cpu()


@torch.no_grad()
def collect_logits(model: nn.Module, loader, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) float32 logits and (N,) labels on the CPU; refuses inputs outside [0, 1], wrong output sizes and
    non-finite logits (NonFiniteOutputError)."""
    model.eval()
    all_logits, all_labels = [], []
    for inputs, labels in loader.epoch(0):
        all_logits.append(checked_logits(model, inputs, num_classes))
        all_labels.append(labels.cpu())
    logits = torch.cat(all_logits)
    raise_if_nonfinite(int(nonfinite_count(logits)), logits.numel(), f"on {len(logits)} clean test images")
    return logits, torch.cat(all_labels)
