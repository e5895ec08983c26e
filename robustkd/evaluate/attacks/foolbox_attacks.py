"""An independent PGD-Linf (to cross-check torchattacks') and DeepFool-L2, from foolbox."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from robustkd.evaluate.attacks.base import Attack, BoundedAttack, CrossCheck, MinimumNormAttack, ThreatModel
from robustkd.evaluate.attacks.registry import linf_eps, linf_step, register_attack

AGREEMENT_POINTS = 1.0  # two PGD implementations with the same settings should agree within this


def foolbox_pgd_linf(eps: float, step: float, steps: int, random_start: bool) -> Attack:
    def run(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        import foolbox as fb

        attack = fb.attacks.LinfPGD(abs_stepsize=step, steps=steps, random_start=random_start)
        _, clipped, _ = attack(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=eps)
        return clipped

    check = CrossCheck("pgd_linf", AGREEMENT_POINTS, two_sided=True, gap_metric="foolbox_pgd_gap",
                       warning="torchattacks PGD and foolbox PGD disagree by {gap:+.2f} points (> {tolerance})")
    return BoundedAttack("foolbox_pgd_linf", ThreatModel("linf", eps), run, "foolbox",
                         {"eps": eps, "step": step, "steps": steps, "random_start": random_start}, cross_check=check)


def deepfool_l2(steps: int, candidates: int, overshoot: float) -> Attack:
    """Minimal L2 perturbations (no budget); the suite reports their median over correctly classified inputs."""
    def run(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        import foolbox as fb

        attack = fb.attacks.L2DeepFoolAttack(steps=steps, candidates=candidates, overshoot=overshoot)
        _, clipped, _ = attack(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=None)
        return clipped

    return MinimumNormAttack("deepfool_l2", ThreatModel("l2", math.inf), run, "foolbox",
                             {"steps": steps, "candidates": candidates, "overshoot": overshoot})


@register_attack("foolbox_pgd_linf")
def _foolbox_pgd_linf(params: Any) -> list[Attack]:
    return [foolbox_pgd_linf(linf_eps(params), linf_step(params), params.pgd_steps, params.random_start)]


@register_attack("deepfool_l2")
def _deepfool_l2(params: Any) -> list[Attack]:
    return [deepfool_l2(params.deepfool_steps, params.deepfool_candidates, params.deepfool_overshoot)]
