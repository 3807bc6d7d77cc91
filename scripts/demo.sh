#!/usr/bin/env bash
# Set up robustlab and run its demo (digits, softmax models, FGSM/PGD over an eps grid, report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/robustlab demo "$@"
