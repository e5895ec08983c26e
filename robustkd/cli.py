"""The ``robustkd`` command line. Errors print one line on stderr and exit non-zero."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from robustkd import __version__
from robustkd.errors import RobustKDError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


def os_error_message(exc: OSError) -> str:
    """``<path>: <reason>`` of an OSError (both paths of a failed rename or copy)."""
    paths = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    reason = exc.strerror or str(exc)
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``distill``; defaults are None so the config file can fill them."""
    group = parser.add_argument_group("run")
    group.add_argument("--config", type=Path, help="TOML or YAML file with config keys (flags override it)")
    group.add_argument("--recipe", help="paper (240 epochs) or quick (a CPU-minutes budget)")
    group.add_argument("--dataset", help="cifar100, cifar10, imagenet or synthetic")
    group.add_argument("--data-dir", help="data directory (default: $ROBUSTKD_DATA, else ./data)")
    group.add_argument("--allow-embedded", action="store_true",
                       help="fall back to the embedded CIFAR-100 subset when the data is missing and cannot be downloaded")
    group.add_argument("--run-dir", type=Path, help="run directory (default: runs/<model>-<dataset>-<recipe>-s<seed>-<time>)")
    group.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last epoch")
    group.add_argument("--threads", type=int, help="CPU threads (default: OMP_NUM_THREADS, else one per core; "
                                                   "use 1 per process when several run at once); not part of the config")
    group.add_argument("--skip-finished", action="store_true",
                       help="with --run-dir: exit 0 if it holds this run finished, resume it if interrupted, start it "
                            "if absent; a run there with another config is refused (for scripts run again and again)")
    group.add_argument("--plan", action="store_true",
                       help="print what --skip-finished would do with --run-dir (finished already, to resume, to start) "
                            "and exit without training")
    group.add_argument("--stop-after", type=int, metavar="EPOCH", help="stop after this epoch (resume later)")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    hyper = parser.add_argument_group("hyperparameters")
    hyper.add_argument("--epochs", type=int)
    hyper.add_argument("--batch-size", type=int)
    hyper.add_argument("--lr", type=float)
    hyper.add_argument("--momentum", type=float)
    hyper.add_argument("--weight-decay", type=float)
    hyper.add_argument("--milestones", type=_int_list, help="epochs after which lr is multiplied by --lr-decay, e.g. 150,180,210")
    hyper.add_argument("--lr-decay", type=float)
    hyper.add_argument("--seed", type=int)
    hyper.add_argument("--noise-sd", type=float, help="Gaussian noise augmentation sigma in [0, 1] pixel units")
    hyper.add_argument("--deterministic", action="store_const", const=True, help="deterministic kernels (reproducible CPU runs)")
    hyper.add_argument("--channels-last", dest="channels_last", action="store_const", const=True)
    hyper.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False)
    hyper.add_argument("--amp", choices=["none", "bf16", "fp16"])
    hyper.add_argument("--compile", action="store_const", const=True, help="torch.compile the training step")
    hyper.add_argument("--train-limit", type=int, help="train on the first N training images only")
    hyper.add_argument("--test-limit", type=int, help="evaluate on the first N test images only")
    hyper.add_argument("--eval-every", type=int, help="evaluate every N epochs (and after the last)")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """One flag per DistillOptions field (``--kd-temperature``, ``--cmkd-weighting``, ...); see docs/cmkd.md."""
    import dataclasses

    from robustkd.distill.options import DistillOptions

    group = parser.add_argument_group("method options (defaults in docs/cmkd.md)")
    for option in dataclasses.fields(DistillOptions):
        kind = str if isinstance(option.default, str) else float
        group.add_argument(f"--{option.name.replace('_', '-')}", dest=f"opt_{option.name}", type=kind,
                           metavar="VALUE" if kind is float else "NAME")


