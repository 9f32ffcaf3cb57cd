#!/usr/bin/env bash
# Runs the test suite on a fresh or existing machine: bash launch/test.sh [pytest args]
source "$(dirname "$0")/_venv.sh"
ruff check lmjax tests benchmarks configs
ruff format --check lmjax tests benchmarks configs
python -m pytest -n 2 --dist loadfile --durations=15 tests "$@"
