"""FGSM, PGD-Linf, PGD-L2 and Carlini-Wagner L2, from torchattacks."""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from robustkd.evaluate.attacks.base import Attack, BoundedAttack, MinimumNormAttack, ThreatModel
from robustkd.evaluate.attacks.registry import linf_eps, linf_step, register_attack


def _torchattacks(attack_cls_name: str, **kwargs: Any) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def run(module: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        import torchattacks

        attack = getattr(torchattacks, attack_cls_name)(module, **kwargs)
        return attack(x, y)
    return run


def fgsm(eps: float) -> Attack:
    return BoundedAttack("fgsm", ThreatModel("linf", eps), _torchattacks("FGSM", eps=eps), "torchattacks",
                         {"eps": eps})


def pgd_linf(eps: float, step: float, steps: int, random_start: bool, name: str = "pgd_linf") -> Attack:
    return BoundedAttack(name, ThreatModel("linf", eps),
                         _torchattacks("PGD", eps=eps, alpha=step, steps=steps, random_start=random_start),
                         "torchattacks", {"eps": eps, "step": step, "steps": steps, "random_start": random_start})


def pgd_l2(eps: float, step: float, steps: int, random_start: bool) -> Attack:
    return BoundedAttack("pgd_l2", ThreatModel("l2", eps),
                         _torchattacks("PGDL2", eps=eps, alpha=step, steps=steps, random_start=random_start),
                         "torchattacks", {"eps": eps, "step": step, "steps": steps, "random_start": random_start})


def cw_l2(eps: float, c: float, kappa: float, steps: int, lr: float) -> Attack:
    """Carlini-Wagner L2 finds a small perturbation without a budget; it counts at ``eps``: an example
    is robust when the attack fails or needs an L2 norm above ``eps``."""
    return MinimumNormAttack("cw_l2", ThreatModel("l2", eps), _torchattacks("CW", c=c, kappa=kappa, steps=steps, lr=lr),
                             "torchattacks", {"eps_counted": eps, "c": c, "kappa": kappa, "steps": steps, "lr": lr})


@register_attack("fgsm")
def _fgsm(params: Any) -> list[Attack]:
    return [fgsm(linf_eps(params))]


@register_attack("pgd_linf")
def _pgd_linf(params: Any) -> list[Attack]:
    return [pgd_linf(linf_eps(params), linf_step(params), params.pgd_steps, params.random_start)]


@register_attack("pgd_l2")
def _pgd_l2(params: Any) -> list[Attack]:
    return [pgd_l2(params.l2_eps, params.l2_step, params.pgd_steps, params.random_start)]


@register_attack("cw_l2")
def _cw_l2(params: Any) -> list[Attack]:
    return [cw_l2(params.l2_eps, params.cw_c, params.cw_kappa, params.cw_steps, params.cw_lr)]
