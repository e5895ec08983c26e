"""The adversarial suite: robust accuracy per attack, point-wise worst case, eps curve, masking checks.

Attacks run in eval mode on the model's device, ``batch_size`` images at a time, each batch seeded by
(seed, attack, first index). Every finished batch appends one row per image to ``examples.csv``
(attack, index, label, clean and adversarial prediction, perturbation norm, robust) in the work folder;
a killed run resumes without redoing finished batches.
"""

from __future__ import annotations

import math
import os
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
from robustkd.evaluate.finite import nonfinite_count, raise_if_nonfinite  # noqa: E402
from robustkd.evaluate import attacks as lib  # noqa: E402
from robustkd.evaluate.masking import forward_checks  # noqa: E402
from robustkd.utils.atomic import write_text_atomic, write_with_atomic  # noqa: E402
from robustkd.utils.seeding import derive_seed  # noqa: E402

COLUMNS = ["attack", "index", "label", "clean_prediction", "adversarial_prediction", "norm", "robust"]
ATTACK_NAMES = ("fgsm", "pgd_linf", "pgd_l2", "cw_l2", "autoattack", "foolbox_pgd_linf", "deepfool_l2")
BUDGET_TOLERANCE = 1e-5
CROSS_CHECK_POINTS = 1.0


def build_attacks(params) -> list[lib.Attack]:
    """The configured attacks, then PGD-Linf at each extra eps of the curve."""
    unknown = sorted(set(params.attacks) - set(ATTACK_NAMES))
    if unknown:
        raise RobustKDError(f"adversarial suite: unknown attack(s) {', '.join(unknown)}; expected {', '.join(ATTACK_NAMES)}")
    eps = params.linf_eps_255 / 255
    step = params.linf_step_255 / 255
    makers = {
        "fgsm": lambda: [lib.fgsm(eps)],
        "pgd_linf": lambda: [lib.pgd_linf(eps, step, params.pgd_steps, params.random_start)],
        "pgd_l2": lambda: [lib.pgd_l2(params.l2_eps, params.l2_step, params.pgd_steps, params.random_start)],
        "cw_l2": lambda: [lib.cw_l2(params.l2_eps, params.cw_c, params.cw_kappa, params.cw_steps, params.cw_lr)],
        "autoattack": lambda: [lib.autoattack(eps, version, "linf", params.seed)
                               for version in params.autoattack_versions],
        "foolbox_pgd_linf": lambda: [lib.foolbox_pgd_linf(eps, step, params.pgd_steps, params.random_start)],
        "deepfool_l2": lambda: [lib.deepfool_l2(params.deepfool_steps, params.deepfool_candidates,
                                                params.deepfool_overshoot)],
    }
    chosen = [attack for name in params.attacks for attack in makers[name]()]
    for value in params.eps_curve_255:
        if value != params.linf_eps_255:
            # The step scales with eps (2/255 per 8/255) so that 20 steps can cross the ball.
            chosen.append(lib.pgd_linf(value / 255, step * value / params.linf_eps_255, params.pgd_steps,
                                       params.random_start, name=f"pgd_linf_eps{value:g}"))
    return chosen


def _done_indices(path: Path) -> set[tuple[str, int]]:
    if not path.is_file():
        path.write_text(",".join(COLUMNS) + "\n")
        return set()
    rows = pd.read_csv(path)
    return set(zip(rows["attack"], rows["index"].astype(int)))


def run_attack_batches(model: nn.Module, test: ImageDataset, attack: lib.Attack, count: int, params,
                       attack_number: int, device: torch.device, path: Path, done: set[tuple[str, int]]) -> None:
    show = os.environ.get("ROBUSTKD_PROGRESS", "1") != "0"
    starts = [s for s in range(0, count, params.batch_size)
              if not all((attack.name, i) in done for i in range(s, min(s + params.batch_size, count)))]
    for start in tqdm(starts, desc=attack.name, unit="batch", disable=not show):
        stop = min(start + params.batch_size, count)
        x = test.images[start:stop].to(device).float().div_(255.0)
        y = test.labels[start:stop].to(device)
        torch.manual_seed(derive_seed(params.seed, attack_number, start))
        x_adv = attack.run(model, x, y).detach().to(device)
        if float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
            raise RobustKDError(f"{attack.name}: adversarial inputs left [0, 1]")  # pragma: no cover
        norms = lib.perturbation_norm(x_adv, x, attack.threat.norm)
        if attack.threat.bounded and float(norms.max()) > attack.threat.eps + BUDGET_TOLERANCE:
            raise RobustKDError(f"{attack.name}: perturbation {float(norms.max()):.6f} exceeds eps "
                                f"{attack.threat.eps:.6f}")  # pragma: no cover
        with torch.no_grad():
            clean_logits, adversarial_logits = model(x), model(x_adv)
        bad = int(nonfinite_count(clean_logits) + nonfinite_count(adversarial_logits))
        raise_if_nonfinite(bad, 2 * clean_logits.numel(), f"on {len(x)} clean and {attack.name} images")
        clean = clean_logits.argmax(1)
        adversarial = adversarial_logits.argmax(1)
        correct = clean.eq(y)
        fooled = adversarial.ne(y)
        if attack.threat.bounded:
            robust = correct & ~fooled
        else:
            robust = correct & (~fooled | (norms > attack.threat.eps))
        # Norms of failed minimum-norm attacks are infinite; of misclassified inputs, zero.
        shown = torch.where(fooled, norms, torch.full_like(norms, math.inf)) if not attack.threat.bounded else norms
        shown = torch.where(correct, shown, torch.zeros_like(shown))
        lines = "".join(f"{attack.name},{start + i},{int(y[i])},{int(clean[i])},{int(adversarial[i])},"
                        f"{float(shown[i]):.8g},{int(robust[i])}\n" for i in range(stop - start))
        with open(path, "a") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())


