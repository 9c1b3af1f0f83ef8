#!/usr/bin/env bash
# Quickstart: install Baton into .venv and bring it up on embedded defaults (SQLite, embedded
# Redis, local checkpoints), then run the demo experiment end to end: a worker is killed
# mid-run and another resumes it from its last checkpoint. Extra arguments go to `baton up`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
export BATON_DATA_DIR="${BATON_DATA_DIR:-$PWD/.baton}"
exec .venv/bin/baton up --demo --exit-after-demo "$@"
