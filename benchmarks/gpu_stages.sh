# The stages of a GPU script (benchmarks/run_gpu_checks.sh, benchmarks/run_gpu_speed.sh), sourced by them: each
# stage runs with its own time limit and log, and its outcome is recorded; a stage that fails or times out does
# not stop the next one. At the end every file but summary.txt and status.tsv is packed into logs.tar.gz (the
# run tool brings back at most 8 files): unpack it with `tar -xzf logs.tar.gz`.
#
# The sourcing script calls begin_stages from the repository root, sets stage_vars (the names of the variables
# a function stage needs) and limits=(NAME=SECONDS ...), runs its stages and ends with finish_stages.
begin_stages() {   # begin_stages NAME: sets out ($OUT, default ./bench-out, made absolute), work (a scratch folder
                   # removed at the end), py ($PYTHON, default python3), started; exports robustkd's batch settings
    out="${OUT:-bench-out}"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    work="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    py="${PYTHON:-python3}"   # e.g. PYTHON=.venv/bin/python for a dry run on the CPU
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" ROBUSTKD_NO_DOWNLOAD=1 ROBUSTKD_PROGRESS=0 PYTHONUNBUFFERED=1 \
        MPLBACKEND=Agg
    started=$SECONDS
    printf 'stage\texit\tseconds\tlimit\n' > "$out/status.tsv"
}

limit() { for item in "${limits[@]}"; do [ "${item%%=*}" = "$1" ] && echo "${item#*=}"; done; }

stage() {   # stage NAME COMMAND...: run with the stage's time limit, log to $OUT/NAME.log, record the outcome
    local name="$1"; shift
    local begin=$SECONDS seconds
    echo "== $name (limit $(limit "$name") s, $((SECONDS - started)) s elapsed)"
    if declare -F "$1" > /dev/null; then   # a function: run it in a child bash that gets it and the settings
        timeout --kill-after=5 "$(limit "$name")" bash -c "$(declare -p "${stage_vars[@]}"); $(declare -f "$1"); $1" \
            > "$out/$name.log" 2>&1
    else
        timeout --kill-after=5 "$(limit "$name")" "$@" > "$out/$name.log" 2>&1
    fi
    local rc=$?
    seconds=$((SECONDS - begin))
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$(limit "$name")" >> "$out/status.tsv"
    tail -n 4 "$out/$name.log" | sed 's/^/   /'
    echo "   -> exit $rc after $seconds s"
}

env_stage() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$py" -c "import sys, torch, torchvision; print('python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda available', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
    local module wheel missing=()
    for pair in torchattacks:torchattacks foolbox:foolbox eagerpy:eagerpy git:gitpython gitdb:gitdb smmap:smmap \
                requests:requests urllib3:urllib3 idna:idna certifi:certifi chardet:chardet \
                pyautoattack:pyautoattack imagecorruptions:imagecorruptions; do
        module="${pair%%:*}"; wheel="${pair#*:}"
        if ! "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" 2>/dev/null; then
            missing+=(.whl/"$wheel"-*.whl)
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing the carried wheels: ${missing[*]}"
        "$py" -m pip install -q --no-index --no-deps "${missing[@]}" || return 1
    fi
    "$py" -c "import torchattacks, foolbox, pyautoattack; from robustkd.corruptions.frost import frost_folder; print('attack libraries and frost textures:', frost_folder())"
}


finish_stages() {   # finish_stages TITLE: summary.txt, one archive, exit 1 if a stage failed
    {
        echo "$1: $((SECONDS - started)) s in all, $(date -u +%FT%TZ)"
        column -t -s $'\t' "$out/status.tsv" 2>/dev/null || cat "$out/status.tsv"
    } | tee "$out/summary.txt"
    rm -rf "$work"
    (cd "$out" && find . -maxdepth 1 -type f ! -name summary.txt ! -name status.tsv ! -name logs.tar.gz -printf '%P\n' \
        | sort | tar -czf logs.tar.gz -T - && find . -maxdepth 1 -type f ! -name summary.txt ! -name status.tsv \
        ! -name logs.tar.gz -delete)
    awk -F'\t' 'NR > 1 && $2 != 0 { bad = 1 } END { exit bad }' "$out/status.tsv"
}
