"""Warm start: earlier studies' finished trials seed a new study's sampler.

``[study] warm_start = ["name", ...]`` names studies in the same storage. When the new study is
created, each of their finished (complete or pruned) trials whose parameters this study's search
space could have proposed is added to it (Optuna's ``add_trial``) with its values, so TPE and
the other samplers model them from the first trial on. A trial whose parameters the space does
not ask for, or asks for with other names or outside its ranges, is skipped. Warm-start trials
carry ``warm_start`` (``<study>#<number>``); they never count against the budget and stay out
of rankings, rungs and the report's statistics, which count only what this study trained.
"""

from __future__ import annotations

import sys
import warnings
from typing import TextIO

import optuna
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from hpo import record
from hpo.errors import UserError
from hpo.storage._backends import find_study, redact
from hpo.study._space import suggest_config
from hpo.study._spec import StudySpec

# What a search space decides in a config: a trial fits the new space when the new space,
# given the trial's parameters, resolves these exactly as the trial ran them.
_RECIPE = ("optimizer", "lr", "weight_decay", "optimizer_params", "schedule", "schedule_params",
           "init", "zero_init_residual", "no_decay_bn_bias", "label_smoothing", "model")


def _in_space(trial: FrozenTrial, spec: StudySpec, label: str) -> FrozenTrial | None:
    """``trial`` re-expressed in ``spec``'s search space, or None when the space would not
    have proposed it (a parameter it does not search with that value, a value outside a
    range, a setting it fixes at another value)."""
    fixed = FixedTrial(trial.params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial only warns about an out-of-range value
            config = suggest_config(fixed, spec.space, spec.base).to_dict()
    except (ValueError, UserWarning):
        return None
    ran = trial.user_attrs.get(record.CONFIG, {})
    if any(config.get(k) != ran.get(k) for k in _RECIPE):
        return None
    return optuna.trial.create_trial(
        state=trial.state, value=trial.value, distributions=fixed.distributions,
        params={k: trial.params[k] for k in fixed.distributions},
        intermediate_values=trial.intermediate_values,
        user_attrs={record.CONFIG: ran, record.WARM_START: label},
    )


def warm_sources(storage: optuna.storages.BaseStorage, spec: StudySpec, storage_url: str
                 ) -> list[optuna.Study]:
    """The studies named in ``study.warm_start``, checked before the new study is created: an
    unknown study, or one that optimized another metric, is a one-line :class:`UserError`."""
    sources = []
    for name in spec.warm_start:
        try:
            source = find_study(storage, storage_url, name)
        except UserError as e:
            raise UserError(f"{spec.source}: study.warm_start: {e}") from None
        if record.spec_metric(source) != spec.metric:
            raise UserError(f"{spec.source}: study.warm_start: study {name!r} optimized "
                            f"{record.spec_metric(source)}, not {spec.metric}; its values "
                            "cannot seed this study")
        sources.append(source)
    return sources


def warm_start(study: optuna.Study, spec: StudySpec, sources: list[optuna.Study],
               storage_url: str, out: TextIO | None = None) -> dict[str, int]:
    """Adds the ``sources``' finished trials that fit ``spec``'s space to ``study``; one line
    per source. Returns how many trials came from each study."""
    out = out or sys.stderr
    used: dict[str, int] = {}
    for source in sources:
        name = source.study_name
        finished = [t for t in source.get_trials(deepcopy=False, states=record.FINISHED)
                    if not record.is_replicate(t) and not record.is_warm(t)
                    and record.DUPLICATE_OF not in t.user_attrs]
        taken = [c for t in finished
                 if (c := _in_space(t, spec, f"{name}#{t.number}")) is not None]
        study.add_trials(taken)
        used[name] = len(taken)
        complete = sum(t.state == TrialState.COMPLETE for t in taken)
        print(f"[hpo] warm start from {name!r} in {redact(storage_url)}: {len(taken)} of "
              f"{len(finished)} finished trials ({complete} complete) seed the sampler; "
              f"{len(finished) - len(taken)} skipped (parameters outside this study's search "
              "space)", file=out, flush=True)
    return used
