"""Every distillation knob, flat and prefixed by the method it belongs to (documented in docs/cmkd.md).

Defaults: KD and DIST follow the standard CIFAR-100 protocol (CRD / mdistiller for KD; the DIST paper and
its authors' code for DIST). CMKD's defaults are ours, chosen by the measurement recorded in docs/cmkd.md.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from typing import Any

from robustkd.distill.difficulty import DIFFICULTY_MEASURES
from robustkd.errors import RobustKDError
from robustkd.utils.field_types import check_field_types

CMKD_WEIGHTINGS = ("rank_hard", "value_hard", "equal")


@dataclass
class DistillOptions:
    ce_weight: float | None = None  # weight of cross-entropy on labels; None: the method's default
    # kd: CE * ce_weight (default 0.1) + kd_alpha * T^2 * KL
    kd_temperature: float = 4.0
    kd_alpha: float = 0.9
    # dist: CE + dist_weight * tau^2 * (dist_beta * inter + dist_gamma * intra)
    dist_tau: float = 4.0
    dist_beta: float = 1.0
    dist_gamma: float = 1.0
    dist_weight: float = 2.0
    # cmkd: CE + cmkd_weight * tau^2 * (mean_i w_p,i (1 - pearson_i) * cmkd_pearson
    #                                   + mean_i w_s,i (1 - spearman_i) * cmkd_spearman + cmkd_intra * intra)
    cmkd_tau: float = 4.0
    cmkd_weight: float = 2.0
    cmkd_pearson: float = 1.0
    cmkd_spearman: float = 1.0
    cmkd_intra: float = 1.0
    cmkd_rank_strength: float = 0.1
    cmkd_rank_backend: str = "sigmoid"
    cmkd_teacher_ranks: str = "exact"
    cmkd_difficulty: str = "entropy"
    cmkd_weighting: str = "rank_hard"
    cmkd_weight_power: float = 1.0
    # dkd (Zhao et al. 2022): CE + warm-up * T^2 * (dkd_alpha * TCKD + dkd_beta * NCKD); mdistiller's CIFAR-100
    # defaults, the warm-up (20 of 240 epochs there) as a fraction of the run's epochs
    dkd_temperature: float = 4.0
    dkd_alpha: float = 1.0
    dkd_beta: float = 8.0
    dkd_warmup_fraction: float = 20 / 240
    # ls (logit standardisation, Sun et al. 2024), kd+ls: CE * 0.1 + ls_weight * T^2 * KL of z-scored logits
    ls_temperature: float = 2.0
    ls_weight: float = 9.0
    # add-on terms (e.g. kd+spearman): addon_weight * cmkd_tau^2 * term, with equal per-sample weights
    addon_weight: float = 2.0

    def validate(self) -> DistillOptions:
        def bad(name: str, expected: str) -> RobustKDError:
            return RobustKDError(f"distill option {name}={getattr(self, name)!r}; expected {expected}")

        check_field_types(self, "distill option")
        for name in ("kd_temperature", "dist_tau", "cmkd_tau", "cmkd_rank_strength", "cmkd_weight_power",
                     "dkd_temperature", "ls_temperature"):
            if not getattr(self, name) > 0:
                raise bad(name, "a positive number")
        for name in ("kd_alpha", "dist_beta", "dist_gamma", "dist_weight", "cmkd_weight", "cmkd_pearson",
                     "cmkd_spearman", "cmkd_intra", "addon_weight", "dkd_alpha", "dkd_beta", "dkd_warmup_fraction",
                     "ls_weight"):
            if getattr(self, name) < 0:
                raise bad(name, "a non-negative number")
        if self.dkd_warmup_fraction > 1:
            raise bad("dkd_warmup_fraction", "a fraction of the epochs in [0, 1]")
        if self.ce_weight is not None and self.ce_weight < 0:
            raise bad("ce_weight", "a non-negative number")
        if self.cmkd_rank_backend not in ("sigmoid", "torchsort"):
            raise bad("cmkd_rank_backend", "sigmoid or torchsort")
        if self.cmkd_rank_backend == "torchsort" and importlib.util.find_spec("torchsort") is None:
            raise bad("cmkd_rank_backend", "sigmoid: the optional torchsort package is not installed "
                                           "(pip install 'robustkd[torchsort]', see pyproject.toml)")
        if self.cmkd_teacher_ranks not in ("exact", "soft"):
            raise bad("cmkd_teacher_ranks", "exact or soft")
        if self.cmkd_difficulty not in DIFFICULTY_MEASURES:
            raise bad("cmkd_difficulty", " or ".join(DIFFICULTY_MEASURES))
        if self.cmkd_weighting not in CMKD_WEIGHTINGS:
            raise bad("cmkd_weighting", " or ".join(CMKD_WEIGHTINGS))
        return self

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> DistillOptions:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RobustKDError(f"unknown distill option(s) {', '.join(unknown)}; expected some of: {', '.join(sorted(known))}")
        if not isinstance(values, dict):
            raise RobustKDError(f"distill options must be a table of option = value, got {values!r}")
        return dataclasses.replace(cls(), **values).validate()

    def subset(self, prefixes: tuple[str, ...]) -> dict[str, Any]:
        """The options whose names start with one of ``prefixes`` (what a method records in its sidecar)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k.startswith(prefixes)}
