"""The adversarial suite: robust accuracy per attack, point-wise worst case, eps curve, masking checks.

Attacks run in eval mode on the model's device, ``batch_size`` images at a time (positions of the evaluated
images, streamed from a folder for ImageNet), each batch seeded by (seed, attack, first index). Every finished
batch appends one row per image to ``examples.csv`` (attack, index, label, clean and adversarial prediction,
perturbation norm, robust) in the work folder; a killed run resumes without redoing finished batches. The
batches are the work items that shards share (robustkd/evaluate/sharding.py); a batch's examples do not depend
on which process attacks it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from robustkd.data.dataset import ImageDataset  # noqa: E402
from robustkd.errors import RobustKDError  # noqa: E402
from robustkd.evaluate.attacks import base as attack_base  # noqa: E402
from robustkd.evaluate.attacks.autoattack import PROTOCOLS, square  # noqa: E402
from robustkd.evaluate.attacks.base import Attack  # noqa: E402
from robustkd.evaluate.attacks.registry import linf_eps, linf_step, load_attacks  # noqa: E402
from robustkd.evaluate.attacks.torchattacks_attacks import pgd_linf  # noqa: E402
from robustkd.evaluate.context import SuiteContext  # noqa: E402
from robustkd.evaluate.finite import nonfinite_count, raise_if_nonfinite  # noqa: E402
from robustkd.evaluate.masking import forward_checks  # noqa: E402
from robustkd.evaluate.shard_table import ShardTable  # noqa: E402
from robustkd.evaluate.sharding import SINGLE, Shard  # noqa: E402
from robustkd.evaluate.suite import Metric, Plot, Suite, SuiteOutput, register_suite  # noqa: E402
from robustkd.evaluate.suite_params import param  # noqa: E402
from robustkd.evaluate.test_images import MemoryImages, TestImages, as_inputs  # noqa: E402
from robustkd.utils.atomic import write_text_atomic, write_with_atomic  # noqa: E402
from robustkd.utils.seeding import derive_seed  # noqa: E402

COLUMNS = ["attack", "index", "label", "clean_prediction", "adversarial_prediction", "norm", "robust"]


@dataclass(frozen=True)
class AdversarialParams:
    """Budgets in [0, 1] pixel units (Linf ones given x 1/255); ``attacks``: registered attack names
    (``robustkd.evaluate.attacks``); ``eps_curve_255``: extra PGD-Linf budgets for the robustness curve;
    ``masking_examples``: images of the gradient-masking checks (Square cross-check, forward checks)."""

    batch_size: int = param(200, low=1)
    attacks: tuple[str, ...] = ("fgsm", "pgd_linf", "pgd_l2", "cw_l2", "autoattack", "foolbox_pgd_linf", "deepfool_l2")
    linf_eps_255: float = param(8.0, low=0.0, open_low=True, high=255.0)
    linf_step_255: float = param(2.0, low=0.0, open_low=True)
    pgd_steps: int = param(20, low=1)
    random_start: bool = True
    l2_eps: float = param(0.5, low=0.0, open_low=True)
    l2_step: float = param(0.1, low=0.0, open_low=True)
    cw_c: float = param(1.0, low=0.0, open_low=True)
    cw_kappa: float = param(0.0, low=0.0)
    cw_steps: int = param(100, low=1)
    cw_lr: float = param(0.01, low=0.0, open_low=True)
    autoattack_versions: tuple[str, ...] = param(("standard",), choices=tuple(PROTOCOLS))
    deepfool_steps: int = param(50, low=1)
    deepfool_candidates: int = param(10, low=2)
    deepfool_overshoot: float = param(0.02, low=0.0)
    eps_curve_255: tuple[float, ...] = param((1.0, 2.0, 4.0, 8.0, 16.0), low=0.0, open_low=True, high=255.0)
    masking_examples: int = param(100, low=0)
    square_queries: int = param(1000, low=1)
    seed: int = param(0, low=0)


@register_suite
class AdversarialSuite(Suite[AdversarialParams]):
    """Robust accuracy per attack, point-wise worst case per norm, the PGD eps curve, gradient-masking checks."""

    name = "adversarial"
    params = AdversarialParams
    metrics = (
        Metric("clean_acc", "percent", True),
        Metric("robust_acc_pgd_linf", "percent", True, column="pgd_acc"),
        # PGD-Linf at the small budgets where undefended students still differ (on the eps curve)
        *(Metric(f"robust_acc_pgd_linf_eps{eps}", "percent", True, column=f"pgd_acc_eps{eps}")
          for eps in ("0.5", "1", "2")),
        Metric("robust_acc_autoattack_standard", "percent", True, column="autoattack_acc"),
        Metric("robust_acc_{attack}", "percent", True),
        Metric("worst_case_linf", "percent", True, column="worst_case_linf_acc"),
        Metric("worst_case_l2", "percent", True),
        Metric("deepfool_l2_median", "L2 norm in [0, 1] pixel units", None),
        Metric("{attack}_median", "perturbation norm (the attack's threat model) in [0, 1] pixel units", None),
        Metric("{check}_gap", "percentage points", None),
        Metric("{attack}_robust_acc_subset", "percent", True),
        Metric("gradient_zero_fraction", "fraction", None),
    )
    plots = (Plot("robust_accuracy_vs_eps.png", "robust accuracy vs eps"),)
    resumable = True
    extends = frozenset({"attacks", "eps_curve_255", "autoattack_versions", "masking_examples"})
    position = 30
    qualifiers = ("linf_eps_255", "pgd_steps")

    def check(self, params: AdversarialParams) -> None:
        registry = load_attacks()
        for name in params.attacks:
            registry.canonical(name)

    def run(self, ctx: SuiteContext, params: AdversarialParams, work: Path) -> SuiteOutput | None:
        result = _run(ctx.model, ctx.images, params, ctx.device, work, ctx.shard)
        return None if result is None else SuiteOutput(*result)


def build_attacks(params: AdversarialParams) -> list[Attack]:
    """The configured attacks (registry order of ``params.attacks``), then PGD-Linf at each extra eps of
    the curve."""
    registry = load_attacks()
    chosen = [attack for name in params.attacks for attack in registry.get(name)(params)]
    for value in params.eps_curve_255:
        if value != params.linf_eps_255:
            # The step scales with eps (2/255 per 8/255) so that the steps can cross the ball.
            chosen.append(pgd_linf(value / 255, linf_step(params) * value / params.linf_eps_255, params.pgd_steps,
                                   params.random_start, name=f"pgd_linf_eps{value:g}"))
    names = [attack.name for attack in chosen]
    if len(set(names)) != len(names):
        raise RobustKDError(f"adversarial suite: an attack is configured twice ({', '.join(names)})")
    return chosen


def _attack_batch(model: nn.Module, images: TestImages, attack: Attack, start: int, stop: int, params: AdversarialParams,
                  attack_number: int, device: torch.device) -> list[list]:
    """The rows of positions ``start:stop`` under ``attack`` (seeded by (seed, attack number, start))."""
    pixels, labels = images.take(range(start, stop))
    x, y = as_inputs(pixels, device), labels.to(device)
    torch.manual_seed(derive_seed(params.seed, attack_number, start))
    x_adv = attack(model, x, y)
    norms = attack_base.perturbation_norm(x_adv, x, attack.threat.norm)
    with torch.no_grad():
        clean_logits, adversarial_logits = model(x), model(x_adv)
    bad = int(nonfinite_count(clean_logits) + nonfinite_count(adversarial_logits))
    raise_if_nonfinite(bad, 2 * clean_logits.numel(), f"on {len(x)} clean and {attack.name} images")
    clean, adversarial = clean_logits.argmax(1), adversarial_logits.argmax(1)
    correct, fooled = clean.eq(y), adversarial.ne(y)
    robust = attack.robust(correct, fooled, norms)
    shown = attack_base.shown_norms(attack, correct, fooled, norms)
    return [[attack.name, start + i, int(y[i]), int(clean[i]), int(adversarial[i]), f"{float(shown[i]):.8g}",
             int(robust[i])] for i in range(stop - start)]


def run_adversarial(model: nn.Module, test: ImageDataset | TestImages, params: AdversarialParams, device: torch.device,
                    work_dir: Path) -> tuple[dict[str, float], dict]:
    """The suite on ``test`` (all images; the diagnostics on the first ``masking_examples``) in one process:
    (metrics, protocol)."""
    images = test if isinstance(test, TestImages) else MemoryImages(test)
    result = _run(model, images, params, device, work_dir, SINGLE)
    assert result is not None
    return result[0], result[1]


def _run(model: nn.Module, images: TestImages, params: AdversarialParams, device: torch.device, work_dir: Path,
         shard: Shard) -> tuple[dict[str, float], dict, dict[str, int]] | None:
    attacks = build_attacks(params)
    table = ShardTable(work_dir, "examples.csv", COLUMNS, shard, key=("attack", "index"))
    done = {(name, int(index)) for name, index in table.keys("attack", "index")}
    model.eval()
    n = len(images)
    masking_count = min(params.masking_examples, n)
    diagnostics = [square(linf_eps(params), params.square_queries, params.seed)] if masking_count else []
    plan = [(attack, n) for attack in attacks] + [(attack, masking_count) for attack in diagnostics]
    batches = [(number, start, min(start + params.batch_size, count))
               for number, (attack, count) in enumerate(plan) for start in range(0, count, params.batch_size)]
    mine = shard.todo(batches, lambda item: all((plan[item[0]][0].name, i) in done for i in range(item[1], item[2])),
                      "adversarial batches")
    show = os.environ.get("ROBUSTKD_PROGRESS", "1") != "0"
    for number, start, stop in tqdm(mine, desc="adversarial batches", unit="batch", disable=not show):
        table.append(_attack_batch(model, images, plan[number][0], start, stop, params, number, device))
    shard.wait_for_all()
    if not shard.summarises:
        return None

    order = {attack.name: number for number, (attack, _) in enumerate(plan)}
    rows = table.consolidate(lambda rows: rows["attack"].map(order) * (n + 1) + rows["index"])
    robust = {name: group.set_index("index")["robust"].astype(bool).sort_index() for name, group in rows.groupby("attack")}
    first = rows.drop_duplicates("index").set_index("index").sort_index()
    correct = first["clean_prediction"].eq(first["label"])
    metrics: dict[str, float] = {"clean_acc": 100.0 * float(correct.mean())}
    headline = [attack for attack in attacks if attack.headline]
    for attack in headline:
        metrics[f"robust_acc_{attack.name}"] = 100.0 * float(robust[attack.name].mean())
    _worst_cases(headline, robust, linf_eps(params), metrics)
    flags = _median_norms(attacks, rows, correct, metrics)
    flags += _cross_checks(attacks + diagnostics, robust, metrics)
    checks = _masking_checks(model, images, masking_count, device)
    metrics["gradient_zero_fraction"] = checks["gradient_zero_fraction"]
    if checks["outputs_probabilities"]:
        flags.append("the model returns probabilities (rows sum to 1), not logits")
    if checks["randomised_forward"]:
        flags.append("the forward pass is randomised (two passes differ); use autoattack_versions = [\"rand\"]")
    if checks["gradient_zero_fraction"] > 0:
        flags.append(f"zero input gradients on {100 * checks['gradient_zero_fraction']:.1f} % of the checked inputs")
    curve = _eps_curve(params, metrics)
    if any(later > earlier + 1e-9 for earlier, later in zip(curve["robust_acc"], curve["robust_acc"][1:])):
        flags.append("robust accuracy rises with eps on the PGD curve")
    write_text_atomic(work_dir / "eps_curve.csv", curve.to_csv(index=False))
    _plot_eps_curve(curve, metrics, params, work_dir / "robust_accuracy_vs_eps.png")
    protocol = {"attacks": {a.name: {"library": a.library, "threat": a.threat.norm, "kind": a.kind, **a.constants}
                            for a in attacks},
                "square_check": {"examples": masking_count, "queries": params.square_queries},
                "masking_flags": flags, "robust_definition": "correct on the clean input and on the attacked "
                "input (minimum-norm attacks: or perturbation above eps)"}
    return metrics, protocol, {attack.name: masking_count for attack in diagnostics}


def _worst_cases(headline: list[Attack], robust: dict[str, pd.Series], eps: float, metrics: dict[str, float]) -> None:
    """Point-wise: robust under every Linf attack at the suite's eps, and under every L2 attack with a budget."""
    linf = [a.name for a in headline if a.threat.norm == "linf" and math.isclose(a.threat.eps, eps)]
    l2 = [a.name for a in headline if a.threat.norm == "l2"]
    for key, names in (("worst_case_linf", linf), ("worst_case_l2", l2)):
        if names:
            metrics[key] = 100.0 * float(pd.concat([robust[name] for name in names], axis=1).all(axis=1).mean())


