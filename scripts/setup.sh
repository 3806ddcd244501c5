#!/usr/bin/env bash
# Creates .venv in the repository (once) and installs hpo with its test tools into it.
# Re-running is cheap: pip is skipped while pyproject.toml is unchanged since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.hpo-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # --no-compile: pip would byte-compile all 14,000 modules of the venv, 25 s of the 110 s
  # install on the 2-core machine; the import below compiles the ones hpo's processes use.
  .venv/bin/python -m pip install --quiet --no-compile --disable-pip-version-check -e ".[dev]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  # Fails here, not later, if the install broke; byte-compiles (and caches, even where
  # PYTHONDONTWRITEBYTECODE is set) what the commands, the workers and the tests import.
  PYTHONDONTWRITEBYTECODE= .venv/bin/python -c "import hpo.cli, hpo.worker._preload, \
    hpo.worker._preload_rdb, hpo.review._report, hpo.review._dashboard, pytest, xdist"
  echo "$want" > "$stamp"
fi
