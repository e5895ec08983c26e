"""``robustkd evaluate``: suites on checkpoints, recorded in the results database (robustkd.jobs.evaluate)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    evaluate = commands.add_parser("evaluate", help="run evaluation suites on checkpoints (under torchrun: "
                                   "shared out among its ranks)")
    add_evaluation_arguments(evaluate)
    evaluate.add_argument("--shard", help="K/N: do shard K (from 0) of N scheduler jobs' share of the work items and "
                                          "stop; then 'robustkd results merge' with the same arguments")
    evaluate.set_defaults(handler=run)


def add_evaluation_arguments(evaluate: argparse.ArgumentParser) -> None:
    """The arguments of ``robustkd evaluate`` that ``robustkd results merge`` repeats."""
    evaluate.add_argument("--checkpoint", type=Path, action="append", required=True, help="checkpoint (repeatable)")
    evaluate.add_argument("--suite", action="append", required=True,
                          help="packaged suite name (clean, corruption, adversarial, calibration, certified, "
                               "relations, paper_certified, quick/adversarial, quick/certified), 'all', or a path "
                               "ending in .toml (repeatable); a name never reads ./eval_suites/")
    evaluate.add_argument("--teacher", type=Path, help="teacher checkpoint (the relations suite compares against it)")
    evaluate.add_argument("--n-examples", type=int, help="evaluate the first N test images (marked as a subset)")
    evaluate.add_argument("--out", type=Path, default=Path("results"), help="result root (default: results)")
    evaluate.add_argument("--data-dir", help="data directory (default: $ROBUSTKD_DATA, else ./data)")
    evaluate.add_argument("--allow-embedded", action="store_true", help="fall back to the embedded CIFAR-100 subset")
    evaluate.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    evaluate.add_argument("--overwrite", action="store_true", help="replace existing results of the same suite")
    evaluate.add_argument("--official-dir", type=Path,
                          help="CIFAR-C .npy folder or ImageNet-C root for the corruption suite (sets source = official)")
    evaluate.add_argument("--threads", type=int, help="CPU threads (default: OMP_NUM_THREADS, else one per core; "
                                                      "use 1 per process when several run at once)")
    evaluate.add_argument("--skip-finished", action="store_true",
                          help="keep finished results (recording them in the database if they are not) and run the rest")
    evaluate.add_argument("--db", type=Path, default=None,
                          help="record results in this SQLite file (default: <out>/robustkd.db)")
    evaluate.add_argument("--no-db", action="store_true", help="do not record results in a database")
    evaluate.add_argument("--selection", default="all", choices=["all", "robustbench5000", "every100"],
                          help="named test images: all (default), robustbench5000 (RobustBench's ImageNet 5,000), "
                               "every100 (every 100th: Cohen et al.'s ImageNet certification set)")
    evaluate.add_argument("--workers", type=int, help="DataLoader processes decoding ImageNet images (default: up to 8; "
                                                      "0: decode in this process)")


def run(args: argparse.Namespace, shard: Any = None) -> int:
    from robustkd.evaluate.sharding import Shard
    from robustkd.jobs.evaluate import Recording, evaluate_checkpoints

    if shard is None and getattr(args, "shard", None) is not None:
        shard = Shard.parse(args.shard)
    evaluate_checkpoints(args.checkpoint, args.suite, out=args.out,
                         recording=Recording.under(args.out, args.db, enabled=not args.no_db), teacher=args.teacher,
                         n_examples=args.n_examples, data_dir=args.data_dir, allow_embedded=args.allow_embedded,
                         device=args.device, overwrite=args.overwrite, skip_finished=args.skip_finished,
                         official_dir=args.official_dir, threads=args.threads, announce=print,
                         selection=args.selection, shard=shard, workers=args.workers)
    return 0
