"""``robustkd corrupt``: a generated CIFAR-C style set in the official .npy layout."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError


def register(commands: Any) -> None:
    corrupt = commands.add_parser("corrupt", help="write a generated CIFAR-C style set (official .npy layout)")
    corrupt.add_argument("--dataset", required=True, help="cifar100, cifar10 or synthetic (32x32 test images)")
    corrupt.add_argument("--out", type=Path, required=True, help="output folder (<corruption>.npy, labels.npy)")
    corrupt.add_argument("--corruptions", default="benchmark",
                         help="'benchmark' (the 15), 'extra' (speckle_noise, gaussian_blur, saturate), 'all', "
                              "or comma-separated names")
    corrupt.add_argument("--seed", type=int, default=0)
    corrupt.add_argument("--batch-size", type=int, default=1000)
    corrupt.add_argument("--n-examples", type=int, help="the first N test images only")
    corrupt.add_argument("--data-dir", help="data directory (default: $ROBUSTKD_DATA, else ./data)")
    corrupt.add_argument("--allow-embedded", action="store_true", help="fall back to the embedded CIFAR-100 subset")
    corrupt.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    corrupt.set_defaults(handler=run)


FULL_TEST_SET = 10_000  # CIFAR-10/100 test images: the per-severity block size robustbench assumes


def run(args: argparse.Namespace) -> int:
    from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS, check_corruption
    from robustkd.corruptions.generate import generate_corrupted_set
    from robustkd.data import resolve_data_dir
    from robustkd.data.sources import check_dataset_name, load_image_dataset
    from robustkd.utils.device import resolve_device
    from robustkd.utils.output_path import check_output_folder
    from robustkd.utils.seeding import MAX_SEED

    check_output_folder(args.out, option="--out", what="corrupted set")  # before any work: a folder or new
    groups = {"benchmark": list(BENCHMARK_CORRUPTIONS), "extra": list(EXTRA_CORRUPTIONS),
              "all": list(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)}
    names = groups.get(args.corruptions) or [check_corruption(n.strip()) for n in args.corruptions.split(",") if n.strip()]
    if not names:
        raise RobustKDError(f"--corruptions {args.corruptions!r} names no corruption; expected benchmark, extra, all or "
                            "comma-separated names")
    if not 0 <= args.seed <= MAX_SEED:
        raise RobustKDError(f"--seed {args.seed}: expected a non-negative integer of at most {MAX_SEED} (2^63 - 1)")
    check_dataset_name(args.dataset)
    if args.dataset == "imagenet":
        raise RobustKDError("--dataset imagenet: generate ImageNet-C with the authors' folder layout tools; "
                            "robustkd corrupt writes the CIFAR .npy layout (32x32 test sets)")
    if args.batch_size < 1 or (args.n_examples is not None and args.n_examples < 1):
        raise RobustKDError("--batch-size and --n-examples must be positive integers")
    test = load_image_dataset(args.dataset, "test", resolve_data_dir(args.data_dir), allow_embedded=args.allow_embedded)
    if args.n_examples is not None:
        test = test.subset(args.n_examples)
    manifest = generate_corrupted_set(test, args.out, names, seed=args.seed, batch_size=args.batch_size,
                                      device=resolve_device(args.device))
    print(f"{args.out}: {len(manifest['files']) - 1} corruptions x 5 severities of {manifest['n_images']} "
          f"{manifest['dataset']} test images (seed {manifest['seed']})")
    if manifest["n_images"] != FULL_TEST_SET:
        print(f"note: {manifest['n_images']} images per severity, not {FULL_TEST_SET}: robustbench's CIFAR-C loader "
              f"reads rows (s-1)*{FULL_TEST_SET}..s*{FULL_TEST_SET}, so these files are for robustkd only "
              f"(robustkd evaluate --official-dir {args.out} --n-examples {manifest['n_images']} reads them)")
    return 0