class OneLineErrors(argparse.ArgumentParser):
    """argparse with the project's error format: one line ``robustkd: error: <command>: ...``, exit 2
    (``--help`` shows the usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("robustkd").strip()
        sys.stderr.write(f"robustkd: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="robustkd", description="Distil small image classifiers and measure their robustness.")
    parser.add_argument("--version", action="version", version=f"robustkd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("models", help="list the model names")

    train = commands.add_parser("train", help="train a model with cross-entropy (e.g. a teacher)")
    train.add_argument("--model", help="architecture name (see `robustkd models`)")
    train.add_argument("--init-from", help="start from this checkpoint's weights (same architecture and classes; "
                                           "fine-tuning); its path and SHA-256 go into the sidecar's init_from")
    add_train_options(train)

    distill = commands.add_parser("distill", help="distil a student from a teacher checkpoint")
    distill.add_argument("--teacher", help="teacher checkpoint (run directory, .json or .safetensors)")
    distill.add_argument("--student", dest="model",
                         help="student architecture (see `robustkd models`); a comma-separated list trains a cohort")
    distill.add_argument("--method", help="ce, kd, dist or cmkd, optionally with add-ons: kd+spearman, dist+spearman, ...; "
                                          "a comma-separated list (ce,kd,dist,cmkd) trains a cohort on shared batches, "
                                          "and cmkd[cmkd_spearman=0.5] sets options for one member")
    distill.add_argument("--seeds", help="comma-separated seeds (e.g. 0,1,2): a cohort with every method and student "
                                         "per seed; students of one seed share data order, augmentation and init")
    distill.add_argument("--no-fuse-teacher", dest="fuse_teacher", action="store_const", const=False,
                         help="keep the teacher's BatchNorm layers instead of folding them into its convolutions")
    add_train_options(distill)
    add_method_options(distill)

    evaluate = commands.add_parser("evaluate", help="run evaluation suites on checkpoints")
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

    results = commands.add_parser("results", help="the results database: import existing result directories")
    results.add_argument("action", choices=["import"])
    results.add_argument("paths", type=Path, nargs="+", help="result directories or folders holding them")
    results.add_argument("--db", type=Path, default=None, help="SQLite file (default: results/robustkd.db)")

    board = commands.add_parser("leaderboard", help="print or export the leaderboard from the results database")
    board.add_argument("action", nargs="?", choices=["show", "export"], default="show")
    board.add_argument("--db", type=Path, default=None, help="SQLite file (default: results/robustkd.db)")
    board.add_argument("--sort", help="column to sort by (e.g. corruption_acc, ece, pgd_acc)")
    board.add_argument("--ascending", action="store_true", help="sort ascending (default: best first)")
    board.add_argument("--dataset", help="only this dataset")
    board.add_argument("--method", help="only this method (ce, kd, dist, cmkd, or trained for models trained from labels)")
    board.add_argument("--teacher", help="only students of this teacher (sha256 prefix)")
    board.add_argument("--radius", type=float, default=0.25, help="certified-accuracy radius column (default 0.25)")
    board.add_argument("--format", default="csv", help="export: csv, json, md or html")
    board.add_argument("--out", type=Path, help="export: output file")
    board.add_argument("--grid-out", type=Path, help="export: also write the per-model 15x5 corruption table (CSV)")

    report = commands.add_parser("report", help="write the self-contained HTML report")
    report.add_argument("--out", type=Path, default=Path("report.html"))
    report.add_argument("--db", type=Path, default=None, help="SQLite file (default: results/robustkd.db)")
    report.add_argument("--radius", type=float, default=0.25)

    compare = commands.add_parser("compare", help="paired comparison of methods (per-seed differences, "
                                                  "t-intervals, verdicts) from the results database")
    compare.add_argument("--db", type=Path, default=None, help="SQLite file (default: results/robustkd.db)")
    compare.add_argument("--metric", action="append", help="a leaderboard column (clean_acc, ece, ...; repeatable; "
                                                           "default: every headline column)")
    compare.add_argument("--pair", action="append", help="A:B, compared as A - B (repeatable; e.g. cmkd:kd, "
                                                         "cmkd[cmkd_spearman=0.5]:cmkd; default: every pair)")
    compare.add_argument("--teacher", help="only students of this teacher (sha256 prefix)")
    compare.add_argument("--radius", type=float, default=0.25, help="certified-accuracy radius column (default 0.25)")
    compare.add_argument("--format", default="table", help="table (default), csv, json or md")
    compare.add_argument("--out", type=Path, help="write to this file (atomically) instead of printing")
    compare.add_argument("--plot", type=Path, help="also write a forest plot of the differences (PNG) to this file")

    suites = commands.add_parser("suites", help="list the evaluation suites: parameters (defaults, ranges), metrics, plots")
    suites.add_argument("name", nargs="?", help="one suite (default: all)")
    info = commands.add_parser("info", help="print a checkpoint's sidecar after verifying its weights")
    info.add_argument("checkpoint", type=Path)
    return parser


def config_values(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line (None where a flag was not given)."""
    import dataclasses

    from robustkd.train.config import TrainConfig

    return {field.name: getattr(args, field.name, None) for field in dataclasses.fields(TrainConfig)}


