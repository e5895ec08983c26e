"""The results commands: ``results import``, ``leaderboard``, ``report`` and ``compare`` (robustkd.results)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError


def register(commands: Any) -> None:
    from robustkd.cli.evaluate import add_evaluation_arguments

    results = commands.add_parser("results", help="the results database: import existing result directories, "
                                                  "merge the shards of an evaluation")
    actions = results.add_subparsers(dest="action", required=True, metavar="{import,merge}")
    imported = actions.add_parser("import", help="record existing result directories in the database")
    imported.add_argument("paths", type=Path, nargs="+", help="result directories or folders holding them")
    imported.add_argument("--db", type=Path, default=None, help="SQLite file (default: results/robustkd.db)")
    imported.set_defaults(handler=run_results)
    merge = actions.add_parser("merge", help="summarise and record an evaluation run as --shard K/N jobs (the same "
                                             "arguments as robustkd evaluate, without --shard)")
    add_evaluation_arguments(merge)
    merge.set_defaults(handler=run_merge)

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
    board.set_defaults(handler=run_leaderboard)

    report = commands.add_parser("report", help="write the self-contained HTML report")
    report.add_argument("--out", type=Path, default=Path("report.html"))
    report.add_argument("--db", type=Path, default=None, help="SQLite file (default: results/robustkd.db)")
    report.add_argument("--radius", type=float, default=0.25)
    report.set_defaults(handler=run_report)

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
    compare.add_argument("--interval", default="seeds", help="what the verdicts use: seeds (t-interval over seeds, "
                                                             "default) or images (bootstrap over seeds and test images)")
    compare.add_argument("--holm", action="store_true", help="Holm's family-wise adjustment over the verdict table")
    compare.set_defaults(handler=run_compare)


def _db(db: Path | None) -> Path:
    from robustkd.results.store import DEFAULT_DB

    return db or DEFAULT_DB


def run_results(args: argparse.Namespace) -> int:
    from robustkd.results.store import find_result_dirs, record_result

    found = list(find_result_dirs(args.paths))
    if not found:
        raise RobustKDError(f"results import: no result directories (with summary.json) under {', '.join(map(str, args.paths))}")
    db = _db(args.db)
    for result_dir in found:
        outcome = record_result(db, result_dir)
        verb = f"replaced its {outcome.replaced} earlier rows with" if outcome.replaced else "added"
        print(f"{db}: {verb} {outcome.rows} rows for {result_dir}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from robustkd.cli.evaluate import run
    from robustkd.evaluate.sharding import Shard, ShardMode

    return run(args, shard=Shard(mode=ShardMode.MERGE))


def run_leaderboard(args: argparse.Namespace) -> int:
    from robustkd.results.export import export_corruption_grid, export_leaderboard
    from robustkd.results.leaderboard import build_leaderboard, corruption_grid, display_table, filter_and_sort
    from robustkd.results.store import read_results
    from robustkd.utils.output_path import check_output_files

    if args.action == "export":  # every output checked before the database is read
        if args.out is None:
            raise RobustKDError("leaderboard export needs --out FILE")
        check_output_files([("--out", args.out, "leaderboard"), ("--grid-out", args.grid_out, "corruption grid")],
                           database=_db(args.db))
    results = read_results(_db(args.db))
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
    grid = corruption_grid(results) if args.grid_out else None
    if grid is not None and grid.empty:  # refused before anything is written
        raise RobustKDError("leaderboard export --grid-out: the database holds no corruption results")
    export_leaderboard(table, args.format, args.out, args.radius)
    print(f"wrote {args.out} ({len(table)} models, {args.format})")
    if args.grid_out:
        export_corruption_grid(grid, args.grid_out)
        print(f"wrote {args.grid_out} (corruption accuracy per model, corruption and severity)")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from robustkd.results.report import render_report
    from robustkd.results.store import read_results
    from robustkd.utils.atomic import write_text_atomic
    from robustkd.utils.output_path import check_output_file

    check_output_file(args.out, option="--out", what="report", database=_db(args.db))
    write_text_atomic(args.out, render_report(read_results(_db(args.db)), args.radius), follow_links=True)
    print(f"wrote {args.out}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from robustkd.results.compare_format import FORMATS, render_comparison, write_comparison
    from robustkd.results.paired import compare, parse_pair
    from robustkd.results.store import read_results
    from robustkd.utils.output_path import check_output_files

    if args.format not in FORMATS:
        raise RobustKDError(f"--format: {args.format!r}; expected one of {', '.join(FORMATS)}")
    check_output_files([("--out", args.out, "comparison"), ("--plot", args.plot, "forest plot")],
                       database=_db(args.db))
    pairs = [parse_pair(text) for text in args.pair or []]
    comparison = compare(read_results(_db(args.db)), metrics=args.metric, pairs=pairs or None,
                         teacher=args.teacher, radius=args.radius, interval=args.interval, family_wise=args.holm)
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
