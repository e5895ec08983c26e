"""The attacks of the adversarial suite, each a thin call into the field's library.

Every attack maps (model, x in [0, 1], labels) to adversarial inputs in [0, 1] for one batch; the suite
owns batching, seeding, resumption and the robust/not-robust decision. Libraries: torchattacks (FGSM,
PGD-Linf, PGD-L2, CW-L2), pyautoattack (the reference AutoAttack that robustbench depends on; never
torchattacks' AutoAttack wrapper, whose targeted attacks use n_classes - 1 targets) and foolbox (an
independent PGD-Linf, DeepFool-L2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from robustkd.errors import RobustKDError


@dataclass(frozen=True)
class ThreatModel:
    """``norm`` is "linf" or "l2"; ``eps`` in [0, 1] pixel units; ``bounded`` False for minimum-norm attacks."""

    norm: str
    eps: float
    bounded: bool = True


@dataclass(frozen=True)
class Attack:
    name: str
    threat: ThreatModel
    run: Callable[[nn.Module, Tensor, Tensor], Tensor]
    library: str
    constants: dict


def _torchattacks(attack_cls_name: str, **kwargs) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def run(module: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        import torchattacks

        attack = getattr(torchattacks, attack_cls_name)(module, **kwargs)
        return attack(x, y)
    return run


def fgsm(eps: float) -> Attack:
    return Attack("fgsm", ThreatModel("linf", eps), _torchattacks("FGSM", eps=eps), "torchattacks",
                  {"eps": eps})


def pgd_linf(eps: float, step: float, steps: int, random_start: bool, name: str = "pgd_linf") -> Attack:
    return Attack(name, ThreatModel("linf", eps),
                  _torchattacks("PGD", eps=eps, alpha=step, steps=steps, random_start=random_start),
                  "torchattacks", {"eps": eps, "step": step, "steps": steps, "random_start": random_start})


def pgd_l2(eps: float, step: float, steps: int, random_start: bool) -> Attack:
    return Attack("pgd_l2", ThreatModel("l2", eps),
                  _torchattacks("PGDL2", eps=eps, alpha=step, steps=steps, random_start=random_start),
                  "torchattacks", {"eps": eps, "step": step, "steps": steps, "random_start": random_start})


def cw_l2(eps: float, c: float, kappa: float, steps: int, lr: float) -> Attack:
    """Carlini-Wagner L2 finds a small perturbation without a budget; it counts at ``eps``: an example
    is robust when the attack fails or needs an L2 norm above ``eps``."""
    return Attack("cw_l2", ThreatModel("l2", eps, bounded=False),
                  _torchattacks("CW", c=c, kappa=kappa, steps=steps, lr=lr), "torchattacks",
                  {"eps_counted": eps, "c": c, "kappa": kappa, "steps": steps, "lr": lr})


def autoattack(eps: float, version: str, norm: str, seed: int) -> Attack:
    """The reference protocol: standard = APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000
    queries); plus and rand as defined by the reference implementation."""
    if version not in ("standard", "plus", "rand"):
        raise RobustKDError(f"autoattack_versions: {version!r}; expected standard, plus or rand")

    def run(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        from pyautoattack import AutoAttack

        device = next(model.parameters()).device
        adversary = AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version=version,
                               device=device, seed=seed)
        adversary.verbose = False
        logging.getLogger("auto-attack").setLevel(logging.WARNING)
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv.to(x.device)

    return Attack(f"autoattack_{version}", ThreatModel(norm, eps), run, "pyautoattack",
                  {"eps": eps, "version": version, "norm": norm, "seed": seed,
                   "protocol": {"standard": "apgd-ce, apgd-t (9 targets), fab-t (9 targets), square (5000 queries)",
                                "plus": "apgd-ce, apgd-dlr, fab, square, apgd-t, fab-t (5 restarts, 9 targets)",
                                "rand": "apgd-ce, apgd-dlr with 20 EOT iterations"}[version]})


def square(eps: float, queries: int, seed: int) -> Attack:
    """Square alone (black box), for the gradient-masking check."""
    def run(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        from pyautoattack import AutoAttack

        device = next(model.parameters()).device
        adversary = AutoAttack(model, norm="Linf", eps=eps, version="custom", attacks=["square"], device=device,
                               seed=seed)
        adversary.verbose = False
        adversary.square.n_queries = queries
        logging.getLogger("auto-attack").setLevel(logging.WARNING)
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv.to(x.device)

    return Attack("square", ThreatModel("linf", eps), run, "pyautoattack", {"eps": eps, "queries": queries})


def foolbox_pgd_linf(eps: float, step: float, steps: int, random_start: bool) -> Attack:
    def run(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        import foolbox as fb

        attack = fb.attacks.LinfPGD(abs_stepsize=step, steps=steps, random_start=random_start)
        _, clipped, _ = attack(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=eps)
        return clipped

    return Attack("foolbox_pgd_linf", ThreatModel("linf", eps), run, "foolbox",
                  {"eps": eps, "step": step, "steps": steps, "random_start": random_start})


def deepfool_l2(steps: int, candidates: int, overshoot: float) -> Attack:
    """Minimal L2 perturbations (no budget); the suite reports their median over correctly classified inputs."""
    def run(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        import foolbox as fb

        attack = fb.attacks.L2DeepFoolAttack(steps=steps, candidates=candidates, overshoot=overshoot)
        _, clipped, _ = attack(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=None)
        return clipped

    return Attack("deepfool_l2", ThreatModel("l2", float("inf"), bounded=False), run, "foolbox",
                  {"steps": steps, "candidates": candidates, "overshoot": overshoot})


def perturbation_norm(x_adv: Tensor, x: Tensor, norm: str) -> Tensor:
    delta = (x_adv - x).flatten(1).double()
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
