#!/usr/bin/env bash
# Issue 9's GPU checks, one script for a lent GPU machine (torch, torchvision, numpy, pandas, scipy,
# matplotlib, safetensors, tqdm, pyyaml, Pillow, scikit-image installed; no package registry). Run from the
# repository root; everything goes to $OUT (default ./bench-out). Each stage has its own time limit and the
# whole script stays under 9 minutes (one run call); a stage that fails or times out is recorded and the next
# one runs. At the end every file but summary.txt and status.tsv is packed into logs.tar.gz (the run tool
# brings back at most 8 files): unpack it with `tar -xzf logs.tar.gz`.
#
#   benchmarks/run_gpu_checks.sh                     # on the GPU machine: --device cuda, full sizes
#   benchmarks/run_gpu_checks.sh --device cpu --dry  # plumbing check anywhere: tiny sizes, same stages
#
# Stages (logs: $OUT/<stage>.log; summary: $OUT/status.tsv and $OUT/summary.txt):
#   env         device, versions; installs the carried wheels (.whl/, git-ignored: pass it in the run
#               tool's carry list) of the packages that are missing: torchattacks, foolbox (+ eagerpy,
#               GitPython, gitdb, smmap, requests and its dependencies), pyautoattack, imagecorruptions
#   cli         the main job's CLI stages on the embedded CIFAR-100 subset with --device: train, distill
#               (cmkd), evaluate with every suite (quick adversarial and certified files), corrupt,
#               leaderboard export (csv with the corruption grid, html), report
#   corruption  every corruption x severity on the CPU and on --device: max |uint8 difference| per cell,
#               bounds asserted (0 for JPEG and impulse noise, <= 1 elsewhere); 32 and 224 pixels
#   tests       the default test suite with ROBUSTKD_TEST_DEVICE=--device (the CLI's --device auto picks
#               CUDA by itself); modules needing packages that are absent (cv2, robustbench) are skipped
#   certify     benchmarks/bench_certify.py: Cohen et al.'s loop vs robustkd, same model, same noise
#   estimate    benchmarks/estimate_paper_eval.py: every eval_suites/*.toml for resnet8x4, extrapolated to
#               the full test set and to 5 models
set -uo pipefail
device=cuda
dry=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --dry) dry=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "run_gpu_checks.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
out="${OUT:-bench-out}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-checks.XXXXXX")"
py="${PYTHON:-python3}"   # e.g. PYTHON=.venv/bin/python for the dry run here
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" ROBUSTKD_NO_DOWNLOAD=1 ROBUSTKD_PROGRESS=0 PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg
started=$SECONDS

if [ "$dry" = 1 ]; then   # tiny sizes: checks the plumbing, measures nothing
    limits=(env=60 cli=420 corruption=120 tests=30 certify=120 estimate=240)
    n_eval=20; n_corrupt=10; limit_train=(--train-limit 500) cmp=(--images 4 --imagenet-images 1 --corruptions fog glass_blur jpeg_compression)
    tests=(tests/test_smoothing.py -k batch_size)
    cert=(--n 200 --n0 20 --images 1 --repeats 1 --batch 100 --ref-batch 100)
    # calibration (5,000 held-out images), adversarial and the certified files (n = 100,000): minutes on a CPU
    est=(--n clean=100 relations=100 corruption=2 --suites clean corruption relations)
    qadv="$work/adversarial.toml"
    sed -e 's/^attacks = .*/attacks = ["fgsm", "pgd_linf", "autoattack", "deepfool_l2"]/' -e 's/^pgd_steps = .*/pgd_steps = 2/' \
        -e 's/^square_queries = .*/square_queries = 5/' -e 's/^masking_examples = .*/masking_examples = 4/' \
        eval_suites/quick/adversarial.toml > "$qadv"
else                      # the GPU run: at most about 9 minutes in all
    # Limits from the first run on an H200 (2026-12-04, docs/gpu.md), where cli (100 s), corruption (40 s) and
    # tests (95 s, 4 processes) ran out: cli was in its last step, corruption had 112 of its cells.
    limits=(env=20 cli=150 corruption=90 tests=180 certify=35 estimate=55)   # 530 s with the 5 s kill grace unused
    n_eval=200; n_corrupt=200; limit_train=(); cmp=(--images 200 --imagenet-images 2)
    tests=(tests)
    cert=(--n 100000 --n0 100 --images 3 --repeats 3 --batch 10000 --ref-batch 1000 --bf16)
    est=()
    qadv=eval_suites/quick/adversarial.toml
fi
limit() { for item in "${limits[@]}"; do [ "${item%%=*}" = "$1" ] && echo "${item#*=}"; done; }

printf 'stage\texit\tseconds\tlimit\n' > "$out/status.tsv"
stage() {   # stage NAME COMMAND...: run with the stage's time limit, log to $OUT/NAME.log, record the outcome
    local name="$1"; shift
    local begin=$SECONDS seconds
    echo "== $name (limit $(limit "$name") s, $((SECONDS - started)) s elapsed)"
    if declare -F "$1" > /dev/null; then   # a function: run it in a child bash that gets it and the settings
        timeout --kill-after=5 "$(limit "$name")" bash -c "$(declare -p py device dry work out n_eval n_corrupt qadv \
            tests limit_train); $(declare -f "$1"); $1" > "$out/$name.log" 2>&1
    else
        timeout --kill-after=5 "$(limit "$name")" "$@" > "$out/$name.log" 2>&1
    fi
    local rc=$?
    seconds=$((SECONDS - begin))
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$(limit "$name")" >> "$out/status.tsv"
    tail -n 4 "$out/$name.log" | sed 's/^/   /'
    echo "   -> exit $rc after $seconds s"
}

