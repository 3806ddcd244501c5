"""The MLflow tracker: a study is an experiment, a trial a run (see :mod:`hpo.study._tracking`).

Through MLflow's own client (``MlflowClient``), against any tracking URI it accepts (an
``http(s)://`` server, a database, a local folder). Each call is bounded: MLflow's HTTP timeout
is capped at 10 s and its retries at 1 after a second here (its defaults, 120 s and 7
retries with a doubling back-off, would hold a worker's tracking thread for many minutes behind
a server that is down), unless the environment sets them.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hpo.study._tracking import RunEnd, RunStart

os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
# its "View run ... at" line for every ended run would bury the progress lines
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

# Optuna's state -> MLflow's run status (a pruned or paused trial was stopped early)
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
METRICS = ("train_loss", "val_loss", "val_accuracy")


class MlflowSink:
    """Runs of one study's trials in one MLflow experiment."""

    name = "mlflow"

    def __init__(self, uri: str | None, experiment: str, study_name: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        self.experiment, self.study_name = experiment, study_name
        self._experiment_id: str | None = None
        self.runs: dict[int, str] = {}  # trial number -> run id

    def _experiment(self) -> str:
        """The experiment's id, created by whichever worker comes first."""
        from mlflow.exceptions import MlflowException

        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment, tags={"hpo.study": self.study_name})
                except MlflowException:  # another worker created it meanwhile
                    found = self.client.get_experiment_by_name(self.experiment)
                    if found is None:
                        raise
            if self._experiment_id is None:
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def _run_of(self, number: int) -> object | None:
        """The run of trial ``number`` in the experiment, whoever logged it."""
        found = self.client.search_runs([self._experiment()],
                                        filter_string=f"tags.`hpo.trial` = '{number}'",
                                        max_results=1)
        return found[0] if found else None

    def start(self, run: RunStart) -> None:
        tags = {"hpo.study": self.study_name, "hpo.trial": str(run.number),
                "hpo.kind": run.kind}
        if run.continues is not None:
            tags["hpo.continues"] = str(run.continues)
            earlier = self._run_of(run.continues)
            if earlier is None and run.kind == "retry" and run.previous_curve:
                earlier = self._open(run.continues, run.params, {
                    "hpo.study": self.study_name, "hpo.trial": str(run.continues),
                    "hpo.kind": "trial", "hpo.logged_by": f"its retry, trial {run.number}: "
                    "its worker was killed before it logged"}, f"trial-{run.continues}")
            if earlier is not None:
                tags["hpo.continues_run"] = earlier.info.run_id
                if earlier.info.status == "RUNNING" and run.kind != "replicate":
                    self._finish_killed(earlier.info.run_id, run.previous_curve or {})
        what = f" ({run.kind} of trial {run.continues})" if run.continues is not None else ""
        created = self._open(run.number, run.params, tags, f"trial-{run.number}{what}")
        self.runs[run.number] = created.info.run_id
        self.client.log_dict(created.info.run_id, run.config, "config.json")

    def _open(self, number: int, params: dict, tags: dict[str, str], name: str) -> Any:
        """A new RUNNING run of trial ``number`` with its parameters."""
        from mlflow.entities import Param

        created = self.client.create_run(self._experiment(), run_name=name, tags=tags)
        self.client.log_batch(created.info.run_id, params=[
            Param(k, str(v)[:6000]) for k, v in sorted(params.items())])
        return created

    def _finish_killed(self, run_id: str, curve: dict[str, list[float]]) -> None:
        """Completes a run whose worker was killed from its trial's stored curve, and ends it
        as killed: its queued epochs died with the worker."""
        logged = len(self.client.get_metric_history(run_id, "val_accuracy"))
        for i in range(logged, len(curve.get("val_accuracy", []))):
            self._log(run_id, i + 1, {k: curve[k][i] for k in METRICS if k in curve})
        self.client.set_tag(run_id, "hpo.state", "FAIL")
        self.client.set_terminated(run_id, status="KILLED")

    def _log(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, epoch)
                                               for k, v in metrics.items()])

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self._log(self.runs[number], epoch, metrics)

    def end(self, run: RunEnd) -> None:
        from hpo.study._notes import curve_png

        run_id = self.runs.pop(run.number)
        self.client.set_tag(run_id, "hpo.state", run.state)
        self.client.set_tag(run_id, "hpo.stop_reason", run.reason[:5000])
        if len(run.curve.get("val_accuracy", [])) >= 2:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"curve-trial-{run.number}.png"
                curve_png(path, run.number, run.curve)
                self.client.log_artifact(run_id, str(path))
        self.client.set_terminated(run_id, status=STATUS.get(run.state, "FAILED"))
