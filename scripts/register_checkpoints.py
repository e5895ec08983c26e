"""Commit finished runs' final weights to the repository and name them in checkpoints/registry.json.

    python scripts/register_checkpoints.py runs/study/long-s0/resnet8-dist-s0 runs/study/long-s0/resnet8-cmkd-s0 \
        --into checkpoints/study/long-s0 --prefix study/long-s0/ --data-dir data \
        --command "robustkd study run cmkd --cohort long-s0" --trained-on "2 CPU cores, 2026-12-05"

Each run lands in ``<into>/<run folder name>/`` (model.safetensors + model.json) under the name
``<prefix><run folder name>``; the data files the runs trained and were tested on are hashed into the entry.
The work is robustkd.checkpoint.registry.register_run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from robustkd.checkpoint.io import sha256_file
from robustkd.checkpoint.registry import register_run
from robustkd.data.cifar import CIFAR_SPECS
from robustkd.errors import RobustKDError

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--into", type=Path, required=True, help="the repository folder that receives them")
    parser.add_argument("--prefix", default="", help="registry names are <prefix><run folder name>")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the CIFAR data the runs used")
    parser.add_argument("--command", required=True, help="the command that trained them")
    parser.add_argument("--trained-on", required=True, help="machine, torch version and date")
    parser.add_argument("--registry", type=Path, default=REPO / "checkpoints" / "registry.json")
    args = parser.parse_args(argv)
    try:
        for run in args.runs:
            if not (run / "model.json").is_file():
                raise RobustKDError(f"{run}: not a finished run folder (no model.json)")
        datasets = {json.loads((run / "model.json").read_text())["dataset"] for run in args.runs}
        data_sha256 = {}
        for dataset in sorted(datasets):
            spec = CIFAR_SPECS[dataset]
            for name in spec.train_files + spec.test_files:
                data_sha256[f"{spec.folder}/{name}"] = sha256_file(args.data_dir / spec.folder / name)
        for run in args.runs:
            entry = register_run(run, args.into / run.name, args.registry, name=f"{args.prefix}{run.name}",
                                 command=args.command, trained_on=args.trained_on, data_sha256=data_sha256,
                                 repo_root=REPO)
            print(f"{entry['name']}: {entry['path']} top-1 {entry['top1']} sha256 {entry['weights_sha256'][:12]}")
    except (RobustKDError, KeyError, OSError) as error:
        print(f"robustkd: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