env_stage() { "$py" benchmarks/gpu_stages.py env; }   # versions; installs the missing carried wheels

cli_stage() {   # the main job's stages (scripts/train_and_eval.sh quick), tiny epochs, on --device
    set -e
    local cli=("$py" -m robustkd.cli) data=(--data-dir "$work/no-cifar" --allow-embedded)
    local db="$work/results/robustkd.db"
    "${cli[@]}" train --model resnet20 --dataset cifar100 "${data[@]}" --epochs 1 --batch-size 128 --lr 0.05 \
        --milestones 1 "${limit_train[@]}" --device "$device" --run-dir "$work/teacher"
    "${cli[@]}" distill --teacher "$work/teacher" --student resnet8x4 --method cmkd "${data[@]}" --epochs 1 \
        --batch-size 128 --lr 0.05 --milestones 1 "${limit_train[@]}" --device "$device" --run-dir "$work/cmkd"
    "${cli[@]}" evaluate --checkpoint "$work/cmkd" --teacher "$work/teacher" --suite clean --suite calibration \
        --suite corruption --suite "$qadv" --suite eval_suites/quick/certified.toml --suite relations \
        "${data[@]}" --n-examples "$n_eval" --device "$device" --out "$work/results" --db "$db"
    "${cli[@]}" evaluate --checkpoint "$work/teacher" --suite clean --suite corruption "${data[@]}" \
        --n-examples "$n_eval" --device "$device" --out "$work/results" --db "$db"
    "${cli[@]}" corrupt --dataset cifar100 "${data[@]}" --n-examples "$n_corrupt" --corruptions all \
        --device "$device" --out "$work/CIFAR-100-C"
    for format in csv html; do
        "${cli[@]}" leaderboard export --db "$db" --format "$format" --out "$out/leaderboard.$format" \
            --grid-out "$out/corruption_grid.csv"
    done
    "${cli[@]}" report --db "$db" --out "$out/report.html"
    cp "$work/CIFAR-100-C/manifest.json" "$out/corrupt_manifest.json"
    find "$work/results" -name summary.json | while read -r summary; do
        "$py" -c "import json, sys; s = json.load(open(sys.argv[1])); print(s['name'], s['suite'], 'device', s['device'], 'n', s['n_examples'])" "$summary"
    done
}

tests_stage() {   # the test files in 8 parallel pytest processes (the GPU machine has 16 cores)
    local skip=() files=() shard rc=0
    "$py" -c "import cv2" 2>/dev/null || skip+=(tests/test_corruptions.py)
    "$py" -c "import robustbench" 2>/dev/null || skip+=(tests/test_robustbench_import.py)
    echo "skipped modules (packages absent): ${skip[*]:-none}"
    if [ "${tests[0]}" = tests ]; then
        for file in tests/test_*.py; do [[ " ${skip[*]} " == *" $file "* ]] || files+=("$file"); done
    else
        files=("${tests[@]}")
    fi
    local shards=$(( ${#files[@]} < 8 ? 1 : 8 ))
    for ((shard = 0; shard < shards; shard++)); do
        local mine=()
        for ((i = shard; i < ${#files[@]}; i += shards)); do mine+=("${files[$i]}"); done
        ROBUSTKD_TEST_DEVICE="$device" "$py" -m pytest -q -p no:cacheprovider -rfE --durations=5 \
            "${mine[@]}" > "$out/tests-$shard.log" 2>&1 &
    done
    for ((shard = 0; shard < shards; shard++)); do wait -n || rc=1; done
    for ((shard = 0; shard < shards; shard++)); do echo "-- shard $shard"; tail -n 12 "$out/tests-$shard.log"; done
    grep -h -E "^[0-9]+ (passed|failed)|^(FAILED|ERROR) " "$out"/tests-*.log
    return $rc
}

stage env env_stage
stage cli cli_stage
stage corruption "$py" benchmarks/compare_corruption_devices.py --device "$device" "${cmp[@]}" \
    --json "$out/corruption_devices.json"
stage tests tests_stage
stage certify "$py" benchmarks/bench_certify.py --device "$device" "${cert[@]}" --json "$out/certify.json"
stage estimate "$py" benchmarks/estimate_paper_eval.py --device "$device" "${est[@]}" --work "$work/estimate" \
    --json "$out/paper_estimate.json"

{
    echo "run_gpu_checks.sh --device $device$([ "$dry" = 1 ] && echo ' --dry'): $((SECONDS - started)) s in all, $(date -u +%FT%TZ)"
    column -t -s $'\t' "$out/status.tsv" 2>/dev/null || cat "$out/status.tsv"
} | tee "$out/summary.txt"
rm -rf "$work"
# One archive of everything else (the run tool brings back at most 8 files).
(cd "$out" && find . -maxdepth 1 -type f ! -name summary.txt ! -name status.tsv ! -name logs.tar.gz -printf '%P\n' \
    | sort | tar -czf logs.tar.gz -T - && find . -maxdepth 1 -type f ! -name summary.txt ! -name status.tsv \
    ! -name logs.tar.gz -delete)
awk -F'\t' 'NR > 1 && $2 != 0 { bad = 1 } END { exit bad }' "$out/status.tsv"
