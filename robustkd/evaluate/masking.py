"""Checks that flag gradient masking (Athalye et al. 2018; Croce & Hein 2020), on one batch.

A flagged model's white-box robust accuracy is not trustworthy: it outputs probabilities instead of
logits (saturated softmax gradients), its forward pass is randomised, or its input gradients vanish.
The suite adds the attack-level check (black-box Square beating white-box PGD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def forward_checks(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float | bool]:
    """``outputs_probabilities``: rows are non-negative and sum to 1 (within 1e-3); ``randomised_forward``:
    two passes on the same input differ; ``gradient_zero_fraction``: inputs whose cross-entropy gradient
    is exactly zero."""
    model.eval()
    with torch.no_grad():
        first = model(x).float()
        second = model(x).float()
    probabilities = bool((first >= 0).all() and torch.allclose(first.sum(1), torch.ones(len(x), device=x.device),
                                                              atol=1e-3))
    inputs = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(inputs).float(), y, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, inputs)
    zero = gradient.flatten(1).abs().amax(1) == 0
    return {"outputs_probabilities": probabilities, "randomised_forward": not torch.equal(first, second),
            "gradient_zero_fraction": float(zero.double().mean())}
