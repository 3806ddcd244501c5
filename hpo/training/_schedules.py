"""Learning-rate schedules as pure functions of the optimizer step.

Each schedule maps progress ``p`` in [0, 1] (after warmup) to a multiplier of the peak lr; the
lr is set per optimizer step, so a schedule is a one-line test and needs no scheduler object.
Warmup is linear from ``peak / warmup_steps`` to ``peak`` and precedes every schedule that
accepts ``warmup_epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hpo.checks import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, UNIT_CLOSED, UNIT_OPEN, Rule
from hpo.training._tables import lookup


@dataclass(frozen=True)
class ScheduleEntry:
    """A schedule: its multiplier of the peak lr and its settings with their defaults.

    ``multiplier(p, settings)`` takes the progress p in [0, 1); with ``by_step`` it is
    ``multiplier(step, steps, settings)`` instead, for a schedule defined on whole steps
    (onecycle, whose peak and floor sit on steps as in torch's OneCycleLR).
    """

    multiplier: Callable[..., float]
    params: Mapping[str, Any] = field(default_factory=dict)
    by_step: bool = False


def _step(p: float, s: Mapping[str, Any]) -> float:
    # He et al. 2016: divide by 10 at 32k and 48k of 64k iterations (fractions 0.5 and 0.75).
    passed = sum(1 for m in (s["milestone1"], s["milestone2"]) if p >= m)
    return float(s["gamma"]) ** passed


def _cosine(p: float, s: Mapping[str, Any]) -> float:
    floor = float(s["min_lr_ratio"])
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def _cosine_restarts(p: float, s: Mapping[str, Any]) -> float:
    # SGDR (Loshchilov & Hutter 2017): cycle i lasts t_mult**i units; the run holds `cycles`.
    cycles, t_mult = int(s["cycles"]), float(s["t_mult"])
    lengths = [t_mult**i for i in range(cycles)]
    position = p * sum(lengths)
    for length in lengths:
        if position < length:
            return _cosine(position / length, s)
        position -= length
    return _cosine(1.0, s)


def _onecycle(step: int, steps: int, s: Mapping[str, Any]) -> float:
    # Smith & Topin 2019, exactly as torch's OneCycleLR (cosine, two phases): from
    # peak/div_factor up to the peak at step pct_start * steps - 1, then down to
    # peak/(div_factor * final_div_factor) at the last step, steps - 1.
    start = 1.0 / float(s["div_factor"])
    end = start / float(s["final_div_factor"])
    peak_at = float(s["pct_start"]) * steps - 1
    if step <= peak_at:
        return _cos_between(start, 1.0, step / peak_at if peak_at > 0 else 1.0)
    last = steps - 1
    return _cos_between(1.0, end, (step - peak_at) / (last - peak_at) if last > peak_at else 1.0)


def _cos_between(start: float, end: float, t: float) -> float:
    """Cosine interpolation from ``start`` (t=0) to ``end`` (t=1)."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * t))


# Every schedule setting a spec may fix or search, with the values it may take.
SCHEDULE_SETTINGS: dict[str, Rule] = {
    "warmup_epochs": Rule("float", bound=NON_NEGATIVE),
    "milestone1": Rule("float", bound=UNIT_OPEN),
    "milestone2": Rule("float", bound=UNIT_OPEN),
    "gamma": Rule("float", bound=(lambda v: 0 < v <= 1, "in (0, 1]")),
    "min_lr_ratio": Rule("float", bound=UNIT_CLOSED),
    "cycles": Rule("int", bound=AT_LEAST_ONE),
    "t_mult": Rule("float", bound=(lambda v: v >= 1, ">= 1")),
    "pct_start": Rule("float", bound=UNIT_OPEN),
    "div_factor": Rule("float", bound=(lambda v: v >= 1, ">= 1")),
    "final_div_factor": Rule("float", bound=(lambda v: v >= 1, ">= 1")),
    "final_lr_ratio": Rule("float", bound=(lambda v: 0 < v <= 1, "in (0, 1]")),
    "power": Rule("float", bound=POSITIVE),
}
_WARMUP = {"warmup_epochs": 0.0}
_COSINE = {"min_lr_ratio": 0.0}

SCHEDULES: dict[str, ScheduleEntry] = {
    "constant": ScheduleEntry(lambda p, s: 1.0),
    "step": ScheduleEntry(
        _step, {**_WARMUP, "milestone1": 0.5, "milestone2": 0.75, "gamma": 0.1}
    ),
    "cosine": ScheduleEntry(_cosine, {**_WARMUP, **_COSINE}),
    "cosine_restarts": ScheduleEntry(
        _cosine_restarts, {**_WARMUP, **_COSINE, "cycles": 3, "t_mult": 2.0}
    ),
    "onecycle": ScheduleEntry(
        _onecycle, {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
        by_step=True,
    ),
    # Goyal et al. 2017: 5 epochs of linear warmup; then cosine (He et al. 2019).
    "warmup_cosine": ScheduleEntry(_cosine, {"warmup_epochs": 5.0, **_COSINE}),
    # Decays by a constant factor per step towards final_lr_ratio, which p = 1 would reach;
    # the last step (p = (T - 1) / T) sits one step short of it, as in torch's schedulers.
    "exponential": ScheduleEntry(
        lambda p, s: float(s["final_lr_ratio"]) ** p, {**_WARMUP, "final_lr_ratio": 0.01}
    ),
    "polynomial": ScheduleEntry(
        lambda p, s: (1 - p) ** float(s["power"]), {**_WARMUP, "power": 1.0}
    ),
}


def lr_at(
    step: int,
    total_steps: int,
    steps_per_epoch: int,
    peak_lr: float,
    name: str,
    params: Mapping[str, Any],
) -> float:
    """The lr of optimizer step ``step`` (0-based) of ``total_steps``.

    Warmup covers ``round(warmup_epochs * steps_per_epoch)`` steps, at most half of the run; the
    schedule then runs over the remaining steps with p = (step - warmup) / (total - warmup).
    """
    entry = lookup(SCHEDULES, name, "schedule")
    settings = {**entry.params, **params}
    warmup = min(round(float(settings.get("warmup_epochs", 0.0)) * steps_per_epoch),
                 total_steps // 2)
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    if entry.by_step:
        return peak_lr * entry.multiplier(min(step - warmup, total_steps - warmup - 1),
                                          total_steps - warmup, settings)
    p = (step - warmup) / max(1, total_steps - warmup)
    return peak_lr * entry.multiplier(min(p, 1.0), settings)
