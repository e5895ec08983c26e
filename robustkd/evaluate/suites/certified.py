"""The certified suite: randomized-smoothing certificates per test image, resumable, then the summary.

Per-example rows are appended to ``certify.tsv`` as each image finishes (index, label, prediction, radius,
correct, count, p_lower, seconds); a killed run continues after the last finished image. Images are the work
items that shards share (robustkd/evaluate/sharding.py); ``index`` is the image's position among the evaluated
images (streamed from a folder for ImageNet; ``--selection every100`` is Cohen et al.'s ImageNet set). Certificates depend
on the seed, the device and the noise chunk, not on the batch size (see ``robustkd.evaluate.smoothing``).
Certified accuracy at radius r = share of certified images whose prediction is correct and whose radius is
at least r.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from robustkd.data.dataset import ImageDataset  # noqa: E402
from robustkd.errors import RobustKDError  # noqa: E402
from robustkd.evaluate.context import SuiteContext  # noqa: E402
from robustkd.evaluate.shard_table import ShardTable  # noqa: E402
from robustkd.evaluate.sharding import SINGLE, Shard  # noqa: E402
from robustkd.evaluate.smoothing import ABSTAIN, Smooth, inference_model  # noqa: E402
from robustkd.evaluate.suite import Metric, Plot, Suite, SuiteOutput, register_suite  # noqa: E402
from robustkd.evaluate.suite_params import param  # noqa: E402
from robustkd.evaluate.test_images import MemoryImages, TestImages  # noqa: E402
from robustkd.utils.atomic import write_text_atomic, write_with_atomic  # noqa: E402
from robustkd.utils.seeding import derive_seed  # noqa: E402

RADII = tuple(np.round(np.arange(0.0, 1.5001, 0.25), 2))
COLUMNS = ["index", "label", "prediction", "radius", "correct", "count", "p_lower", "predict", "predict_correct",
           "seconds"]


AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class CertifiedParams:
    """Cohen et al.'s CERTIFY: ``sigma`` in [0, 1] pixel units (match the model's --noise-sd), ``n0``
    selection and ``n`` estimation samples (the paper: 100,000), failure probability ``alpha``; every
    ``skip``-th test image, at most ``max`` (-1: all). ``predict_n``: samples for PREDICT (two-sided binomial
    test; smoothed_acc, predict_abstain_rate; 0 turns it off). The noise of sample k comes from chunk
    k // ``noise_chunk`` seeded by (seed, image, chunk), so certificates do not depend on ``batch_size``
    (raise it as far as memory allows). ``fold_batchnorm``: an inference copy with BatchNorm folded into the
    convolutions (same function to float32 rounding, faster); ``autocast``: none (float32), bf16 or fp16,
    recorded with the result."""

    sigma: float = param(0.25, low=0.0, open_low=True)
    n0: int = param(100, low=1)
    n: int = param(100_000, low=1)
    alpha: float = param(0.001, low=0.0, high=1.0, open_low=True, open_high=True)
    batch_size: int = param(1000, low=1)
    skip: int = param(1, low=1)
    max: int = param(-1, low=-1)
    seed: int = param(0, low=0)
    predict_n: int = param(1000, low=0)
    noise_chunk: int = param(256, low=1)
    fold_batchnorm: bool = True
    autocast: str = param("none", choices=tuple(AUTOCAST_DTYPES))


@register_suite
class CertifiedSuite(Suite[CertifiedParams]):
    """Randomized-smoothing certificates (L2) per test image; certified accuracy at radii 0 to 1.5 (steps of 0.25)."""

    name = "certified"
    params = CertifiedParams
    metrics = (
        Metric("certified_acc_r{radius}", "percent", True, column="certified_acc_r{radius}",
               grid={"radius": tuple(f"{radius:.2f}" for radius in RADII)}),
        Metric("abstain_rate", "percent", False), Metric("n_certified", "images", None),
        Metric("smoothed_acc", "percent", True), Metric("predict_abstain_rate", "percent", False),
    )
    plots = (Plot("certified_accuracy.png", "certified accuracy vs radius"),)
    resumable = True
    extends = frozenset({"max", "batch_size"})
    position = 50
    qualifiers = ("sigma", "n", "alpha")

    def selection(self, protocol: dict[str, Any]) -> str:
        """``skip<k>`` for every k-th image (k > 1), ``max<m>`` for at most m of them, joined by '-'."""
        skip, most = int(protocol.get("skip", 1)), int(protocol.get("max", -1))
        return "-".join(([f"skip{skip}"] if skip > 1 else []) + ([f"max{most}"] if most >= 0 else []))

    def run(self, ctx: SuiteContext, params: CertifiedParams, work: Path) -> SuiteOutput | None:
        certified = certify_dataset(ctx.model, ctx.images, params, work, ctx.device, ctx.shard)
        if certified is None:
            return None
        rows, protocol = certified
        metrics = summarise_certificates(rows, work)
        return SuiteOutput(metrics, {"radii": list(RADII), "noise": "Gaussian in [0, 1] input space, before the "
                                     "model's normalisation", **protocol}, {"certified": len(rows)})


def certify_dataset(model: nn.Module, dataset: ImageDataset | TestImages, params, work_dir: Path, device: torch.device,
                    shard: Shard = SINGLE) -> tuple[pd.DataFrame, dict] | None:
    """Certify every ``skip``-th image (up to ``max``), appending to ``work_dir/certify.tsv``; returns all rows
    and the protocol of the base classifier (BatchNorm folded or not, autocast, noise stream), or None in a
    process that does not summarise (it certified its share of the images)."""
    images = dataset if isinstance(dataset, TestImages) else MemoryImages(dataset)
    table = ShardTable(work_dir, "certify.tsv", COLUMNS, shard, key=("index",), sep="\t")
    done = {int(index) for (index,) in table.keys("index")}
    base, folded = inference_model(model, params.fold_batchnorm)
    smooth = Smooth(base, images.num_classes, params.sigma, noise_chunk=params.noise_chunk,
                    autocast_dtype=AUTOCAST_DTYPES[params.autocast])
    indices = list(range(0, len(images), params.skip))
    if params.max >= 0:
        indices = indices[: params.max]
    _check_classes_covered(images.labels[indices], images.num_classes, params.skip)
    for index in shard.todo(indices, lambda index: index in done, "certified images"):
        seed = derive_seed(params.seed, index)
        pixels, labels = images.take([index])
        x = pixels[0].to(device).float() / 255.0
        label = int(labels[0])
        started = time.perf_counter()
        certificate = smooth.certify(x, params.n0, params.n, params.alpha, params.batch_size, seed)
        predicted = smooth.predict(x, params.predict_n, params.alpha, params.batch_size, seed) \
            if params.predict_n > 0 else ABSTAIN
        row = [index, label, certificate.prediction, f"{certificate.radius:.6f}", int(certificate.prediction == label),
               certificate.count, f"{certificate.p_lower:.8f}", predicted, int(predicted == label),
               f"{time.perf_counter() - started:.3f}"]
        table.append([row])  # one complete, fsync'd line per finished image
    shard.wait_for_all()
    if not shard.summarises:
        return None
    protocol = {"batchnorm_folded": folded, "precision": "float32" if params.autocast == "none"
                else f"{params.autocast} autocast", "noise_stream": f"chunks of {params.noise_chunk} samples per "
                "(seed, image, stream), drawn on the evaluation device; independent of batch_size"}
    rows = table.consolidate(lambda rows: rows["index"])
    wanted = set(indices)
    return rows[rows["index"].isin(wanted)].reset_index(drop=True), protocol


def _check_classes_covered(labels: torch.Tensor, num_classes: int, skip: int) -> None:
    """Refuse a selection that holds fewer than half of the classes it could hold: a test file whose rows
    repeat the classes with a period (the class-interleaved CIFAR-100 copy: period 100) gives one class for
    every ``skip`` that the period divides, and a certified accuracy of that class alone."""
    covered, possible = int(torch.unique(labels).numel()), min(int(labels.numel()), num_classes)
    if covered < possible / 2:
        raise RobustKDError(f"certified: every {skip}-th test image covers only {covered} of {num_classes} classes "
                            f"({labels.numel()} images; the test file's order repeats its classes); expected a skip "
                            f"that samples the classes, e.g. one coprime with {num_classes} such as {num_classes - 1}")


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
