"""APGD-DLR alone (Croce & Hein 2020), from pyautoattack: a fast, step-size-free check at the suite's Linf eps.

The DLR loss is invariant to shifting and rescaling the logits, so it does not stall where cross-entropy
saturates; one restart of 100 iterations (AutoAttack's own APGD settings) costs about five PGD-20 runs and
is a quick second opinion next to PGD before paying for the full AutoAttack. Needs at least 3 classes.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from robustkd.evaluate.attacks.autoattack import run_pyautoattack
from robustkd.evaluate.attacks.base import Attack, BoundedAttack, ThreatModel
from robustkd.evaluate.attacks.registry import linf_eps, register_attack

ITERATIONS = 100
RESTARTS = 1


def apgd_dlr(eps: float, seed: int) -> Attack:
    def configure(adversary: Any) -> None:
        adversary.apgd.n_iter = ITERATIONS
        adversary.apgd.n_restarts = RESTARTS

    def run(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return run_pyautoattack(model, x, y, eps=eps, norm="linf", seed=seed, version="custom", attacks=["apgd-dlr"],
                                configure=configure)

    return BoundedAttack("apgd_dlr", ThreatModel("linf", eps), run, "pyautoattack",
                         {"eps": eps, "iterations": ITERATIONS, "restarts": RESTARTS, "loss": "dlr", "seed": seed})


@register_attack("apgd_dlr")
def _apgd_dlr(params: Any) -> list[Attack]:
    return [apgd_dlr(linf_eps(params), params.seed)]
