"""``robustkd train``: a model trained from labels (robustkd.jobs.train)."""

from __future__ import annotations

import argparse
from typing import Any

from robustkd.cli.common import add_train_options, config_values, is_main_rank, run_mode, say_plan_line


def register(commands: Any) -> None:
    train = commands.add_parser("train", help="train a model with cross-entropy (e.g. a teacher)")
    train.add_argument("--model", help="architecture name (see `robustkd models`)")
    train.add_argument("--init-from", help="start from this checkpoint's weights (same architecture and classes; "
                                           "fine-tuning); its path and SHA-256 go into the sidecar's init_from")
    add_train_options(train)
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustkd.jobs.run_plan import Action
    from robustkd.jobs.train import TrainRequest, plan_training, run_training
    from robustkd.utils.threads import set_threads

    mode = run_mode(args)
    set_threads(args.threads)
    request = TrainRequest({**config_values(args), "init_from": args.init_from}, config_file=args.config,
                           run_dir=args.run_dir, mode=mode)
    plan = plan_training(request)
    if plan.action is Action.SKIP or args.plan:
        say_plan_line(plan.line("train"))
        return 0
    outcome = run_training(plan, data_dir=args.data_dir, stop_after=args.stop_after, allow_embedded=args.allow_embedded)
    row = outcome.row
    if "test_top1" in row and is_main_rank():
        print(f"test top-1 {row['test_top1']:.2f}% top-5 {row['test_top5']:.2f}% after epoch {row['epoch']}; "
              f"checkpoint {outcome.run_dir / 'model.json'}")
    return 0
