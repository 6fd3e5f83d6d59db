#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), lint, type check, then pytest (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
# Two workers: the tests that start nodes or processes run on one of them, in order
# (tests/conftest.py), every other module whole on either.
.venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