def _check_skip_finished(args: argparse.Namespace) -> None:
    for flag, given in (("--skip-finished", args.skip_finished), ("--plan", args.plan)):
        if given and args.resume:
            raise RobustKDError(f"{flag} and --resume: give one (--skip-finished resumes an interrupted run itself)")


def _finished_already(command: str, run_dir: Path) -> int:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{command}: finished already: {run_dir}")
    return 0


def _print_plan(command: str, run_dir: Path, resume: bool) -> int:
    """--plan: what --skip-finished would do with a run that is not finished."""
    print(f"{command}: {'to resume' if resume else 'to start'}: {run_dir}")
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from robustkd.train.command import TrainRunConfig, config_for_resume, skip_finished_plan, train_command
    from robustkd.train.config import read_config_file, resolve_config
    from robustkd.utils.threads import set_threads

    _check_skip_finished(args)
    set_threads(args.threads)
    cli = {**config_values(args), "init_from": args.init_from}
    resume = args.resume
    if resume:
        if args.run_dir is None:
            raise RobustKDError("--resume needs --run-dir naming the run to continue")
        config = config_for_resume(TrainRunConfig, args.run_dir, cli)
    else:
        file_values = read_config_file(args.config) if args.config else {}
        config = resolve_config(TrainRunConfig, file_values, cli)
        if args.skip_finished or args.plan:
            plan = skip_finished_plan(TrainRunConfig, config, args.run_dir)
            if plan is None:
                return _finished_already("train", args.run_dir)
            config, resume = plan
            if args.plan:
                return _print_plan("train", args.run_dir, resume)
    run, row = train_command(config, run_dir=args.run_dir, data_dir=args.data_dir, resume=resume,
                             stop_after=args.stop_after, allow_embedded=args.allow_embedded)
    _report(run, row)
    return 0


