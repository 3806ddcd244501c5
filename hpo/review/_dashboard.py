"""``hpo dashboard``: optuna-dashboard on the study storage, with the trials' artifacts."""

from __future__ import annotations

from pathlib import Path

import optuna


def serve_dashboard(storage: optuna.storages.BaseStorage, artifact_dir: Path, host: str,
                    port: int) -> None:
    """Serves until interrupted; binds ``host`` only (127.0.0.1 unless told otherwise)."""
    from optuna_dashboard import run_server

    artifact_dir.mkdir(parents=True, exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
    try:
        run_server(storage, host=host, port=port, artifact_store=store)
    except KeyboardInterrupt:
        pass
