"""Experiment trackers: every trial followed where a team already looks (MLflow, TensorBoard).

Opt-in per study (``[track]`` in the spec) or per command (``--track mlflow,tensorboard``, or
``$HPO_TRACK``, for a study that exists). optuna-dashboard stays the review UI; a tracker is a
copy of each trial's run for the rest of a team's tools:

- a trial is a *run*: its parameters, its resolved config, train/val metrics per epoch, then its
  state and stop reason (and, in MLflow, its learning-curve figure);
- a retry, a continuation (a promoted paused trial) or a replicate is a run of its own, tagged
  with what it is and the trial (and run) it continues; it also carries the epochs it inherited,
  so each run's curve is its trial's whole stored curve. When it continues a run that never
  ended (its worker was killed), it fills in that run's missing epochs from the storage and
  ends it as killed; when the killed worker never got to open its run, the retry opens it.

A tracker never costs a trial or stalls a worker: the training thread only puts events on a
queue; one thread per worker sends them, each call bounded in time (MLflow's HTTP timeout and
retries are capped), and a tracker that is down, slow or refuses a write costs one warning line
per worker and tracker until it answers again. After a failed call the run's later events are
dropped (one failed call per run at most, so no backlog builds); later trials log again once
the tracker answers.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hpo.checks import Checker, Rule

_log = logging.getLogger("hpo.worker")

TRACKERS = ("mlflow", "tensorboard")
# What the extra that brings each tracker's package is called, for messages.
PACKAGES = {"mlflow": "mlflow", "tensorboard": "tensorboard"}


@dataclass(frozen=True)
class TrackSpec:
    """Which trackers a study writes to (``[track]``), and where.

    Attributes:
        mlflow: log to MLflow.
        mlflow_uri: its tracking URI; None: ``$MLFLOW_TRACKING_URI``, else MLflow's default.
        mlflow_experiment: the experiment; None: the study's name.
        tensorboard: write TensorBoard event files.
        tensorboard_dir: their root; None: ``<checkpoint dir>/tensorboard``. Each study gets
            a folder in it, each trial a folder in that (``<root>/<study>/trial-N``).
    """

    mlflow: bool = False
    mlflow_uri: str | None = None
    mlflow_experiment: str | None = None
    tensorboard: bool = False
    tensorboard_dir: str | None = None

    @property
    def any(self) -> bool:
        return self.mlflow or self.tensorboard

    def also(self, names: str | None) -> TrackSpec:
        """This spec with the trackers named in ``names`` (``"mlflow,tensorboard"``) on too."""
        wanted = {n.strip() for n in (names or "").split(",") if n.strip()}
        return TrackSpec(self.mlflow or "mlflow" in wanted, self.mlflow_uri,
                         self.mlflow_experiment, self.tensorboard or "tensorboard" in wanted,
                         self.tensorboard_dir)


def parse_track(c: Checker, table: dict[str, Any]) -> TrackSpec:
    """``[track]``: mlflow, mlflow_uri, mlflow_experiment, tensorboard, tensorboard_dir."""
    return TrackSpec(
        c.get(table, "track", "mlflow", Rule("bool"), False),
        c.get(table, "track", "mlflow_uri", Rule("str"), None),
        c.get(table, "track", "mlflow_experiment", Rule("str"), None),
        c.get(table, "track", "tensorboard", Rule("bool"), False),
        c.get(table, "track", "tensorboard_dir", Rule("str"), None),
    )


def tracker_names(value: str) -> str:
    """``--track``'s value, checked: comma-separated names of :data:`TRACKERS`."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown or not names:
        raise ValueError(f"unknown tracker {', '.join(unknown) or value!r}; allowed: "
                         f"{', '.join(TRACKERS)}")
    return ",".join(names)


def missing_tracker(track: TrackSpec) -> str | None:
    """The first tracker turned on whose package does not import, or None."""
    import importlib.util

    for name, on in (("mlflow", track.mlflow), ("tensorboard", track.tensorboard)):
        if on and importlib.util.find_spec(PACKAGES[name]) is None:
            return name
    return None


