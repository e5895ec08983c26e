#!/usr/bin/env bash
# The first CE / KD / DIST / CMKD comparison and the CMKD ablations on real CIFAR-100, at a CPU budget.
# Every run is resumable: start the script again and it continues unfinished runs and skips finished ones
# (robustkd distill --skip-finished).
#
#   scripts/study_distill_cifar100.sh TEACHER_RUN_DIR [--data-dir DIR] [--out DIR]
#
# "Pearson only" is CMKD without its Spearman term at equal weights, which is exactly DIST (the dist run).
# Budget (same for every student, seed 0): resnet8 student, the first 25,000 training images (250 per
# class), 8 epochs, batch 128, lr 0.1 decayed x0.1 after epochs 5 and 7, evaluated on the full test set.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
teacher="${1:?usage: study_distill_cifar100.sh TEACHER_RUN_DIR [--data-dir DIR] [--out DIR]}"; shift
data_dir="$REPO_ROOT/data"
out="$REPO_ROOT/runs/study"
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) data_dir="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "study_distill_cifar100.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
VENV="$(bash "$REPO_ROOT/scripts/setup_env.sh")"
budget=(--student resnet8 --dataset cifar100 --recipe quick --epochs 8 --milestones 5,7 --train-limit 25000
        --eval-every 8 --seed 0 --data-dir "$data_dir")
runs=(
    "ce|ce"
    "kd|kd"
    "dist|dist"
    "cmkd-rank-hard|cmkd --cmkd-weighting rank_hard --cmkd-difficulty entropy"
    "cmkd-value-hard|cmkd --cmkd-weighting value_hard --cmkd-difficulty entropy"
    "cmkd-equal|cmkd --cmkd-weighting equal"
    "cmkd-spearman-only|cmkd --cmkd-pearson 0 --cmkd-intra 0 --cmkd-weighting equal"
    "cmkd-rank-hard-true-prob|cmkd --cmkd-weighting rank_hard --cmkd-difficulty true_prob"
)
for entry in "${runs[@]}"; do
    name="${entry%%|*}"; read -r -a method <<< "${entry#*|}"
    echo "[$name] robustkd distill --teacher $teacher --method ${method[*]} ${budget[*]}"
    # --skip-finished: a finished run is skipped, an interrupted one resumed, a missing one started.
    "$VENV/bin/robustkd" distill --teacher "$teacher" --method "${method[@]}" "${budget[@]}" --run-dir "$out/$name" \
        --skip-finished
done
"$VENV/bin/python" - "$out" <<'PY'
import json, pathlib, sys
rows = []
for sidecar in sorted(pathlib.Path(sys.argv[1]).glob("*/model.json")):
    meta = json.loads(sidecar.read_text())
    rows.append((sidecar.parent.name, meta["method"], meta["metrics"]["test_top1"], meta["metrics"]["test_top5"]))
print(f"{'run':22s} {'method':8s} {'top-1':>7s} {'top-5':>7s}")
for name, method, top1, top5 in rows:
    print(f"{name:22s} {method:8s} {top1:7.2f} {top5:7.2f}")
PY
