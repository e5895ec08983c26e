"""The attack registry: a config name (``attacks = ["pgd_linf", ...]`` in a suite file) -> a factory.

A factory takes the adversarial suite's parameters and returns the configured attacks (one, or several:
``autoattack`` gives one per version). Every module of this package is imported by ``load_attacks``, so
adding an attack is adding one module that decorates its factory with ``@register_attack("name")``.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache, wraps
from typing import Any, Callable

from robustkd.evaluate.attacks.base import Attack, BoundedAttack, DiagnosticAttack, MinimumNormAttack
from robustkd.registry import Registry

AttackFactory = Callable[[Any], list[Attack]]
ATTACKS: Registry[AttackFactory] = Registry("attack")
PACKAGE = "robustkd.evaluate.attacks"
KINDS = (BoundedAttack, MinimumNormAttack, DiagnosticAttack)


def register_attack(name: str) -> Callable[[AttackFactory], AttackFactory]:
    """Decorator: register ``factory(params) -> list[Attack]`` under ``name``; each attack it makes must be
    of one of the kinds (bounded, minimum-norm, diagnostic)."""
    def decorator(factory: AttackFactory) -> AttackFactory:
        @wraps(factory)
        def checked(params: Any) -> list[Attack]:
            attacks = factory(params)
            for attack in attacks:
                if not isinstance(attack, KINDS):
                    raise TypeError(f"attack {name}: {type(attack).__name__} is not a BoundedAttack, "
                                    "MinimumNormAttack or DiagnosticAttack")
            return attacks
        ATTACKS.add(name, checked)
        return factory
    return decorator


@cache
def load_attacks() -> Registry[AttackFactory]:
    """Import every module of the attacks package (each registers its attacks) and return the registry."""
    package = importlib.import_module(PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{PACKAGE}.{module.name}")
    return ATTACKS


def linf_eps(params: Any) -> float:
    """The suite's Linf budget in [0, 1] pixel units."""
    return params.linf_eps_255 / 255


def linf_step(params: Any) -> float:
    return params.linf_step_255 / 255
