"""Holm-adjusted verdicts for a committed `robustkd compare --format md` file, from its per-seed differences.

    python scripts/holm_from_compare.py docs/study/compare_headline.md --out docs/study/compare_headline_holm.csv

For results whose database is gone (docs/study.md's v1 cohorts), the Markdown file is the only record: this
reads each group's "Per-seed differences" rows (pair, metric, the per-seed a - b values as printed, so rounded
to the printed decimals), recomputes the two-sided one-sample t-test p-value of the mean difference (the test
behind compare's t-interval), and adjusts the p-values of each group's rows together by Holm's step-down method
(robustkd.results.image_level.holm). `robustkd compare --holm` does the same from a database; this script exists
only because the v1 databases were not kept. A verdict needs p_holm < 0.05 and the sign of the mean.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from robustkd.results.image_level import holm

SEED_VALUE = re.compile(r"s(\d+): ([+-]?[0-9.]+)")


def per_seed_rows(markdown: str) -> pd.DataFrame:
    """One row per (group, pair, metric) of the file's per-seed tables, with the per-seed differences."""
    rows, group, in_table = [], "", False
    for line in markdown.splitlines():
        if line.startswith("### "):
            group, in_table = line[4:].strip(), False
        elif line.startswith("| a − b |"):
            in_table = True
        elif in_table and line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            values = [float(value) for _, value in SEED_VALUE.findall(cells[5])]
            rows.append({"group": group, "pair": cells[0], "metric": cells[1], "better": cells[2],
                         "n": len(values), "differences": values, "printed_verdict": cells[-1]})
        elif in_table and not line.strip():
            in_table = False
    return pd.DataFrame(rows)


def holm_table(rows: pd.DataFrame) -> pd.DataFrame:
    """p-values of the mean difference and Holm's adjustment within each group."""
    table = rows.copy()
    table["mean"] = [float(np.mean(values)) for values in table["differences"]]
    table["p_value"] = [float(stats.ttest_1samp(values, 0.0).pvalue) if len(values) >= 2 and np.std(values) > 0
                        else np.nan for values in table["differences"]]
    table["p_holm"] = np.nan
    for _, members in table.groupby("group", sort=False):
        table.loc[members.index, "p_holm"] = holm(members["p_value"].to_numpy())
    improves = np.where(table["better"] == "higher", table["mean"] > 0, table["mean"] < 0)
    table["verdict_holm"] = np.where(table["p_holm"] < 0.05, np.where(improves, "better", "worse"),
                                     "not distinguishable")
    table["family"] = table.groupby("group", sort=False)["p_value"].transform(lambda p: int(p.notna().sum()))
    table["differences"] = [" ".join(f"{value:+g}" for value in values) for values in table["differences"]]
    return table[["group", "pair", "metric", "better", "n", "differences", "mean", "p_value", "family", "p_holm",
                  "printed_verdict", "verdict_holm"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("compare_md", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the CSV written")
    args = parser.parse_args(argv)
    rows = per_seed_rows(args.compare_md.read_text())
    if rows.empty:
        print(f"robustkd: error: {args.compare_md}: no per-seed differences table found", file=sys.stderr)
        return 2
    holm_table(rows).to_csv(args.out, index=False, float_format="%.6g")
    print(f"{args.out}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
