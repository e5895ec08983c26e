"""The relations suite: teacher-student relation fidelity on the test set (see ``evaluate/relations.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from robustkd.errors import RobustKDError  # noqa: E402
from robustkd.evaluate.context import SuiteContext  # noqa: E402
from robustkd.evaluate.relations import relation_fidelity  # noqa: E402
from robustkd.evaluate.suite import Metric, Need, Plot, Suite, SuiteOutput, register_suite  # noqa: E402
from robustkd.evaluate.suite_params import param  # noqa: E402
from robustkd.utils.atomic import write_text_atomic, write_with_atomic  # noqa: E402


@dataclass(frozen=True)
class RelationsParams:
    batch_size: int = param(500, low=1)


_CORRELATIONS = ("pearson", "spearman", "kendall")


@register_suite
class RelationsSuite(Suite[RelationsParams]):
    """How closely the student's logits follow the teacher's on the test set (per sample and per class)."""

    name = "relations"
    params = RelationsParams
    metrics = (
        *(Metric(key, "correlation", True, column=f"relation_{key}") for key in _CORRELATIONS),
        *(Metric(f"{key}_median", "correlation", True) for key in _CORRELATIONS),
        Metric("top5_overlap", "fraction", True), Metric("top1_agreement", "fraction", True),
        Metric("kl_teacher_student", "nats", False),
        Metric("class_correlation_distance", "Frobenius norm / C", False, column="class_correlation_distance",
               column_unit="||R_T - R_S||_F / C"),
    )
    plots = (Plot("relation_fidelity.png", "relation fidelity"),)
    needs = frozenset({Need.TEACHER})
    position = 60

    def run(self, ctx: SuiteContext, params: RelationsParams, work: Path) -> SuiteOutput:
        teacher_logits = ctx.teacher_logits
        if teacher_logits is None:  # pragma: no cover - the runner computes them for a suite that needs the teacher
            raise RobustKDError("relations: the teacher's clean logits were not computed")
        metrics = run_relations(teacher_logits, ctx.logits, ctx.classes, work)
        teacher_acc = 100.0 * float(teacher_logits.argmax(1).eq(ctx.labels).double().mean())
        return SuiteOutput(metrics, {
            "teacher_sha256": ctx.teacher_info.get("weights_sha256"),
            "teacher_architecture": ctx.teacher_info.get("architecture"), "teacher_clean_acc": teacher_acc,
            "logits": "raw logits (no temperature)", "class_correlation_distance": "||R_T - R_S||_F / C"})


def run_relations(teacher_logits: torch.Tensor, student_logits: torch.Tensor, classes: tuple[str, ...],
                  out_dir: Path) -> dict[str, float]:
    result = relation_fidelity(teacher_logits, student_logits)
    per_sample = pd.DataFrame({name: values.numpy() for name, values in result.per_sample.items()})
    per_sample.insert(0, "index", range(len(per_sample)))
    write_text_atomic(out_dir / "per_sample.csv", per_sample.to_csv(index=False))
    for who, matrix in (("teacher", result.teacher_matrix), ("student", result.student_matrix)):
        frame = pd.DataFrame(matrix.numpy(), index=pd.Index(classes, name="class"), columns=list(classes))
        write_text_atomic(out_dir / f"class_correlation_{who}.csv", frame.to_csv())
    _plot(result, out_dir / "relation_fidelity.png")
    return result.summary()


def _plot(result, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in ("pearson", "spearman", "kendall"):
        left.hist(result.per_sample[name].numpy(), bins=40, range=(-1, 1), histtype="step", lw=1.5,
                  label=f"{name} (mean {float(result.per_sample[name].mean()):.3f})")
    left.set(xlabel="per-sample correlation of teacher and student logits", ylabel="test images",
             title="inter-class relation fidelity")
    left.legend(fontsize=8)
    difference = (result.teacher_matrix - result.student_matrix).numpy()
    image = right.imshow(difference, cmap="coolwarm", vmin=-1, vmax=1)
    right.set(title="class-correlation matrix: teacher - student", xlabel="class", ylabel="class")
    fig.colorbar(image, ax=right)
    fig.tight_layout()
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
