#!/usr/bin/env bash
# The test suite: sets up (or reuses) the virtual environment, then runs pytest.
# Default: every test not marked slow (a few minutes on 2 CPU cores, no GPU, no network, no CIFAR files).
# Extra arguments go to pytest, e.g. `scripts/test.sh --run-all` (slow tests too) or `scripts/test.sh -k resume`.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$REPO_ROOT/scripts/setup_env.sh")"
cd "$REPO_ROOT"
exec "$VENV/bin/python" -m pytest "$@"
