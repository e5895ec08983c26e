#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install robustkd (editable) with its test extras.
# Usage: source scripts/setup_env.sh   (or run it; it prints the venv's path)
# VENV overrides the location (default: <repo>/.venv); PYTHON the interpreter used to create it.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating virtual environment $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.robustkd-install-stamp"
wanted="$(cat "$REPO_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ] || ! "$VENV/bin/python" -c "import robustkd, torch" 2>/dev/null; then
    echo "setup: installing robustkd and its dependencies into $VENV (torch is large: a few minutes the first time)" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip 'setuptools>=77.0.3,<82' wheel >&2
    "$VENV/bin/python" -m pip install --quiet -e "$REPO_ROOT[dev]" >&2
    echo "$wanted" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
echo "$VENV"