def _run_distill(args: argparse.Namespace) -> int:
    from robustkd.distill.command import DistillConfig, canonical_method, distill_command
    from robustkd.train.command import config_for_resume, skip_finished_plan
    from robustkd.train.config import read_config_file, resolve_config
    from robustkd.utils.threads import set_threads

    _check_skip_finished(args)
    set_threads(args.threads)
    cli = config_values(args)
    cli["teacher"], cli["method"], cli["fuse_teacher"] = args.teacher, args.method, args.fuse_teacher
    given_options = {k.removeprefix("opt_"): v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    if _is_cohort(args):
        return _run_cohort(args, cli, given_options)
    resume = args.resume
    if resume:
        if args.run_dir is None:
            raise RobustKDError("--resume needs --run-dir naming the run to continue")
        config = config_for_resume(DistillConfig, args.run_dir, {**cli, "method_options": given_options or None})
    else:
        file_values = read_config_file(args.config) if args.config else {}
        file_options = file_values.pop("method_options", {})
        if not isinstance(file_options, dict):
            raise RobustKDError(f"--config: [method_options] must be a table of option = value, got {file_options!r}")
        config = resolve_config(DistillConfig, file_values, {**cli, "method_options": {**file_options, **given_options}})
        if args.skip_finished or args.plan:
            config.method = canonical_method(config)  # the saved config holds the canonical name
            plan = skip_finished_plan(DistillConfig, config, args.run_dir)
            if plan is None:
                return _finished_already("distill", args.run_dir)
            config, resume = plan
            if args.plan:
                return _print_plan("distill", args.run_dir, resume)
    run, row = distill_command(config, run_dir=args.run_dir, data_dir=args.data_dir, resume=resume,
                               stop_after=args.stop_after, allow_embedded=args.allow_embedded)
    _report(run, row)
    return 0


def _is_cohort(args: argparse.Namespace) -> bool:
    from robustkd.distill.cohort_command import is_cohort_dir
    from robustkd.distill.cohort_spec import split_top_level

    if args.resume:
        return is_cohort_dir(args.run_dir)
    listed = args.method is not None and len(split_top_level(args.method)) > 1
    return args.seeds is not None or listed or (args.model is not None and "," in args.model)


def _run_cohort(args: argparse.Namespace, cli: dict, given_options: dict) -> int:
    from robustkd.data import resolve_data_dir
    from robustkd.distill.cohort_command import cohort_command, plan_members, plan_resume, skip_finished_plan
    from robustkd.distill.cohort_spec import cohort_members, parse_seeds
    from robustkd.train.config import read_config_file

    resume = args.resume
    if resume:
        if args.seeds is not None:
            raise RobustKDError("--resume continues the cohort with its saved seeds; drop --seeds")
        planned = plan_resume(args.run_dir, {**cli, "method_options": given_options or None})
    else:
        if args.seed is not None and args.seeds is not None:
            raise RobustKDError("--seed and --seeds: give one (a cohort takes --seeds 0,1,2)")
        file_values = read_config_file(args.config) if args.config else {}
        file_options = file_values.pop("method_options", {})
        if not isinstance(file_options, dict):
            raise RobustKDError(f"--config: [method_options] must be a table of option = value, got {file_options!r}")
        methods = args.method or file_values.pop("method", None) or "kd"
        students = args.model or file_values.pop("model", None) or "resnet8x4"
        seeds = parse_seeds(args.seeds) if args.seeds is not None else [int(args.seed or file_values.get("seed", 0))]
        base_options = {**file_options, **given_options}
        specs = cohort_members(str(methods), str(students), seeds, base_options)
        planned = plan_members(specs, file_values, cli, base_options)
        if args.skip_finished or args.plan:
            plan = skip_finished_plan(planned, args.run_dir)
            if plan is None:
                return _finished_already("distill", args.run_dir)
            planned, resume = plan
            if args.plan:
                return _print_plan("distill", args.run_dir, resume)
    cohort_dir, outcome = cohort_command(planned, cohort_dir=args.run_dir, data_dir=resolve_data_dir(args.data_dir),
                                         resume=resume, stop_after=args.stop_after, allow_embedded=args.allow_embedded)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    diverged = []
    for name, row in outcome.items():
        if "diverged" in row:
            diverged.append(name)
        elif "test_top1" in row:
            print(f"{name}: test top-1 {row['test_top1']:.2f}% top-5 {row['test_top5']:.2f}% after epoch {row['epoch']}; "
                  f"checkpoint {cohort_dir / name / 'model.json'}")
    if diverged:
        raise RobustKDError(f"cohort {cohort_dir}: {len(diverged)} of {len(outcome)} students diverged and stopped "
                            f"({', '.join(diverged)}); the others finished; see {cohort_dir / 'cohort.json'}")
    return 0


def _report(run, row: dict) -> None:
    if "test_top1" in row and int(os.environ.get("RANK", "0")) == 0:
        print(f"test top-1 {row['test_top1']:.2f}% top-5 {row['test_top5']:.2f}% after epoch {row['epoch']}; checkpoint {run.path / 'model.json'}")


def _run_evaluate(args: argparse.Namespace) -> int:
    from robustkd.checkpoint import load_checkpoint
    from robustkd.data import resolve_data_dir
    from robustkd.evaluate.result_folder import model_folder_name
    from robustkd.evaluate.runner import evaluate_model
    from robustkd.evaluate.suite import Need, suites_in_order
    from robustkd.evaluate.suite_file import load_suite
    from robustkd.results.store import check_database, is_recorded
    from robustkd.utils.device import resolve_device
    from robustkd.utils.threads import set_threads

    # "all" runs the suites that need a teacher only when there is one to compare with.
    every = [cls.name for cls in suites_in_order() if Need.TEACHER not in cls.needs or args.teacher]
    names = [name for entry in args.suite for name in (every if entry == "all" else [entry])]
    suites = [load_suite(name) for name in names]
    if args.official_dir is not None:
        suites = _with_official_dir(suites, args.official_dir)
    threads = set_threads(args.threads)
    if args.n_examples is not None and args.n_examples < 1:
        raise RobustKDError(f"--n-examples must be a positive integer, got {args.n_examples}")
    if args.overwrite and args.skip_finished:
        raise RobustKDError("--overwrite and --skip-finished contradict each other; pass one")
    db = None if args.no_db else (args.db or args.out / "robustkd.db")
    if db is not None:
        check_database(db)

    def keep_existing(target: Path) -> bool:
        # A finished result is kept with --skip-finished, and also when it was never recorded (the database
        # write failed after the suite finished): then this run records it instead of refusing.
        return args.skip_finished or (db is not None and not is_recorded(db, target))

    device = resolve_device(args.device)
    teacher = load_checkpoint(args.teacher, device) if args.teacher else None
    for path in args.checkpoint:
        checkpoint = load_checkpoint(path, device)
        if teacher is not None and (teacher.meta["dataset"], teacher.meta["num_classes"]) != (
                checkpoint.meta["dataset"], checkpoint.meta["num_classes"]):
            raise RobustKDError(f"--teacher: {args.teacher} is a {teacher.meta['dataset']} model with "
                                f"{teacher.meta['num_classes']} classes; {path} is {checkpoint.meta['dataset']} "
                                f"with {checkpoint.meta['num_classes']}")
        runs = evaluate_model(checkpoint.model, name=model_folder_name(checkpoint.meta["architecture"], checkpoint.sha256),
                              dataset=checkpoint.meta["dataset"], suites=suites, out_root=args.out,
                              data_dir=resolve_data_dir(args.data_dir), device=device, n_examples=args.n_examples,
                              model_info=checkpoint.meta, allow_embedded=args.allow_embedded,
                              overwrite=args.overwrite, seed=int(checkpoint.meta.get("seed", 0)),
                              teacher=teacher.model if teacher else None,
                              teacher_info={**teacher.meta, "weights_sha256": teacher.sha256} if teacher else None,
                              keep_existing=keep_existing, threads=threads)
        for run in runs:
            if db is not None and (run.written or not is_recorded(db, run.target)):
                _record(db, run.target)
            if not run.written:
                print(f"{run.target}: finished already")
                continue
            summary = json.loads((run.target / "summary.json").read_text())
            shown = ", ".join(f"{k} {v:.4g}" for k, v in summary["metrics"].items() if isinstance(v, float))
            print(f"{run.target}: {shown}{' (subset)' if summary['subset'] else ''}")
    return 0


def _with_official_dir(suites: list, folder: Path) -> list:
    """The corruption suites set to read the official files in ``folder`` (recorded in their protocol)."""
    import dataclasses

    if not any(suite.name == "corruption" for suite in suites):
        raise RobustKDError("--official-dir applies to the corruption suite; add --suite corruption")
    if not folder.is_dir():
        raise RobustKDError(f"--official-dir {folder}: no such folder")
    return [dataclasses.replace(suite, params=dataclasses.replace(suite.params, official_dir=str(folder.resolve()),
                                                                  source="official"))
            if suite.name == "corruption" else suite for suite in suites]


FULL_TEST_SET = 10_000  # CIFAR-10/100 test images: the per-severity block size robustbench assumes


def _run_corrupt(args: argparse.Namespace) -> int:
    from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS, check_corruption
    from robustkd.corruptions.generate import generate_corrupted_set
    from robustkd.data import resolve_data_dir
    from robustkd.data.sources import check_dataset_name, load_image_dataset
    from robustkd.utils.device import resolve_device

    groups = {"benchmark": list(BENCHMARK_CORRUPTIONS), "extra": list(EXTRA_CORRUPTIONS),
              "all": list(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)}
    names = groups.get(args.corruptions) or [check_corruption(n.strip()) for n in args.corruptions.split(",") if n.strip()]
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


def _record(db: Path, result_dir: Path) -> None:
    from robustkd.results.store import record_result

    outcome = record_result(db, result_dir)
    verb = f"replaced its {outcome.replaced} earlier rows with" if outcome.replaced else "added"
    print(f"{db}: {verb} {outcome.rows} rows for {result_dir}")


def _default_db(db: Path | None) -> Path:
    from robustkd.results.store import DEFAULT_DB

    return db or DEFAULT_DB


def _run_results(args: argparse.Namespace) -> int:
    from robustkd.results.store import find_result_dirs

    found = list(find_result_dirs(args.paths))
    if not found:
        raise RobustKDError(f"results import: no result directories (with summary.json) under {', '.join(map(str, args.paths))}")
    for result_dir in found:
        _record(_default_db(args.db), result_dir)
    return 0


def _run_leaderboard(args: argparse.Namespace) -> int:
    from robustkd.results.export import export_corruption_grid, export_leaderboard
    from robustkd.results.leaderboard import build_leaderboard, corruption_grid, display_table, filter_and_sort
    from robustkd.results.store import read_results

    results = read_results(_default_db(args.db))
    table = filter_and_sort(build_leaderboard(results, args.radius), dataset=args.dataset, method=args.method,
                            teacher=args.teacher, sort=args.sort, ascending=True if args.ascending else None,
                            radius=args.radius)
    if args.action == "show":
        if args.out or args.grid_out:
            raise RobustKDError("--out/--grid-out belong to 'robustkd leaderboard export'")
        import pandas as pd

        with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 40):
            print(display_table(table, args.radius).to_string(index=False))
        return 0
    if args.out is None:
        raise RobustKDError("leaderboard export needs --out FILE")
    grid = corruption_grid(results) if args.grid_out else None
    if grid is not None and grid.empty:  # refused before anything is written
        raise RobustKDError("leaderboard export --grid-out: the database holds no corruption results")
    export_leaderboard(table, args.format, args.out, args.radius)
    print(f"wrote {args.out} ({len(table)} models, {args.format})")
    if args.grid_out:
        export_corruption_grid(grid, args.grid_out)
        print(f"wrote {args.grid_out} (corruption accuracy per model, corruption and severity)")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from robustkd.results.report import render_report
    from robustkd.results.store import read_results
    from robustkd.utils.atomic import write_text_atomic

    write_text_atomic(args.out, render_report(read_results(_default_db(args.db)), args.radius))
    print(f"wrote {args.out}")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    from robustkd.results.compare_format import FORMATS, render_comparison, write_comparison
    from robustkd.results.paired import compare, parse_pair
    from robustkd.results.store import read_results

    if args.format not in FORMATS:
        raise RobustKDError(f"--format: {args.format!r}; expected one of {', '.join(FORMATS)}")
    pairs = [parse_pair(text) for text in args.pair or []]
    comparison = compare(read_results(_default_db(args.db)), metrics=args.metric, pairs=pairs or None,
                         teacher=args.teacher, radius=args.radius)
    if args.plot is None:
        text = write_comparison(comparison, args.format, args.out)
    else:  # both outputs are made first, then written together: a failure leaves neither
        from robustkd.results.paired_plot import comparison_figure, save_comparison_outputs

        text = render_comparison(comparison, args.format)
        save_comparison_outputs(comparison_figure(comparison), args.plot, text, args.out)
        print(f"wrote {args.plot}", file=sys.stderr if args.out is None else sys.stdout)
        text = text if args.out is None else None
    if text is not None:
        sys.stdout.write(text)
    else:
        print(f"wrote {args.out} ({len(comparison.rows)} comparisons, {args.format})")
    return 0


