#!/usr/bin/env bash
# The study (scripts/study.sh, docs/study.md) on a lent GPU machine, in one call that stops cleanly at a
# deadline. The three cohorts (main, ablation, noise) train and are evaluated as three concurrent study.sh
# processes on the one GPU: a resnet8 cohort step is a few hundred small kernel launches, so one process
# leaves most of the GPU idle. Everything is packed into $OUT; the report stage runs where it is unpacked. Whatever the
# deadline cuts off resumes anywhere with scripts/study.sh (every command in it is resumable), on a GPU or
# on the CPU.
#
#   benchmarks/run_gpu_study.sh [--deadline SECONDS] [--device DEV] [--threads N] [--smoke] [--work DIR]
#
# The GPU machine has no package registry and no ../shared. The CIFAR-100 archive travels in three
# git-ignored parts, one per call of the run tool (each call carries at most 64 MiB), made here with
#     mkdir -p .xfer/p1 .xfer/p2 .xfer/p3 && split -n 3 -d -a 1 ../shared/data/cifar-100-python.tar.xz .xfer/part
#     mv .xfer/part0 .xfer/p1/ && mv .xfer/part1 .xfer/p2/ && mv .xfer/part2 .xfer/p3/
# and put together there, checked against the archive's and the files' SHA-256 before use. A carried path is
# gone at the next call: each call copies its part to /tmp/xfer and the last copies them back into .xfer
# (the call sequence is in docs/gpu.md). The packages
# the machine lacks travel as the folder .xfer/site (copied from this project's venv: torchattacks, foolbox,
# eagerpy, git (GitPython), gitdb, smmap, pyautoattack without its 42 MB examples/ folder, imagecorruptions
# for its frost textures), put first on PYTHONPATH.
#
# --deadline S (default 540): the jobs are stopped S - 40 seconds after the start, leaving time for the
#   packing. --threads N (default 4): CPU threads of each of the three processes.
# --smoke: study.sh --smoke (synthetic data, no archive) with runs and results under --work (default
#   /tmp/gpu-study-smoke): the plumbing, in a few minutes on a CPU (--device cpu).
# Output in $OUT (default ./bench-out): summary.txt (device, versions, each job's exit code and seconds) and
# study.tar.xz.00, .01, ... (parts of at most 15 MiB: runs without their resume states, results, logs).
# Put back together here with `cat study.tar.xz.* | tar -xJ`.
set -uo pipefail
deadline=540
device=cuda
threads=4
smoke=0
work=""
while [ $# -gt 0 ]; do
    case "$1" in
        --deadline) deadline="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --smoke) smoke=1; shift ;;
        --work) work="$2"; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "run_gpu_study.sh: unknown argument '$1'; expected --deadline, --device, --threads, --smoke or --work" >&2; exit 2 ;;
    esac
