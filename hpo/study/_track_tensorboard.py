"""The TensorBoard tracker: an event-file folder per trial (see :mod:`hpo.study._tracking`).

Through torch's ``SummaryWriter`` (TensorBoard's own format and its HParams plugin's
summaries), into ``<root>/<study>/trial-N``: the per-epoch scalars as they come, then, when the
trial ends, its parameters and final metrics for the HParams view. A folder per trial number,
so workers on several machines sharing the root never write the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpo import record
from hpo.study._tracking import RunEnd, RunStart


class TensorBoardSink:
    """Event files of one study's trials under ``folder``."""

    name = "tensorboard"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writers: dict[int, Any] = {}
        self.params: dict[int, dict[str, Any]] = {}

    def start(self, run: RunStart) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writers[run.number] = SummaryWriter(log_dir=str(self.folder / f"trial-{run.number}"))
        # HParams takes numbers, strings and booleans; the lineage makes retries recognisable
        self.params[run.number] = {
            **{k: v if isinstance(v, (int, float, str, bool)) else str(v)
               for k, v in run.params.items()},
            "hpo.kind": run.kind, "hpo.continues": -1 if run.continues is None else run.continues}

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        writer = self.writers[number]
        for key, value in metrics.items():
            writer.add_scalar(key, value, epoch)
        writer.flush()

    def end(self, run: RunEnd) -> None:
        writer = self.writers.pop(run.number)
        final = {f"final/{k}": v[-1] for k, v in run.curve.items() if v}
        writer.add_hparams(self.params.pop(run.number), final, run_name=".",
                           global_step=len(run.curve.get("val_accuracy", [])))
        writer.add_text(record.STOP_REASON, f"{run.state}: {run.reason}")
        writer.close()
