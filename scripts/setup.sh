#!/usr/bin/env bash
# Creates .venv in the repository (once) and installs hpo with its test tools into it.
# HPO_VENV=.venv-bench HPO_EXTRAS=dev,bench: a second environment with the peer libraries of
# scripts/bench_search.py (kept apart: optuna-dashboard imports botorch when it is installed,
# which slows every dashboard start and prints a torch deprecation warning).
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged since the last.
#
# uv installs, not pip: the same versions in about a quarter of the time (28 s against 108 s
# here, most of it torch's 5.5 GB of CUDA wheels, which uv unpacks in parallel). pip installs
# uv, and hands it this machine's package settings (mirrors, local indexes, find-links,
# constraints), which uv does not read from pip's configuration; with pip's rule for choosing
# among indexes (the best version in any), so that both pick the same releases.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${HPO_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
EXTRAS=${HPO_EXTRAS:-dev}  # "dev,bench" adds the peer libraries of scripts/bench_search.py
stamp=$VENV/.hpo-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  mapfile -t pip_settings < <("$VENV/bin/python" - <<'EOF'
import subprocess, sys

listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                        capture_output=True, text=True).stdout.splitlines()
rank = {"global": 0, "install": 1, ":env:": 2}  # pip: the environment overrides the files
found: dict[str, tuple[int, str]] = {}
for line in listed:
    key, _, value = line.partition("=")
    section, _, name = key.rpartition(".")
    if section in rank and rank[section] >= found.get(name, (-1, ""))[0]:
        found[name] = (rank[section], value.strip("'\""))
for name in ("index-url", "extra-index-url", "find-links", "constraint"):
    for value in found.get(name, (0, ""))[1].split():
        print(f"--{name}\n{value}")
EOF
)
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --compile-bytecode \
    --index-strategy unsafe-best-match ${pip_settings[@]+"${pip_settings[@]}"} -e ".[$EXTRAS]"
  if [[ ",$EXTRAS," == *",bench,"* ]]; then  # DEHB without its numpy<2 pin (see pyproject)
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --compile-bytecode --no-deps \
      --index-strategy unsafe-best-match ${pip_settings[@]+"${pip_settings[@]}"} dehb==0.1.2
  fi
  "$VENV/bin/python" -c "import hpo, torch, optuna" # fail here, not later, if the install broke
  echo "$want" > "$stamp"
fi