def run_adversarial(model: nn.Module, test: ImageDataset, params, device: torch.device, work_dir: Path
                    ) -> tuple[dict[str, float], dict]:
    attacks = build_attacks(params)
    path = work_dir / "examples.csv"
    done = _done_indices(path)
    model.eval()
    n = len(test)
    masking_count = min(params.masking_examples, n)
    square = lib.square(params.linf_eps_255 / 255, params.square_queries, params.seed)
    plan = [(attack, n) for attack in attacks] + ([(square, masking_count)] if masking_count else [])
    for number, (attack, count) in enumerate(plan):
        run_attack_batches(model, test, attack, count, params, number, device, path, done)

    rows = pd.read_csv(path)
    robust = rows.pivot(index="index", columns="attack", values="robust").astype(bool)
    first = rows.drop_duplicates("index").set_index("index").sort_index()
    correct = first["clean_prediction"].eq(first["label"])
    metrics: dict[str, float] = {"clean_acc": 100.0 * float(correct.mean())}
    for attack in attacks:
        if attack.name != "deepfool_l2":
            metrics[f"robust_acc_{attack.name}"] = 100.0 * float(robust[attack.name].mean())
    eps = params.linf_eps_255 / 255
    linf = [a.name for a in attacks if a.threat.norm == "linf" and a.threat.bounded and math.isclose(a.threat.eps, eps)]
    l2 = [a.name for a in attacks if a.threat.norm == "l2" and a.name != "deepfool_l2"]
    if linf:
        metrics["worst_case_linf"] = 100.0 * float(robust[linf].all(axis=1).mean())
    if l2:
        metrics["worst_case_l2"] = 100.0 * float(robust[l2].all(axis=1).mean())
    if "deepfool_l2" in robust.columns:
        norms = rows[rows["attack"] == "deepfool_l2"].set_index("index")["norm"]
        metrics["deepfool_l2_median"] = float(norms[correct.reindex(norms.index)].median())
    flags = []
    if "pgd_linf" in robust.columns and "foolbox_pgd_linf" in robust.columns:
        gap = metrics["robust_acc_pgd_linf"] - metrics["robust_acc_foolbox_pgd_linf"]
        metrics["foolbox_pgd_gap"] = gap
        if abs(gap) > CROSS_CHECK_POINTS:
            flags.append(f"torchattacks PGD and foolbox PGD disagree by {gap:+.2f} points (> {CROSS_CHECK_POINTS})")
    checks = _masking_checks(model, test, masking_count, device)
    metrics["gradient_zero_fraction"] = checks["gradient_zero_fraction"]
    if checks["outputs_probabilities"]:
        flags.append("the model returns probabilities (rows sum to 1), not logits")
    if checks["randomised_forward"]:
        flags.append("the forward pass is randomised (two passes differ); use autoattack_versions = [\"rand\"]")
    if checks["gradient_zero_fraction"] > 0:
        flags.append(f"zero input gradients on {100 * checks['gradient_zero_fraction']:.1f} % of the checked inputs")
    if masking_count and "pgd_linf" in robust.columns:
        subset = robust.loc[:masking_count - 1]
        metrics["square_robust_acc_subset"] = 100.0 * float(subset["square"].mean())
        metrics["pgd_robust_acc_subset"] = 100.0 * float(subset["pgd_linf"].mean())
        if metrics["square_robust_acc_subset"] < metrics["pgd_robust_acc_subset"]:
            flags.append("black-box Square finds more adversarial examples than white-box PGD")
    curve = _eps_curve(params, metrics)
    if any(later > earlier + 1e-9 for earlier, later in zip(curve["robust_acc"], curve["robust_acc"][1:])):
        flags.append("robust accuracy rises with eps on the PGD curve")
    write_text_atomic(work_dir / "eps_curve.csv", curve.to_csv(index=False))
    _plot_eps_curve(curve, metrics, params, work_dir / "robust_accuracy_vs_eps.png")
    protocol = {"attacks": {a.name: {"library": a.library, "threat": a.threat.norm, **a.constants} for a in attacks},
                "square_check": {"examples": masking_count, "queries": params.square_queries},
                "masking_flags": flags, "robust_definition": "correct on the clean input and on the attacked "
                "input (minimum-norm attacks: or perturbation above eps)"}
    return metrics, protocol


def _masking_checks(model: nn.Module, test: ImageDataset, count: int, device: torch.device) -> dict:
    count = max(1, count)
    x = test.images[:count].to(device).float().div_(255.0)
    return forward_checks(model, x, test.labels[:count].to(device))


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
