"""Non-finite model outputs are an error, never a number.

A model whose logits hold NaN or inf (a diverged checkpoint, a broken conversion) would otherwise be scored:
``argmax`` of a NaN row is an arbitrary class, and every metric built on it looks like a result. Every place
where robustkd runs a model under evaluation counts the non-finite logits on the device (no host sync of
its own) and raises :class:`NonFiniteOutputError` before anything is written.
"""

from __future__ import annotations

import torch

from robustkd.errors import RobustKDError


class NonFiniteOutputError(RobustKDError):
    """The model under evaluation produced NaN or infinite logits."""


def nonfinite_count(logits: torch.Tensor) -> torch.Tensor:
    """The number of NaN or infinite entries of ``logits``, as a 0-dim int64 tensor on its device."""
    return (~torch.isfinite(logits.detach())).sum()


def raise_if_nonfinite(bad: int, total: int, where: str) -> None:
    """Raise NonFiniteOutputError if ``bad`` (a count of non-finite logits out of ``total``) is positive."""
    if bad:
        raise NonFiniteOutputError(f"the model output {bad} non-finite logits (NaN or inf) of {total} {where}; "
                                   f"a model that outputs NaN or inf is not evaluated")
