#!/usr/bin/env bash
# Create .venv (if needed) and install robustlab into it.
#   scripts/setup.sh            the package
#   scripts/setup.sh test       the package + test tools + Ray (the [ray] extra) + peer libraries for comparison tests
# TORCH_SPEC overrides the PyTorch requirement (default torch==2.13.0, a CPU build here);
# CUDA users: TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
# torch first, so that no dependency pulls a CUDA build
# shellcheck disable=SC2086
"${PIP[@]}" ${TORCH_SPEC:-torch==2.13.0}
if [ "${1:-}" = "test" ]; then
  "${PIP[@]}" -e ".[test,ray]"
  if [ -f scripts/install-peers.sh ]; then bash scripts/install-peers.sh .venv/bin/python; fi
else
  "${PIP[@]}" -e .
fi
