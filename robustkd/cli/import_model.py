"""``robustkd import``: a model of another library as a verified robustkd checkpoint (robustkd.jobs.import_model)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _model_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a Python identifier as KEY, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "import", help="bring in a timm, torchvision, RobustBench, ONNX or foreign state-dict model as a checkpoint",
        description="Write a verified robustkd checkpoint (safetensors + sidecar) of SOURCE into the new folder --out: "
                    "timm:NAME, torchvision:NAME, robustbench:DATASET/THREAT/NAME, a .onnx file, or a state dict "
                    "(.pth, .pt, .safetensors) of a `robustkd models` architecture. Nothing is downloaded and no "
                    "code in a file is run. See docs/models.md.")
    parser.add_argument("source", metavar="SOURCE")
    parser.add_argument("--out", type=Path, required=True, help="new (or empty) folder for the checkpoint")
    parser.add_argument("--architecture", help="a state dict's architecture (a `robustkd models` name)")
    parser.add_argument("--dataset", help="cifar100, cifar10, imagenet or synthetic (default: imagenet for timm and "
                                          "torchvision, the entry's for RobustBench; required otherwise)")
    parser.add_argument("--num-classes", type=int, help="the class count, checked against the dataset's")
    parser.add_argument("--weights", type=Path, help="the weights file (timm, torchvision, RobustBench)")
    parser.add_argument("--model-dir", type=Path, help="RobustBench's model folder (default: ./models)")
    parser.add_argument("--torchvision-weights", metavar="ENUM",
                        help="the torchvision weights the file holds (IMAGENET1K_V1, DEFAULT, ...): their "
                             "preprocessing is used, and their cached file when --weights is not given")
    parser.add_argument("--model-arg", action="append", type=_model_arg, default=[], metavar="KEY=VALUE",
                        help="a constructor keyword argument for timm or torchvision (VALUE as JSON, else text); "
                             "repeatable")
    parser.add_argument("--mean", type=float, nargs=3, metavar="M", help="input mean per channel (with --std)")
    parser.add_argument("--std", type=float, nargs=3, metavar="S", help="input std per channel (with --mean)")
    parser.add_argument("--input-size", type=int, help="ImageNet: the centre crop's size")
    parser.add_argument("--crop-pct", type=float, help="ImageNet: crop fraction (resize = floor(input size / crop))")
    parser.add_argument("--interpolation", help="ImageNet: resize interpolation (bilinear, bicubic, ...)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustkd.imports import ImportOptions
    from robustkd.jobs.import_model import ImportRequest, import_model

    options = ImportOptions(architecture=args.architecture, dataset=args.dataset, num_classes=args.num_classes,
                            weights=args.weights, mean=args.mean, std=args.std, model_dir=args.model_dir,
                            torchvision_weights=args.torchvision_weights, model_kwargs=dict(args.model_arg),
                            input_size=args.input_size, crop_pct=args.crop_pct, interpolation=args.interpolation)
    import_model(ImportRequest(args.source, args.out, options), announce=print)
    return 0
