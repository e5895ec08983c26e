#!/usr/bin/env bash
# docs/study.md's study: `robustkd study run cmkd` (robustkd/studies/cmkd.toml), after setting up the environment.
#
#   scripts/study.sh [--smoke] [--plan] [--stage S | --only S] [--cohort C] [--seeds 0,1,2] [--threads N]
#                    [--data-dir DIR] [--device DEV] [--runs-dir DIR] [--results-dir DIR]
#
# Stages: teachers, cohorts, evaluate, report; the cmkd study's cohorts: main, ablation, noise. Resumable: run the
# same command again. --smoke runs the packaged smoke study instead (synthetic data, a few minutes). Every other
# argument is `robustkd study run`'s. ROBUSTKD_PYTHON=PY runs `PY -m robustkd.cli` instead of the project's venv.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
study=cmkd args=()
for arg in "$@"; do if [ "$arg" = --smoke ]; then study=smoke; else args+=("$arg"); fi; done
if [ -n "${ROBUSTKD_PYTHON:-}" ]; then
    robustkd=("$ROBUSTKD_PYTHON" -m robustkd.cli)
else
    robustkd=("$(bash "$REPO_ROOT/scripts/setup_env.sh")/bin/robustkd")
fi
exec "${robustkd[@]}" study run "$study" "${args[@]}"
