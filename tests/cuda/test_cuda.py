"""The CUDA path, on a real GPU: ``pytest -m cuda`` (skipped without one; run by
``scripts/gpu_check.py`` on the device machine)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpo.training import (
    OPTIMIZERS,
    DataConfig,
    ModelConfig,
    TrainConfig,
    build_model,
    build_optimizer,
    load_data,
    train,
)

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")
DIGITS = TrainConfig(
    data=DataConfig(name="digits", crop_padding=1), model=ModelConfig("resnet8", width=16),
    optimizer="nesterov", lr=0.1, weight_decay=5e-4, schedule="cosine", epochs=8,
    batch_size=64, seed=0,
)


def test_bf16_autocast_trains_as_well_as_fp32_on_digits() -> None:
    data = load_data(DIGITS.data)
    acc = {p: train(dataclasses.replace(DIGITS, precision=p), data, device=CUDA)
           .history[-1].val_accuracy for p in ("fp32", "bf16")}
    assert acc["fp32"] > 0.9 and abs(acc["bf16"] - acc["fp32"]) <= 0.02, acc


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fused_or_foreach_optimizers_step_on_the_gpu(name: str) -> None:
    model = build_model(ModelConfig("resnet8", width=8), 3, 10).to(CUDA)
    opt = build_optimizer(name, model, 0.01, 1e-4, True, {}, accelerated=True)
    assert opt.defaults["fused" if OPTIMIZERS[name].fused else "foreach"] is True
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(8, 3, 16, 16, device=CUDA)).sum().backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_compiled_first_epoch_loss_matches_eager() -> None:
    config = dataclasses.replace(DIGITS, epochs=1, precision="fp32")
    data = load_data(config.data)
    eager = train(config, data, device=CUDA).history[0].train_loss
    compiled = train(dataclasses.replace(config, compile=True), data,
                     device=CUDA).history[0].train_loss
    assert abs(compiled - eager) <= 1e-2, (eager, compiled)


def test_a_real_out_of_memory_requeues_the_trial_and_the_retry_completes(tmp_path: Path) -> None:
    from hpo.study._objective import Objective
    from hpo.study._spec import parse_spec
    from hpo.worker._launch import create_or_resume

    raw = {"study": {"name": "oom", "n_trials": 1}, "pruner": {"name": "none"},
           "data": {"name": "synthetic", "train_size": 2000, "test_size": 10},
           "model": {"name": "resnet20"},
           "training": {"epochs": 1, "batch_size": 2000, "precision": "fp32"},
           "search": {"optimizer": "sgd", "schedule": "constant", "sgd": {"lr": 0.01}}}
    spec = parse_spec(raw, "test")
    study = create_or_resume(spec, str(tmp_path / "oom.journal"), "oom")
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(0.005)  # about 400 MB of an 80 GB card
    try:
        first = Objective(spec, CUDA)
        study.optimize(first, n_trials=1, catch=(Exception,))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert first.out_of_memory
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and trials[1].state == TrialState.WAITING
    assert trials[0].user_attrs["stop_reason"].startswith("out of memory on cuda")
    study.optimize(Objective(spec, CUDA), n_trials=1, catch=(Exception,))
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE], states
    assert optuna.load_study(study_name="oom", storage=study._storage).best_trial.number == 1
