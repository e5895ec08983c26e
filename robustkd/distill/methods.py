"""Distillation methods by name, and correlation add-ons combinable with any of them (``kd+spearman``).

A method turns (student logits, teacher logits, labels) into a dict of named, weighted loss terms; the
training loop sums them. Registered methods: ce, kd, dist, cmkd, dkd. Add-ons: spearman, pearson. Modifier:
ls (logit standardisation, ``kd+ls``: the distillation term sees z-scored logits; robustkd/distill/logit_standardization.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustkd.distill.cmkd import cmkd_losses, spearman_loss_rows
from robustkd.distill.correlation import inter_class_loss, intra_class_loss
from robustkd.distill.dkd import dkd_terms, warmup_factor
from robustkd.distill.kd import kd_kl_loss
from robustkd.distill.logit_standardization import standardize
from robustkd.distill.options import DistillOptions
from robustkd.errors import RobustKDError
from robustkd.registry import Registry

Losses = dict[str, torch.Tensor]
TermFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Losses]


@dataclass(frozen=True)
class MethodSpec:
    """How a method builds its loss terms, which option prefixes it reads, its default CE weight."""

    build: Callable[[DistillOptions], TermFunction]
    option_prefixes: tuple[str, ...]
    default_ce_weight: float
    uses_teacher: bool = True


def _kd(o: DistillOptions) -> TermFunction:
    return lambda s, t, y: {"kl": o.kd_alpha * kd_kl_loss(s, t, o.kd_temperature)}


def _dist(o: DistillOptions) -> TermFunction:
    def terms(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> Losses:
        p_s, p_t = (s / o.dist_tau).softmax(dim=1), (t / o.dist_tau).softmax(dim=1)
        scale = o.dist_weight * o.dist_tau**2
        return {"inter": scale * o.dist_beta * inter_class_loss(p_s, p_t).mean(),
                "intra": scale * o.dist_gamma * intra_class_loss(p_s, p_t)}
    return terms


def _cmkd(o: DistillOptions) -> TermFunction:
    def terms(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> Losses:
        raw = cmkd_losses(s, t, y, tau=o.cmkd_tau, pearson_scale=o.cmkd_pearson, spearman_scale=o.cmkd_spearman,
                          intra_scale=o.cmkd_intra, strength=o.cmkd_rank_strength, backend=o.cmkd_rank_backend,
                          teacher_ranks=o.cmkd_teacher_ranks, difficulty=o.cmkd_difficulty,
                          weighting=o.cmkd_weighting, power=o.cmkd_weight_power)
        return {name: o.cmkd_weight * value for name, value in raw.items()}
    return terms


class _DKD:
    """DKD's terms, scaled by the linear warm-up of the current epoch (``start_epoch``; 1 before any epoch)."""

    def __init__(self, o: DistillOptions) -> None:
        self.options, self.factor = o, 1.0

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.factor = warmup_factor(epoch, epochs, self.options.dkd_warmup_fraction)

    def __call__(self, s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> Losses:
        tckd, nckd = dkd_terms(s, t, y, self.options.dkd_temperature)
        return {"tckd": self.factor * self.options.dkd_alpha * tckd, "nckd": self.factor * self.options.dkd_beta * nckd}


METHODS: Registry[MethodSpec] = Registry("distillation method")
METHODS.add("ce", MethodSpec(lambda o: (lambda s, t, y: {}), ("ce_",), 1.0, uses_teacher=False))
METHODS.add("kd", MethodSpec(_kd, ("ce_", "kd_"), 0.1))
METHODS.add("dist", MethodSpec(_dist, ("ce_", "dist_"), 1.0))
METHODS.add("cmkd", MethodSpec(_cmkd, ("ce_", "cmkd_"), 1.0))
METHODS.add("dkd", MethodSpec(_DKD, ("ce_", "dkd_"), 1.0))


def _kd_standardized(o: DistillOptions) -> TermFunction:
    return lambda s, t, y: {"kl": o.ls_weight * kd_kl_loss(standardize(s), standardize(t), o.ls_temperature)}


# Modifiers replace a method's distillation term by its variant (defined only where its authors define it).
MODIFIERS: dict[str, dict[str, MethodSpec]] = {"ls": {"kd": MethodSpec(_kd_standardized, ("ce_", "ls_"), 0.1)}}


def _spearman_addon(o: DistillOptions) -> TermFunction:
    def term(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> Losses:
        rows = spearman_loss_rows(s, t, o.cmkd_rank_strength, o.cmkd_rank_backend, o.cmkd_teacher_ranks)
        return {"addon_spearman": o.addon_weight * o.cmkd_tau**2 * rows.mean()}
    return term


def _pearson_addon(o: DistillOptions) -> TermFunction:
    def term(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> Losses:
        p_s, p_t = (s / o.cmkd_tau).softmax(dim=1), (t / o.cmkd_tau).softmax(dim=1)
        return {"addon_pearson": o.addon_weight * o.cmkd_tau**2 * inter_class_loss(p_s, p_t).mean()}
    return term


ADDONS: Registry[Callable[[DistillOptions], TermFunction]] = Registry("distillation add-on")
ADDONS.add("spearman", _spearman_addon)
ADDONS.add("pearson", _pearson_addon)
ADDON_PREFIXES = ("addon_", "cmkd_tau", "cmkd_rank_", "cmkd_teacher_ranks")


@dataclass(frozen=True)
class Method:
    """A parsed method such as ``kd+spearman``: its name, the loss function, and what to record."""

    name: str
    uses_teacher: bool
    losses: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], Losses]
    recorded_options: dict
    start_epoch: Callable[[int, int], None] = lambda epoch, epochs: None  # epoch (from 1) of ``epochs`` begins


def parse_method(spec: str, options: DistillOptions) -> Method:
    """``base[+modifier][+addon...]`` -> a Method; unknown names raise RobustKDError listing the valid ones."""
    base_name, *addon_names = [part.strip() for part in spec.split("+")]
    base = METHODS.get(base_name)
    modifiers = [name for name in addon_names if name in MODIFIERS]
    addon_names = [name for name in addon_names if name not in MODIFIERS]
    for modifier in modifiers:
        variants = MODIFIERS[modifier]
        if METHODS.canonical(base_name) not in variants:
            raise RobustKDError(f"--method {spec!r}: the {modifier} modifier is defined for "
                                f"{', '.join(variants)} only")
        base = variants[METHODS.canonical(base_name)]
    canonical = [METHODS.canonical(base_name)] + modifiers + [ADDONS.canonical(name) for name in addon_names]
    if len(set(canonical)) != len(canonical):
        raise RobustKDError(f"--method {spec!r} names a term twice")
    term_functions = [base.build(options)] + [ADDONS.get(name)(options) for name in addon_names]
    ce_weight = base.default_ce_weight if options.ce_weight is None else options.ce_weight
    if ce_weight == 0 and not base.uses_teacher and not addon_names:
        raise RobustKDError(f"--method {spec!r} with ce_weight 0 has no loss term left; give a positive --ce-weight "
                            f"or add a term (e.g. {base_name}+spearman)")

    def losses(student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor) -> Losses:
        out: Losses = {"ce": ce_weight * F.cross_entropy(student, labels)} if ce_weight > 0 else {}
        for function in term_functions:
            out.update(function(student, teacher, labels))
        return out

    prefixes = base.option_prefixes + (ADDON_PREFIXES if addon_names else ())
    recorded = {**options.subset(prefixes), "ce_weight": ce_weight}
    def start_epoch(epoch: int, epochs: int) -> None:
        for function in term_functions:
            if hasattr(function, "start_epoch"):
                function.start_epoch(epoch, epochs)

    return Method("+".join(canonical), base.uses_teacher or bool(addon_names), losses, recorded, start_epoch)
