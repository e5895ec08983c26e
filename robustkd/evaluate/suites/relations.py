"""The relations suite: teacher-student relation fidelity on the test set (see ``evaluate/relations.py``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from robustkd.evaluate.relations import relation_fidelity  # noqa: E402
from robustkd.utils.atomic import write_text_atomic, write_with_atomic  # noqa: E402


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
