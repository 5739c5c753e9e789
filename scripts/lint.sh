#!/usr/bin/env bash
# Static checks: ruff (lint, line length, statements per function), mypy (types), import-linter (the layer
# contracts in pyproject.toml) and module sizes (scripts/module_sizes.py) on the
# package, tests, benchmarks and examples; then the documentation site's strict build (mkdocs.yml: a broken
# link or anchor, or a docstring mkdocstrings cannot read, fails it). Run after setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[lint,docs]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/ruff check src tests benchmarks examples scripts
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python scripts/module_sizes.py
SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
# (not --quiet: it hides the warnings from the count that --strict fails on; the log is shown when it fails)
if ! log=$(NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -d "$SITE" 2>&1); then
  echo "$log" >&2
  exit 1
fi
echo "docs: mkdocs build --strict passed"