done
[[ "$deadline" =~ ^[0-9]+$ ]] && [ "$deadline" -ge 120 ] || { echo "run_gpu_study.sh: --deadline must be an integer >= 120 (seconds), got '$deadline'" >&2; exit 2; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS
out="${OUT:-bench-out}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD/.xfer/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" ROBUSTKD_PYTHON="$py" ROBUSTKD_NO_DOWNLOAD=1 \
    ROBUSTKD_PROGRESS=0 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [ "$smoke" = 1 ]; then
    work="${work:-/tmp/gpu-study-smoke}"
    places=(--runs-dir "$work/runs" --results-dir "$work/results" --smoke)
    runs_dir="$work/runs"; results_dir="$work/results"
else
    places=(--data-dir data)
    runs_dir=runs/study; results_dir=results/study
fi
logs="$results_dir/gpu-logs"
mkdir -p "$logs"
summary="$out/summary.txt"
say() { echo "$*" | tee -a "$summary"; }
: > "$summary"
say "run_gpu_study.sh $(date -u +%Y-%m-%dT%H:%M:%SZ): device $device, deadline $deadline s, smoke $smoke"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' | tee -a "$summary"
"$py" -c "import sys, torch, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1 | tee -a "$summary"

# xz may be missing on a bare image: Python's lzma then does the same.
extract() {  # extract ARCHIVE.tar.xz FOLDER
    if command -v xz > /dev/null; then tar -xJf "$1" -C "$2"
    else "$py" -c "import sys, tarfile; tarfile.open(sys.argv[1], 'r:xz').extractall(sys.argv[2], filter='data')" "$1" "$2"; fi
}
compress() {  # compress < TAR > TAR.XZ
    if command -v xz > /dev/null; then xz -T0 -3
    else "$py" -c "import lzma, shutil, sys; shutil.copyfileobj(sys.stdin.buffer, lzma.LZMAFile(sys.stdout.buffer, 'w', preset=3))"; fi
}

# ---- the data: the carried archive, checked ----
archive_sha=50693b3be1619f7ca619900161cf06e5a58fb71db3b41f2f897b1ea9b4fd7ac1
file_shas="0e73182d18ef30465ea1fe47be6be3029837a27f819eabb5a96b3b420a40783b  data/cifar-100-python/train
2332f5f24a34c3f5df362b657af572f62b3a48b528b713a532630bbf6835ee90  data/cifar-100-python/test
f964f0d8b22fa2299991ef47d58da3f461a0d0fdca4704b256e6fb107547ba15  data/cifar-100-python/meta"
if [ "$smoke" = 0 ] && ! echo "$file_shas" | sha256sum --quiet -c - > /dev/null 2>&1; then
    archive="$(mktemp "${TMPDIR:-/tmp}/cifar-100.XXXXXX")"
    cat .xfer/p1/part0 .xfer/p2/part1 .xfer/p3/part2 > "$archive" \
        && echo "$archive_sha  $archive" | sha256sum --quiet -c - \
        && mkdir -p data && extract "$archive" data \
        && echo "$file_shas" | sha256sum --quiet -c - \
        || { say "data: the carried CIFAR-100 parts are missing or do not match SHA-256 $archive_sha"; exit 2; }
    rm -f "$archive"
fi
[ "$smoke" = 1 ] || say "data: CIFAR-100 train/test/meta match their SHA-256 ($((SECONDS - started)) s)"

# ---- the three cohorts, concurrently ----
study() { bash scripts/study.sh "${places[@]}" --device "$device" --threads "$threads" "$@"; }
job() {  # job NAME TRAINING_STAGE: the cohort's training stage, then its evaluation; log in $logs/NAME.log
    local begin=$SECONDS rc
    { study --stage cohorts --cohort "$1" && study --only evaluate --cohort "$1"; } > "$logs/$1.log" 2>&1
    rc=$?
    echo "$1 $rc $((SECONDS - begin))" > "$logs/$1.status"
}
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 > "$logs/gpu-utilisation.csv" 2>&1 &
    monitor=$!
fi
# The teacher first (verified; trained in --smoke): every job distils from it.
study --only teachers --cohort main > "$logs/teacher.log" 2>&1 || { say "teacher: failed"; tail -n 5 "$logs/teacher.log" | tee -a "$summary"; }
say "teacher: ready ($((SECONDS - started)) s elapsed)"
pids=()
set -m   # each job in its own process group: the deadline stops a job with everything it started
for pair in main:main ablation:ablation noise:noise; do
    job "${pair%%:*}" "${pair#*:}" &
    pids+=($!)
done
set +m
stop_at=$((started + deadline - 40))
while [ "$SECONDS" -lt "$stop_at" ]; do
    running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2> /dev/null && running=1; done
    [ "$running" = 1 ] || break
    sleep 2
done
if [ "$running" = 1 ]; then   # the deadline: stop every job's process group (each resumes)
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2> /dev/null; done
    sleep 3
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2> /dev/null; done
fi
wait "${pids[@]}" 2> /dev/null
for name in main ablation noise; do
    if [ -f "$logs/$name.status" ]; then
        read -r _ rc seconds < "$logs/$name.status"; say "job $name: exit $rc after $seconds s"
    else
        say "job $name: stopped at the deadline (resume with scripts/study.sh)"
    fi
    tail -n 3 "$logs/$name.log" | sed 's/^/    /' | tee -a "$summary"
done

# ---- pack (the report stage runs where the results are unpacked: study.sh --only report) ----
[ -n "${monitor:-}" ] && kill "$monitor" 2> /dev/null
# Resume states (model, optimizer, RNG after an epoch) stay behind for finished runs; an unfinished run keeps
# its latest, enough to resume it.
"$py" - "$runs_dir" > "$logs/left-behind.txt" <<'PY'
import sys
from pathlib import Path
from robustkd.train.skip_finished import run_state
for config in sorted(Path(sys.argv[1]).rglob("config.json")):
    states = sorted((config.parent / "state").glob("epoch_*"))
    keep = 0 if run_state(config.parent) == "finished" else 1
    for folder in states[:len(states) - keep]:
        print(folder)
PY
tar --exclude-from="$logs/left-behind.txt" -cf - "$runs_dir" "$results_dir" 2> "$logs/tar.log" | compress \
    | split -b 15M -d -a 2 - "$out/study.tar.xz."
say "packed: $(du -cb "$out"/study.tar.xz.* | tail -1 | cut -f1) bytes in $(ls "$out"/study.tar.xz.* | wc -l) parts ($((SECONDS - started)) s elapsed)"