def _run_suites(args: argparse.Namespace) -> int:
    from robustkd.evaluate.suite_describe import describe_suites

    print(describe_suites(args.name), end="")
    return 0


def _run_info(args: argparse.Namespace) -> int:
    from robustkd.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    print(json.dumps(checkpoint.meta, indent=2, sort_keys=True))
    return 0


def _run_models(_: argparse.Namespace) -> int:
    from robustkd.models import model_names

    print("\n".join(model_names()))
    print("torchvision:<name>  (ImageNet models, e.g. torchvision:resnet50)")
    return 0


HANDLERS = {"train": _run_train, "distill": _run_distill, "evaluate": _run_evaluate, "corrupt": _run_corrupt,
            "results": _run_results, "leaderboard": _run_leaderboard, "report": _run_report, "info": _run_info,
            "models": _run_models, "compare": _run_compare, "suites": _run_suites}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
    except RobustKDError as exc:
        print(f"robustkd: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # an unreadable input or unwritable output: the path and the reason, no traceback
        print(f"robustkd: error: {os_error_message(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception:  # a bug: the traceback is for the report, and the last line says so
        import traceback

        traceback.print_exc()
        print(f"robustkd: internal error in '{args.command}' (a bug, not a bad input): please report it with the "
              "traceback above", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    except KeyboardInterrupt:
        hint = ("run the same command again to resume" if args.command in ("evaluate", "corrupt")
                else "resume with --resume --run-dir <run>")
        print(f"robustkd: interrupted; {hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
