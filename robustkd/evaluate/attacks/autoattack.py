"""AutoAttack and Square alone, from pyautoattack (the reference implementation that robustbench uses;
never torchattacks' AutoAttack wrapper, whose targeted attacks use n_classes - 1 targets)."""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor, nn

from robustkd.errors import RobustKDError
from robustkd.evaluate.attacks.base import Attack, BoundedAttack, CrossCheck, DiagnosticAttack, ThreatModel
from robustkd.evaluate.attacks.registry import linf_eps, register_attack

PROTOCOLS = {"standard": "apgd-ce, apgd-t (9 targets), fab-t (9 targets), square (5000 queries)",
             "plus": "apgd-ce, apgd-dlr, fab, square, apgd-t, fab-t (5 restarts, 9 targets)",
             "rand": "apgd-ce, apgd-dlr with 20 EOT iterations"}


def run_pyautoattack(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str, seed: int, version: str,
                     attacks: list[str] | None = None, configure: Any = None) -> Tensor:
    """``AutoAttack(...).run_standard_evaluation`` on one batch, quietly; ``configure(adversary)`` may set
    the sub-attacks' settings of a custom version."""
    from pyautoattack import AutoAttack

    device = next(model.parameters()).device
    extra = {"attacks": attacks} if attacks is not None else {}
    adversary = AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version=version, device=device,
                           seed=seed, **extra)
    adversary.verbose = False
    if configure is not None:
        configure(adversary)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(x))
    return x_adv.to(x.device)


def autoattack(eps: float, version: str, norm: str, seed: int) -> Attack:
    """The reference protocol: standard = APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000
    queries); plus and rand as defined by the reference implementation."""
    if version not in PROTOCOLS:
        raise RobustKDError(f"autoattack_versions: {version!r}; expected standard, plus or rand")

    def run(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return run_pyautoattack(model, x, y, eps=eps, norm=norm, seed=seed, version=version)

    return BoundedAttack(f"autoattack_{version}", ThreatModel(norm, eps), run, "pyautoattack",
                         {"eps": eps, "version": version, "norm": norm, "seed": seed, "protocol": PROTOCOLS[version]})


def square(eps: float, queries: int, seed: int) -> Attack:
    """Square alone (black box) on the masking-check subset: if it finds more adversarial examples than
    white-box PGD, PGD's gradients are unreliable (gradient masking)."""
    def configure(adversary: Any) -> None:
        adversary.square.n_queries = queries

    def run(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return run_pyautoattack(model, x, y, eps=eps, norm="linf", seed=seed, version="custom", attacks=["square"],
                                configure=configure)

    check = CrossCheck("pgd_linf", 0.0, two_sided=False,
                       warning="black-box Square finds more adversarial examples than white-box PGD",
                       recorded=("square_robust_acc_subset", "pgd_robust_acc_subset"))
    return DiagnosticAttack("square", ThreatModel("linf", eps), run, "pyautoattack",
                            {"eps": eps, "queries": queries}, cross_check=check)


@register_attack("autoattack")
def _autoattack(params: Any) -> list[Attack]:
    return [autoattack(linf_eps(params), version, "linf", params.seed) for version in params.autoattack_versions]
