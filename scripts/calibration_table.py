"""The calibration suite's figures per model and seed, with its fitted temperatures, from a results database.

    python scripts/calibration_table.py --db results/study/robustkd.db --out docs/study/v2_calibration.csv

One row per (checkpoint, suite result) of the ``calibration`` suite: model, method, seed, training epochs, ECE,
adaptive ECE, NLL and Brier before and after temperature scaling, the temperature (and, cross-fitted, the two
folds' temperatures) and which images it was fitted on (the result's ``temperature_fit`` protocol entry). The
leaderboard keeps only the headline columns; this file is the source of docs/study.md's temperature figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from robustkd.errors import RobustKDError
from robustkd.results.store import read_results

METRICS = ("accuracy", "ece", "ece_ts", "adaptive_ece", "adaptive_ece_ts", "nll", "nll_ts", "brier", "brier_ts",
           "temperature", "temperature_fold_0", "temperature_fold_1")


def calibration_table(db: Path) -> pd.DataFrame:
    rows = read_results(db)
    rows = rows[rows["suite"] == "calibration"]
    if rows.empty:
        raise RobustKDError(f"{db}: no calibration results")
    keys = ["checkpoint_sha256", "result_dir"]
    table = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc="first")
    table = table[[metric for metric in METRICS if metric in table.columns]]
    about = rows.drop_duplicates(keys).set_index(keys)
    table.insert(0, "model", about["model_name"])
    table.insert(1, "method", about["method"].fillna("trained"))
    table.insert(2, "seed", about["seed"])
    # Series, not lists: the pivot's rows are sorted by checkpoint, ``about``'s are in the database's order.
    table.insert(3, "epochs", about["training"].map(lambda text: json.loads(text or "{}").get("epochs")))
    table["temperature_fit"] = about["protocol"].map(lambda text: json.loads(text or "{}").get("temperature_fit"))
    table = table.reset_index().drop(columns=["result_dir"])
    table["checkpoint_sha256"] = table["checkpoint_sha256"].str[:12]
    return table.sort_values(["epochs", "method", "seed"], na_position="first")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        table = calibration_table(args.db)
    except RobustKDError as error:
        print(f"robustkd: error: {error}", file=sys.stderr)
        return 2
    table.to_csv(args.out, index=False, float_format="%.6g")
    print(f"{args.out}: {len(table)} calibration results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