def _median_norms(attacks: list[Attack], rows: pd.DataFrame, correct: pd.Series, metrics: dict[str, float]) -> list[str]:
    """Median perturbation norm of each minimum-norm attack over correctly classified inputs (a failed
    attack counts as inf); an infinite median is reported as a flag, not a number."""
    flags = []
    for attack in attacks:
        if not isinstance(attack, attack_base.MinimumNormAttack):
            continue
        norms = rows[rows["attack"] == attack.name].set_index("index")["norm"]
        median = float(norms[correct.reindex(norms.index)].median())
        if math.isfinite(median):
            metrics[f"{attack.name}_median"] = median
        else:
            flags.append(f"{attack.name} failed on at least half of the correctly classified inputs; no median norm")
    return flags


def _cross_checks(attacks: list[Attack], robust: dict[str, pd.Series], metrics: dict[str, float]) -> list[str]:
    """Each declared cross-check, on the images both attacks ran on."""
    flags = []
    for attack in attacks:
        check = attack.cross_check
        if check is None or check.reference not in robust:
            continue
        mine = robust[attack.name]
        theirs = robust[check.reference].reindex(mine.index)
        own, reference = 100.0 * float(mine.mean()), 100.0 * float(theirs.mean())
        difference = reference - own
        if check.gap_metric:
            metrics[check.gap_metric] = difference
        if check.recorded:
            metrics[check.recorded[0]], metrics[check.recorded[1]] = own, reference
        if check.fails(difference):
            flags.append(check.warning.format(gap=difference, tolerance=check.tolerance))
    return flags


