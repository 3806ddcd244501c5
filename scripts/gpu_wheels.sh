#!/usr/bin/env bash
# Prepares .whl/ (git-ignored) for a run of scripts/gpu_check.py on the device machine, which
# has torch but no package registry: ../shared/device/prep-wheels.sh fetches optuna and its
# dependencies; this adds what the project's GPU run needs beyond them (the test runner for
# `pytest -m cuda`, optuna-dashboard for trial notes). Run here, in the project's root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ../shared/device/prep-wheels.sh
for p in pytest pluggy iniconfig packaging pytest-timeout optuna-dashboard bottle; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "$p" 2>&1 | grep -v 'is ignored' || true
done
ls .whl | wc -l
