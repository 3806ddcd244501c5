"""``hpo dashboard``: optuna-dashboard on the study storage, with the trials' artifacts."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import optuna

from hpo.errors import UserError


def serve_dashboard(storage: optuna.storages.BaseStorage, artifact_dir: Path, host: str,
                    port: int, announce: str = "") -> None:
    """Serves until interrupted; binds ``host`` only (127.0.0.1 unless told otherwise).

    The address is tried first, so a busy port is one line (exit 2), and ``announce`` is
    printed only once the dashboard can really listen there.
    """
    from optuna_dashboard import run_server

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); "
                        "choose another --port") from None
    artifact_dir.mkdir(parents=True, exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
    if announce:
        print(announce, file=sys.stderr, flush=True)
    try:
        run_server(storage, host=host, port=port, artifact_store=store)
    except KeyboardInterrupt:
        pass