def _masking_checks(model: nn.Module, images: TestImages, count: int, device: torch.device) -> dict:
    pixels, labels = images.take(range(max(1, count)))
    return forward_checks(model, as_inputs(pixels, device), labels.to(device))


def _eps_curve(params, metrics: dict[str, float]) -> pd.DataFrame:
    points = {0.0: metrics["clean_acc"]}
    for value in params.eps_curve_255:
        key = "robust_acc_pgd_linf" if value == params.linf_eps_255 else f"robust_acc_pgd_linf_eps{value:g}"
        if key in metrics:
            points[float(value)] = metrics[key]
    return pd.DataFrame({"eps_255": list(points), "robust_acc": list(points.values())}).sort_values("eps_255")


def _plot_eps_curve(curve: pd.DataFrame, metrics: dict[str, float], params, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(curve["eps_255"], curve["robust_acc"], marker="o", label=f"PGD-Linf ({params.pgd_steps} steps)")
    for key, marker in (("robust_acc_fgsm", "s"), ("robust_acc_autoattack_standard", "x"),
                        ("robust_acc_foolbox_pgd_linf", "^")):
        if key in metrics:
            ax.scatter([params.linf_eps_255], [metrics[key]], marker=marker, zorder=3,
                       label=key.removeprefix("robust_acc_"))
    ax.set(xlabel="eps (x 1/255, L-infinity)", ylabel="robust accuracy (%)", title="robust accuracy vs eps")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
