"""What robustkd knows: ``models``, ``suites`` and ``info`` (a checkpoint's verified sidecar)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    commands.add_parser("models", help="list the model names").set_defaults(handler=run_models)
    suites = commands.add_parser("suites", help="list the evaluation suites: parameters (defaults, ranges), metrics, plots")
    suites.add_argument("name", nargs="?", help="one suite (default: all)")
    suites.set_defaults(handler=run_suites)
    info = commands.add_parser("info", help="print a checkpoint's sidecar after verifying its weights")
    info.add_argument("checkpoint", type=Path)
    info.set_defaults(handler=run_info)


def run_models(_: argparse.Namespace) -> int:
    from robustkd.models import model_names

    print("\n".join(model_names()))
    print("torchvision:<name>  (ImageNet models, e.g. torchvision:resnet50)")
    return 0


def run_suites(args: argparse.Namespace) -> int:
    from robustkd.evaluate.suite_describe import describe_suites

    print(describe_suites(args.name), end="")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from robustkd.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    print(json.dumps(checkpoint.meta, indent=2, sort_keys=True))
    return 0
