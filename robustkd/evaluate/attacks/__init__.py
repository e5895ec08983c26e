"""The attacks of the adversarial suite: the contract (``base``), the registry, one module per library.

Re-exported here: the kinds, ``perturbation_norm``, ``load_attacks`` (the complete registry) and the
attack constructors.
"""

from robustkd.evaluate.attacks.autoattack import autoattack, square
from robustkd.evaluate.attacks.base import (Attack, BoundedAttack, CrossCheck, DiagnosticAttack, MinimumNormAttack,
                                            ThreatModel, perturbation_norm)
from robustkd.evaluate.attacks.foolbox_attacks import deepfool_l2, foolbox_pgd_linf
from robustkd.evaluate.attacks.registry import load_attacks, register_attack
from robustkd.evaluate.attacks.torchattacks_attacks import cw_l2, fgsm, pgd_l2, pgd_linf

__all__ = ["Attack", "BoundedAttack", "CrossCheck", "DiagnosticAttack", "MinimumNormAttack", "ThreatModel",
           "autoattack", "cw_l2", "deepfool_l2", "fgsm", "foolbox_pgd_linf", "load_attacks", "perturbation_norm",
           "pgd_l2", "pgd_linf", "register_attack", "square"]
