#!/usr/bin/env bash
# Create .venv with PyTorch and simclr (the distribution simclr-kit, editable) and its test extra (every
# optional dependency, the docs tools, pytest). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
# CPU machines here carry these builds on disk; elsewhere pip downloads them.
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1" 2>&1 \
  | grep -v "^WARNING: Location" || true
# simclr is installed as simclr-kit (before 0.2.0 as simclr: that one goes, or two would claim the package).
.venv/bin/python -m pip uninstall -q -y --disable-pip-version-check simclr >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import simclr, torch, torchvision; print('simclr ready: torch', torch.__version__)"
