"""The certified suite: randomized-smoothing certificates per test image, resumable, then the summary.

Per-example rows are appended to ``certify.tsv`` as each image finishes (index, label, prediction, radius,
correct, count, p_lower, seconds); a killed run continues after the last finished image. Certificates depend
on the seed, the device and the noise chunk, not on the batch size (see ``robustkd.evaluate.smoothing``).
Certified accuracy at radius r = share of certified images whose prediction is correct and whose radius is
at least r.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from robustkd.data.dataset import ImageDataset  # noqa: E402
from robustkd.errors import RobustKDError  # noqa: E402
from robustkd.evaluate.smoothing import ABSTAIN, Smooth, inference_model  # noqa: E402
from robustkd.utils.atomic import write_text_atomic, write_with_atomic  # noqa: E402
from robustkd.utils.seeding import derive_seed  # noqa: E402

RADII = tuple(np.round(np.arange(0.0, 1.5001, 0.25), 2))
COLUMNS = ["index", "label", "prediction", "radius", "correct", "count", "p_lower", "predict", "predict_correct",
           "seconds"]


AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def certify_dataset(model: nn.Module, dataset: ImageDataset, params, work_dir: Path, device: torch.device
                    ) -> tuple[pd.DataFrame, dict]:
    """Certify every ``skip``-th image (up to ``max``), appending to ``work_dir/certify.tsv``; returns all rows
    and the protocol of the base classifier (BatchNorm folded or not, autocast, noise stream)."""
    if params.autocast not in AUTOCAST_DTYPES:
        raise RobustKDError(f"certified suite: autocast = {params.autocast!r}; expected none, bf16 or fp16")
    path = work_dir / "certify.tsv"
    done = set(pd.read_csv(path, sep="\t")["index"].tolist()) if path.is_file() else set()
    if not path.is_file():
        path.write_text("\t".join(COLUMNS) + "\n")
    base, folded = inference_model(model, params.fold_batchnorm)
    smooth = Smooth(base, dataset.num_classes, params.sigma, noise_chunk=params.noise_chunk,
                    autocast_dtype=AUTOCAST_DTYPES[params.autocast])
    indices = list(range(0, len(dataset), params.skip))
    if params.max >= 0:
        indices = indices[: params.max]
    for index in indices:
        if index in done:
            continue
        seed = derive_seed(params.seed, index)
        x = dataset.images[index].to(device).float() / 255.0
        label = int(dataset.labels[index])
        started = time.perf_counter()
        certificate = smooth.certify(x, params.n0, params.n, params.alpha, params.batch_size, seed)
        predicted = smooth.predict(x, params.predict_n, params.alpha, params.batch_size, seed) \
            if params.predict_n > 0 else ABSTAIN
        row = [index, label, certificate.prediction, f"{certificate.radius:.6f}", int(certificate.prediction == label),
               certificate.count, f"{certificate.p_lower:.8f}", predicted, int(predicted == label),
               f"{time.perf_counter() - started:.3f}"]
        with open(path, "a") as handle:  # one complete line per finished image
            handle.write("\t".join(str(value) for value in row) + "\n")
    protocol = {"batchnorm_folded": folded, "precision": "float32" if params.autocast == "none"
                else f"{params.autocast} autocast", "noise_stream": f"chunks of {params.noise_chunk} samples per "
                "(seed, image, stream), drawn on the evaluation device; independent of batch_size"}
    return pd.read_csv(path, sep="\t"), protocol


def summarise_certificates(rows: pd.DataFrame, out_dir: Path) -> dict[str, float]:
    """Certified accuracy (percent) at each radius in RADII, abstention rate; writes CSV and a plot."""
    count = max(len(rows), 1)
    accuracy = {r: 100.0 * float(((rows["correct"] == 1) & (rows["radius"] >= r)).sum()) / count for r in RADII}
    table = pd.DataFrame({"radius": list(accuracy), "certified_accuracy": list(accuracy.values())})
    write_text_atomic(out_dir / "certified_accuracy.csv", table.to_csv(index=False))
    figure, axis = plt.subplots(figsize=(4.5, 3.2))
    grid = np.linspace(0, max(1.5, float(rows["radius"].max()) if len(rows) else 1.5), 200)
    axis.plot(grid, [100.0 * float(((rows["correct"] == 1) & (rows["radius"] >= r)).sum()) / count for r in grid])
    axis.set_xlabel("L2 radius")
    axis.set_ylabel("certified accuracy (%)")
    axis.set_ylim(0, 100)
    figure.tight_layout()
    write_with_atomic(out_dir / "certified_accuracy.png", lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    metrics = {f"certified_acc_r{r:.2f}": value for r, value in accuracy.items()}
    metrics["abstain_rate"] = 100.0 * float((rows["prediction"] == ABSTAIN).sum()) / count
    metrics["n_certified"] = float(len(rows))
    if "predict" in rows and (rows["predict"] != ABSTAIN).any():
        # ``predict``: the smoothed classifier's answer with the two-sided binomial test (Cohen et al.).
        metrics["smoothed_acc"] = 100.0 * float(rows["predict_correct"].sum()) / count
        metrics["predict_abstain_rate"] = 100.0 * float((rows["predict"] == ABSTAIN).sum()) / count
    return metrics