@dataclass
class RunStart:
    """What a tracker needs to open a trial's run.

    Attributes:
        number: the trial's number.
        params: its searched parameters.
        config: its resolved config (a dict).
        kind: ``trial``, ``retry``, ``continuation`` or ``replicate``.
        continues: the trial whose run this one carries on (retries, continuations), or the
            trial a replicate retrains.
        previous_curve: the stored curve of ``continues`` (to complete its run if it never
            ended), None when there is none.
    """

    number: int
    params: dict[str, Any]
    config: dict[str, Any]
    kind: str = "trial"
    continues: int | None = None
    previous_curve: dict[str, list[float]] | None = None


@dataclass
class RunEnd:
    """How a trial's run ended: Optuna's state name, its stop reason, value, whole curve."""

    number: int
    state: str
    reason: str
    value: float | None
    curve: dict[str, list[float]] = field(default_factory=dict)


class Sink(Protocol):
    """One tracker's writer, called from the tracking thread only."""

    name: str

    def start(self, run: RunStart) -> None: ...

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None: ...

    def end(self, run: RunEnd) -> None: ...


class Tracking:
    """Sends a worker's trial events to its sinks on a thread of its own (see the module)."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._failing: set[str] = set()  # sinks that warned and have not answered since
        self._broken: dict[str, set[int]] = {s.name: set() for s in sinks}  # runs not started
        self._thread = threading.Thread(target=self._run, name="hpo-tracking", daemon=True)
        self._thread.start()

    def start(self, run: RunStart) -> None:
        self._queue.put(("start", run))

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self._queue.put(("epoch", (number, epoch, metrics)))

    def end(self, run: RunEnd) -> None:
        self._queue.put(("end", run))

    def close(self, timeout: float = 10.0) -> None:
        """Sends what is queued, waiting at most ``timeout`` seconds (a worker leaving)."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            what, payload = item
            number = payload[0] if what == "epoch" else payload.number
            for sink in self.sinks:
                broken = self._broken[sink.name]
                if what != "start" and number in broken:
                    continue  # its run never opened: nothing to add to
                try:
                    if what == "start":
                        sink.start(payload)
                    elif what == "epoch":
                        sink.epoch(*payload)
                    else:
                        sink.end(payload)
                except Exception as e:  # noqa: BLE001 - a tracker must never cost a trial
                    # the run's later events are dropped too: one failed call per run at most,
                    # so a backlog never builds behind a tracker that is down
                    broken.add(number)
                    if sink.name not in self._failing:
                        self._failing.add(sink.name)
                        _log.warning("%s tracking failed (%s: %s); trials go on, and log there "
                                     "again once it answers", sink.name, type(e).__name__,
                                     _first_line(e))
                else:
                    self._failing.discard(sink.name)


def _first_line(e: Exception) -> str:
    """The error's first line, with any password in a URL in it masked (a tracking URI may
    carry credentials, and the client's errors quote it)."""
    text = str(e).strip().splitlines()
    return _PASSWORD.sub(r"//\1:***@", text[0][:200]) if text else ""


_PASSWORD = re.compile(r"//([^/:@\s]+):[^@\s/]+@")


def build_tracking(track: TrackSpec, study_name: str, checkpoint_root: Path | None
                   ) -> Tracking | None:
    """The worker's tracking, or None when no tracker is on."""
    if not track.any:
        return None
    sinks: list[Sink] = []
    try:
        if track.mlflow:
            from hpo.study._track_mlflow import MlflowSink

            sinks.append(MlflowSink(track.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI"),
                                    track.mlflow_experiment or study_name, study_name))
        if track.tensorboard:
            from hpo.study._track_tensorboard import TensorBoardSink

            root = Path(track.tensorboard_dir) if track.tensorboard_dir else \
                (checkpoint_root or Path("hpo-checkpoints")) / "tensorboard"
            sinks.append(TensorBoardSink(root / study_name))
    except Exception as e:  # noqa: BLE001 - a tracker must never cost a trial
        _log.warning("tracking is off in this worker: %s: %s", type(e).__name__, _first_line(e))
    return Tracking(sinks) if sinks else None
