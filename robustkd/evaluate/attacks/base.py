"""The attack contract: an attack's kind is its type, and the final ``__call__`` holds the invariants.

Every attack maps (model, x in [0, 1], labels) to adversarial inputs for one batch, through a thin call
into the field's library (``perturb``). ``Attack.__call__`` checks what every attack must satisfy - the
output has the input's shape, device and range, and a bounded attack stays inside its budget - so a
library change or a bug is an error, never a number. What a result means follows from the type:

- ``BoundedAttack``: searches inside the eps-ball; robust = correct on the clean and the attacked input.
- ``MinimumNormAttack``: searches for the smallest perturbation, without a budget; robust at eps = correct
  and (the attack failed or needed more than eps). With eps = inf it only reports median norms.
- ``DiagnosticAttack``: a bounded attack run on the masking-check subset to cross-check another attack;
  it gives no headline robust accuracy.

``CrossCheck`` declares what an attack is compared with (on the same images) and when that is a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import Tensor, nn

from robustkd.errors import RobustKDError

BUDGET_TOLERANCE = 1e-5  # float32 rounding of x + delta, in [0, 1] pixel units


@dataclass(frozen=True)
class ThreatModel:
    """``norm`` is "linf" or "l2"; ``eps`` in [0, 1] pixel units (inf: no budget)."""

    norm: str
    eps: float


@dataclass(frozen=True)
class CrossCheck:
    """Compare robust accuracy with the ``reference`` attack on the same images: ``difference`` = reference
    minus this attack, in percentage points. A warning when it exceeds ``tolerance`` (``two_sided``: when its
    absolute value does). ``gap_metric`` records the difference; ``recorded`` names the summary keys of the
    two accuracies (this, reference) on the compared images."""

    reference: str
    tolerance: float
    two_sided: bool
    warning: str
    gap_metric: str | None = None
    recorded: tuple[str, str] | None = None

    def fails(self, difference: float) -> bool:
        return (abs(difference) if self.two_sided else difference) > self.tolerance


@dataclass(frozen=True)
class Attack:
    """One configured attack. ``perturb``: the library call; ``constants``: its settings, recorded with the
    result; ``name``: the key of its rows and metrics (unique within a suite run)."""

    name: str
    threat: ThreatModel
    run: Callable[[nn.Module, Tensor, Tensor], Tensor]
    library: str
    constants: dict
    cross_check: CrossCheck | None = field(default=None, kw_only=True)

    kind: ClassVar[str] = "attack"
    headline: ClassVar[bool] = True  # reports robust accuracy on every evaluated image

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial inputs for ``x`` (N, C, H, W) in [0, 1] on the model's device; checked, detached."""
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise RobustKDError(f"{self.name}: clean inputs must lie in [0, 1]")
        x_adv = self.run(model, x, y).detach()
        if x_adv.shape != x.shape or x_adv.device != x.device:
            raise RobustKDError(f"{self.name}: the attack returned {tuple(x_adv.shape)} on {x_adv.device} for "
                                f"inputs {tuple(x.shape)} on {x.device}")
        if float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
            raise RobustKDError(f"{self.name}: adversarial inputs left [0, 1]")
        self._check_budget(perturbation_norm(x_adv, x, self.threat.norm))
        return x_adv

    def _check_budget(self, norms: Tensor) -> None:
        """Bounded kinds refuse a perturbation beyond eps."""

    def robust(self, correct: Tensor, fooled: Tensor, norms: Tensor) -> Tensor:
        """Per image: robust at ``threat.eps`` (bool)."""
        return correct & ~fooled


class BoundedAttack(Attack):
    kind = "bounded"

    def _check_budget(self, norms: Tensor) -> None:
        if float(norms.max()) > self.threat.eps + BUDGET_TOLERANCE:
            raise RobustKDError(f"{self.name}: perturbation {float(norms.max()):.6f} exceeds eps {self.threat.eps:.6f}")


class MinimumNormAttack(Attack):
    kind = "minimum_norm"

    @property
    def headline(self) -> bool:  # type: ignore[override]
        return math.isfinite(self.threat.eps)

    def robust(self, correct: Tensor, fooled: Tensor, norms: Tensor) -> Tensor:
        return correct & (~fooled | (norms > self.threat.eps))


class DiagnosticAttack(BoundedAttack):
    kind = "diagnostic"
    headline = False


def perturbation_norm(x_adv: Tensor, x: Tensor, norm: str) -> Tensor:
    """Per-image Linf or L2 norm of ``x_adv - x`` (float64, on the inputs' device)."""
    delta = (x_adv - x).flatten(1).double()
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


def shown_norms(attack: Attack, correct: Tensor, fooled: Tensor, norms: Tensor) -> Tensor:
    """The norms recorded per image: 0 for misclassified inputs; for minimum-norm attacks, inf where they
    failed."""
    if isinstance(attack, MinimumNormAttack):
        norms = torch.where(fooled, norms, torch.full_like(norms, math.inf))
    return torch.where(correct, norms, torch.zeros_like(norms))
