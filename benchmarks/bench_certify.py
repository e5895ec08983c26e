"""Certification speed: robustkd's ``Smooth`` against Cohen et al.'s loop, same model, same noise.

reference: the structure of ``Smooth._sample_noise`` in Cohen, Rosenfeld & Kolter's ``code/core.py``
  (locuslab/smoothing), reimplemented: one image at a time, per batch ``x.repeat``, ``torch.randn_like``
  noise times sigma, the model as given, ``argmax`` moved to the host and counted there with numpy
  (their ``_count_arr`` loop), batch ``--ref-batch`` (their certify.py default: 1000).
robustkd: ``Smooth.sample_counts`` on the inference copy (BatchNorm folded, channels_last), noise from
  the chunked stream on the device, votes counted on the device, batch ``--batch``.
forward limit: the inference copy's forward pass alone on preloaded inputs of the same size.

Timed work per image: n0 + n samples (what ``certify`` does). Medians over ``--repeats`` (reference and
robustkd alternate, so background load hits both alike). Counts check: the reference loop fed robustkd's
noise stream with the same batches must give exactly ``Smooth``'s counts on the same model (asserted); the
counts of the inference copy against the model as given are reported (they differ only where float32
rounding flips a near-tie).

  python benchmarks/bench_certify.py --device cpu --n 2000 --images 2
  python benchmarks/bench_certify.py --device cuda --n 100000 --batch 10000 --images 4 --bf16
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustkd.data.sources import load_image_dataset
from robustkd.evaluate.smoothing import ESTIMATION, SELECTION, Smooth, inference_model, noise_batches
from robustkd.models.zoo import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cohen_counts(model: nn.Module, x: torch.Tensor, num: int, batch_size: int, sigma: float, num_classes: int,
                 noise: list[torch.Tensor] | None = None) -> np.ndarray:
    """Cohen et al.'s ``_sample_noise``: (num_classes,) counts; ``noise`` (batches of N(0, 1)) replaces randn_like."""
    with torch.no_grad():
        counts = np.zeros(num_classes, dtype=int)
        for index in range(math.ceil(num / batch_size)):
            this_batch_size = min(batch_size, num)
            num -= this_batch_size
            batch = x.repeat((this_batch_size, 1, 1, 1))
            draws = torch.randn_like(batch) if noise is None else noise[index]
            predictions = model(batch + draws * sigma).argmax(1)
            for idx in predictions.cpu().numpy():  # their _count_arr
                counts[idx] += 1
        return counts


def time_call(function, device: torch.device) -> float:
    _sync(device)
    started = time.perf_counter()
    function()
    _sync(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet8x4")
    parser.add_argument("--checkpoint", help="a run directory; default: the architecture with seeded random weights")
    parser.add_argument("--images", type=int, default=2, help="test images certified per repeat")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=1000, help="robustkd's batch size")
    parser.add_argument("--ref-batch", type=int, default=1000, help="the reference's batch size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--bf16", action="store_true", help="also time robustkd with bf16 autocast (a different classifier)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    test = load_image_dataset("cifar100", "test", Path("data"), allow_embedded=True, announce=lambda _: None)
    if args.checkpoint:
        from robustkd.checkpoint import load_checkpoint

        model = load_checkpoint(Path(args.checkpoint)).model
    else:
        torch.manual_seed(0)
        model = build_model(args.model, test.num_classes, test.mean, test.std)
    model = model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    base, folded = inference_model(model)
    images = [test.images[i].to(device).float() / 255.0 for i in range(args.images)]
    classes = test.num_classes

    # Counts: the reference loop with robustkd's noise (same batches) on the same model gives the same counts.
    smooth_same = Smooth(model, classes, args.sigma)
    check_n = min(args.n, 4 * args.batch)
    noise = list(noise_batches(tuple(images[0].shape), check_n, args.batch, seed=7, stream=ESTIMATION, device=device))
    ours = smooth_same.sample_counts(images[0], check_n, args.batch, seed=7).cpu().numpy()
    reference = cohen_counts(model, images[0], check_n, args.batch, args.sigma, classes, noise=noise)
    assert np.array_equal(ours, reference), (ours, reference)
    folded_counts = Smooth(base, classes, args.sigma).sample_counts(images[0], check_n, args.batch, seed=7).cpu().numpy()
    folded_differ = int(np.abs(folded_counts - ours).sum() // 2)

    smooth = Smooth(base, classes, args.sigma)
    smooth_bf16 = Smooth(base, classes, args.sigma, autocast_dtype=torch.bfloat16)

    def run_reference() -> None:
        for x in images:
            cohen_counts(model, x, args.n0, args.ref_batch, args.sigma, classes)
            cohen_counts(model, x, args.n, args.ref_batch, args.sigma, classes)

    def run_ours(which: Smooth) -> None:
        for index, x in enumerate(images):
            which.sample_counts(x, args.n0, args.batch, index, SELECTION)
            which.sample_counts(x, args.n, args.batch, index, ESTIMATION).cpu()

    forward_inputs = torch.rand(min(args.batch, args.n), *images[0].shape, device=device).contiguous(
        memory_format=torch.channels_last)

    def run_forward() -> None:
        with torch.no_grad():
            for _ in images:
                for size in (args.n0, args.n):
                    for start in range(0, size, len(forward_inputs)):
                        base(forward_inputs[:min(len(forward_inputs), size - start)]).argmax(1)

    run_ours(smooth)  # warm-up (allocator, kernels)
    cohen_counts(model, images[0], args.n0, args.ref_batch, args.sigma, classes)
    times: dict[str, list[float]] = {"reference": [], "robustkd": [], "forward_limit": []}
    if args.bf16:
        times["robustkd_bf16"] = []
    for _ in range(args.repeats):
        times["reference"].append(time_call(run_reference, device) / args.images)
        times["robustkd"].append(time_call(lambda: run_ours(smooth), device) / args.images)
        times["forward_limit"].append(time_call(run_forward, device) / args.images)
        if args.bf16:
            times["robustkd_bf16"].append(time_call(lambda: run_ours(smooth_bf16), device) / args.images)
    medians = {key: statistics.median(values) for key, values in times.items()}
    result = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "model": args.checkpoint or args.model,
        "n0": args.n0, "n": args.n, "batch": args.batch, "ref_batch": args.ref_batch, "images": args.images,
        "repeats": args.repeats, "batchnorm_folded": folded, "seconds_per_image": medians, "all_seconds": times,
        "speedup_vs_reference": medians["reference"] / medians["robustkd"],
        "robustkd_over_forward_limit": medians["robustkd"] / medians["forward_limit"],
        "same_noise_counts_equal": True, "same_noise_samples": check_n,
        "inference_copy_votes_changed": folded_differ,
    }
    if args.bf16:
        result["speedup_bf16_vs_reference"] = medians["reference"] / medians["robustkd_bf16"]
    print(f"certify ({args.n0} + {args.n} samples per image) on {result['device_name']}, {args.model}, "
          f"{torch.get_num_threads()} threads, medians of {args.repeats}:")
    for key, value in medians.items():
        print(f"  {key:15s} {value:8.3f} s/image  ({(args.n0 + args.n) / value:9.0f} samples/s)")
    print(f"  speedup vs Cohen et al.'s loop: {result['speedup_vs_reference']:.2f}x; "
          f"robustkd / forward limit: {result['robustkd_over_forward_limit']:.2f}")
    print(f"  same noise, same model: counts equal over {check_n} samples; inference copy (BatchNorm folded: "
          f"{folded}) changed {folded_differ} of {check_n} votes")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
