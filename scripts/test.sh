#!/usr/bin/env bash
# Set up robustlab with its test extras and run the whole test suite (2 workers, 1 thread each).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" -q "$@"
