#!/usr/bin/env bash
# The study's larger certified evaluation (eval_suites/study/certified_500.toml: 500 test images, n = 10,000)
# of the noise cohort and its teacher, on a lent GPU machine, in one call that stops cleanly at a deadline.
# Models are certified seed by seed (ce, cmkd, dist, kd of seed 0, then seed 1, ...) and the teacher last, so a
# deadline leaves whole seeds; each finished image is one line of its certify.tsv, packed either way.
#
#   benchmarks/run_gpu_certify.sh [--deadline SECONDS] [--device DEV] [--suite FILE] [--results DIR]
#
# Needs runs/study/noise-students and runs/study/teacher-resnet20-noise0.25 (git-ignored: carry them) and the
# CIFAR-100 test split: data/cifar-100-python/{test,meta} if present, else the git-ignored archive
# .xfer/test/cifar-100-test.tar.xz (23 MB, carried), made here with
#     mkdir -p .xfer/test && tar -C data -cf - cifar-100-python/test cifar-100-python/meta | xz -6 > .xfer/test/cifar-100-test.tar.xz
# and checked against the files' SHA-256 there. Certificates depend on the device's random stream (the summary
# records the device): resume an unfinished model on the same kind of device, or start it again elsewhere.
#
# --deadline S (default 240): the evaluation is stopped S - 20 seconds after the start, leaving time to pack
#   (and refused to start with under 10 seconds left). Exit: 0 when every model finished or the deadline
#   stopped the evaluation (finished images are kept), evaluate's exit code when it failed, 2 for bad input.
# --suite, --results (defaults: eval_suites/study/certified_500.toml, results/study-certified500, with its
#   own robustkd.db): a small suite and a scratch folder check the plumbing on a CPU (--device cpu).
# Output in $OUT (default ./bench-out): summary.txt (device, versions, exit code, seconds) and
# certified500.tar.xz (the results folder), unpacked here with `tar -xJf certified500.tar.xz`.
set -uo pipefail
deadline=240
device=cuda
suite=eval_suites/study/certified_500.toml
results=results/study-certified500
while [ $# -gt 0 ]; do
    case "$1" in
        --deadline|--device|--suite|--results) [ $# -ge 2 ] || { echo "run_gpu_certify.sh: $1 needs a value" >&2; exit 2; } ;;&
        --deadline) deadline="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --suite) suite="$2"; shift 2 ;;
        --results) results="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "run_gpu_certify.sh: unknown argument '$1'; expected --deadline, --device, --suite or --results" >&2; exit 2 ;;
    esac
done
[[ "$deadline" =~ ^[0-9]+$ ]] && [ "$deadline" -ge 60 ] || { echo "run_gpu_certify.sh: --deadline must be an integer >= 60 (seconds), got '$deadline'" >&2; exit 2; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."   # paths are relative to the repository root
[ -f "$suite" ] || { echo "run_gpu_certify.sh: --suite '$suite' is not a file" >&2; exit 2; }
started=$SECONDS
out="${OUT:-bench-out}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" ROBUSTKD_NO_DOWNLOAD=1 ROBUSTKD_PROGRESS=0 PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg
summary="$out/summary.txt"
say() { echo "$*" | tee -a "$summary"; }
: > "$summary"
say "run_gpu_certify.sh $(date -u +%Y-%m-%dT%H:%M:%SZ): device $device, deadline $deadline s, suite $suite"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' | tee -a "$summary"
"$py" -c "import sys, torch, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1 | tee -a "$summary"

# ---- the test split, checked ----
file_shas="2332f5f24a34c3f5df362b657af572f62b3a48b528b713a532630bbf6835ee90  data/cifar-100-python/test
f964f0d8b22fa2299991ef47d58da3f461a0d0fdca4704b256e6fb107547ba15  data/cifar-100-python/meta"
if ! echo "$file_shas" | sha256sum --quiet -c - > /dev/null 2>&1; then
    mkdir -p data && "$py" -c "import sys, tarfile; tarfile.open(sys.argv[1], 'r:xz').extractall(sys.argv[2], filter='data')" \
        .xfer/test/cifar-100-test.tar.xz data \
        && echo "$file_shas" | sha256sum --quiet -c - \
        || { say "data: .xfer/test/cifar-100-test.tar.xz is missing or its files do not match their SHA-256"; exit 2; }
fi
say "data: CIFAR-100 test/meta match their SHA-256 ($((SECONDS - started)) s)"

# ---- the models, seed by seed, then the teacher ----
teacher=runs/study/teacher-resnet20-noise0.25
mapfile -t students < <(shopt -s nullglob; for folder in runs/study/noise-students/*/; do folder="${folder%/}"; \
    printf '%s\t%s\n' "${folder##*-s}" "$folder"; done | sort -s -n -k1,1 | cut -f2-)   # folders end in -s<seed>
[ "${#students[@]}" -gt 0 ] && [ -d "$teacher" ] || { say "models: runs/study/noise-students or $teacher is missing"; exit 2; }
checkpoints=()
for path in "${students[@]}" "$teacher"; do checkpoints+=(--checkpoint "$path"); done
say "models: ${#students[@]} students and the teacher"
left=$((deadline - 20 - (SECONDS - started)))
[ "$left" -ge 10 ] || { say "evaluate: only $left s left before the deadline's packing time; nothing run"; exit 2; }
mkdir -p "$results"
timeout --signal=TERM --kill-after=10 "$left" \
    "$py" -m robustkd.cli evaluate "${checkpoints[@]}" --suite "$suite" --data-dir data --device "$device" \
    --out "$results" --db "$results/robustkd.db" --skip-finished >> "$results/gpu-certify.log" 2>&1
rc=$?
say "evaluate: exit $rc after $((SECONDS - started)) s$([ "$rc" = 124 ] && echo ' (stopped at the deadline; finished images are kept)')"
tail -n 5 "$results/gpu-certify.log" | sed 's/^/    /' | tee -a "$summary"
"$py" - "$results" <<'PY' | tee -a "$summary"
import sys
from pathlib import Path
for table in sorted(Path(sys.argv[1]).rglob("certify.tsv")):
    lines = table.read_text().splitlines()[1:]
    seconds = sum(float(line.split("\t")[-1]) for line in lines)
    finished = (table.parent / "summary.json").is_file()
    print(f"{table.parent}: {len(lines)} images, {seconds:.1f} s certifying, {'finished' if finished else 'unfinished'}")
PY

# ---- pack ----
tar -cf - "$results" | "$py" -c "import lzma, shutil, sys; shutil.copyfileobj(sys.stdin.buffer, lzma.LZMAFile(sys.stdout.buffer, 'w', preset=3))" \
    > "$out/certified500.tar.xz"
say "packed $(du -h "$out/certified500.tar.xz" | cut -f1) in $((SECONDS - started)) s"
[ "$rc" = 0 ] || [ "$rc" = 124 ] || exit "$rc"
