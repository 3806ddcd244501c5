"""What one worker process runs, decided before it starts: standard library only, since the
plan crosses into a spawned process before that process may import anything slow."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process's orders.

    Attributes:
        storage_url: Optuna storage URL or journal file path.
        study_name: an existing study created by hpo.
        checkpoint_dir: root of the checkpoint store; None disables checkpoints.
        n_trials: total budget of finished trials; the spec's ``n_trials`` when None.
        timeout: seconds after which this worker starts no new trial.
        seeded: this process's sampler draws from the spec's ``sampler.seed`` itself; true for
            one process only, the first worker that ``hpo launch`` starts on a fresh study.
            Every other process seeds its sampler from the operating system's entropy, so no
            two processes, on one machine or many, now or later, share a stream.
        threads: CPU threads for torch in this process (None: torch's default).
        index: the process's number in its pool, for its messages.
        gpu: the GPU it runs on (``CUDA_VISIBLE_DEVICES``), None on the CPU.
        stall_timeout: seconds without an optimizer step before a trial counts as stalled,
            when the command sets it (``--stall-timeout``); None: the spec's, else automatic.
        track: trackers to turn on beside the spec's (``--track``: ``"mlflow,tensorboard"``).
    """

    storage_url: str
    study_name: str
    checkpoint_dir: str | None
    n_trials: int | None = None
    timeout: float | None = None
    seeded: bool = False
    threads: int | None = None
    index: int = 0
    gpu: str | None = None
    stall_timeout: float | None = None
    track: str | None = None
