#!/usr/bin/env bash
# Install the peer attack libraries the peer tests and benchmarks compare against, into the
# venv of $PYTHON (default .venv/bin/python). torch must already be installed: nothing here
# may pull another torch build. torchattacks goes in without its dependencies (it would ask
# for torchvision, which it never imports); ART needs `packaging`; foolbox installs as is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m pip install --no-deps "torchattacks==3.5.1"
"$PY" -m pip install "adversarial-robustness-toolbox==1.20.1" packaging "foolbox==3.3.4"
"$PY" - <<'PYCHECK'
import importlib
import sys

for name in ("torchattacks", "foolbox", "art"):
    importlib.import_module(name)
assert "torchvision" not in sys.modules, "a peer imported torchvision"
import torch

print("peers installed; torch", torch.__version__)
PYCHECK
