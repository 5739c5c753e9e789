#!/usr/bin/env bash
# Static checks: ruff (lint, line length, statements per function), mypy (types), import-linter (the layer
# contracts in pyproject.toml) and module sizes (scripts/module_sizes.py) on the
# package, tests, benchmarks and examples. Run after setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[lint]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/ruff check src tests benchmarks examples scripts
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python scripts/module_sizes.py
