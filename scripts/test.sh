#!/usr/bin/env bash
# Install everything the tests need (scripts/install.sh --test), then run ruff, the import-layer
# contract ([tool.importlinter] in pyproject.toml) and the whole suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
.venv/bin/ruff check .
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
