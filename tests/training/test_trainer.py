import dataclasses

import pytest
import torch

from hpo.training import DataConfig, ModelConfig, TrainConfig, load_data, train

CONFIG = TrainConfig(
    data=DataConfig(name="digits", crop_padding=1), model=ModelConfig("resnet8", width=8),
    optimizer="nesterov", lr=0.2, weight_decay=5e-4, schedule="cosine", epochs=3,
    batch_size=64, seed=3,
)


def test_same_seed_gives_identical_metrics_on_cpu() -> None:
    data = load_data(CONFIG.data)
    a, b = train(CONFIG, data), train(CONFIG, data)
    assert a.status == b.status == "completed" and a.epochs_run == 3
    assert [(m.train_loss, m.val_loss, m.val_accuracy) for m in a.history] == [
        (m.train_loss, m.val_loss, m.val_accuracy) for m in b.history]


def test_another_seed_gives_other_metrics() -> None:
    data = load_data(CONFIG.data)
    a = train(CONFIG, data)
    b = train(TrainConfig(**{**CONFIG.__dict__, "seed": 4}), data)
    assert a.history[-1].train_loss != b.history[-1].train_loss


def test_trains_digits_well_above_chance() -> None:
    result = train(CONFIG)
    assert result.history[-1].val_accuracy > 0.8
    assert result.device == "cpu"


def test_callback_sees_every_epoch_and_can_stop_the_run() -> None:
    seen = []

    def on_epoch(m):
        seen.append(m.epoch)
        return "enough" if m.epoch == 2 else None

    result = train(CONFIG, on_epoch=on_epoch)
    assert seen == [1, 2] and result.status == "stopped" and result.stop_reason == "enough"


def test_diverging_config_stops_with_its_reason() -> None:
    config = TrainConfig(**{**CONFIG.__dict__, "optimizer": "sgd", "lr": 1e6,
                            "schedule": "constant"})
    result = train(config)
    assert result.status == "diverged"
    assert result.stop_reason.startswith("diverged: training loss")
    assert result.epochs_run == 0


def test_config_round_trips_through_its_dict() -> None:
    raw = CONFIG.to_dict()
    assert TrainConfig.from_dict(raw) == CONFIG
    assert {"optimizer", "lr", "schedule", "weight_decay", "init"} <= raw.keys()


def test_bf16_precision_runs_on_cpu() -> None:
    config = TrainConfig(**{**CONFIG.__dict__, "precision": "bf16", "epochs": 1})
    assert train(config).history[0].val_accuracy > 0.1
    assert torch.get_default_dtype() == torch.float32


def _history(result):
    return [(m.epoch, m.train_loss, m.val_loss, m.val_accuracy, m.lr) for m in result.history]


@pytest.mark.parametrize("loader", ["device", "dataloader"])
def test_resume_mid_epoch_from_a_checkpoint_file_gives_the_uninterrupted_result(
        tmp_path, loader: str) -> None:
    """Bit for bit on the CPU, on both batch paths (shuffle, crops and flips replayed)."""
    from hpo.training import load_checkpoint, save_checkpoint

    config = dataclasses.replace(CONFIG, data=dataclasses.replace(CONFIG.data, loader=loader,
                                                                   flip=True))
    data = load_data(config.data)
    reference = train(config, data)
    steps = {"n": 0}

    def stop_after_25_steps() -> bool:
        steps["n"] += 1
        return steps["n"] > 25  # 17 steps per epoch: stops in epoch 2 after 8 steps

    path = tmp_path / "ckpt.pt"
    first = train(config, data, should_stop=stop_after_25_steps,
                  save_state=lambda s: save_checkpoint(path, s))
    assert first.status == "interrupted" and "epoch 2 after 8 of 17 steps" in first.stop_reason
    resumed = train(config, data, resume=load_checkpoint(path))
    assert resumed.status == "completed" and resumed.resumed_from_epoch == 1
    assert _history(resumed) == _history(reference)


def test_resume_at_an_epoch_boundary(tmp_path) -> None:
    data = load_data(CONFIG.data)
    reference = train(CONFIG, data)
    states = []
    train(CONFIG, data, on_epoch=lambda m: "stop" if m.epoch == 2 else None,
          save_state=states.append)
    assert [s["next_epoch"] for s in states] == [2, 3]
    resumed = train(CONFIG, data, resume=states[-1])
    assert resumed.resumed_from_epoch == 2 and _history(resumed) == _history(reference)


def test_dataloader_path_evaluates_the_test_split_through_the_dataloader(monkeypatch) -> None:
    from hpo.training import _trainer

    def refuse(*args, **kwargs):
        raise AssertionError("device batches built on the dataloader path")

    monkeypatch.setattr(_trainer, "DeviceBatches", refuse)
    config = dataclasses.replace(CONFIG, epochs=1,
                                 data=dataclasses.replace(CONFIG.data, loader="dataloader"))
    result = train(config, load_data(config.data, with_test=True))
    assert result.test_accuracy is not None and result.test_accuracy > 0.1


def test_dataloader_path_reaches_the_same_accuracy_within_noise() -> None:
    import statistics

    def final(loader: str, seed: int) -> float:
        config = dataclasses.replace(
            CONFIG, seed=seed, epochs=4,
            data=dataclasses.replace(CONFIG.data, loader=loader))
        return train(config).history[-1].val_accuracy

    device = [final("device", s) for s in (0, 1)]
    host = [final("dataloader", s) for s in (0, 1)]
    assert min(device + host) > 0.85
    assert abs(statistics.fmean(device) - statistics.fmean(host)) < 0.04


def test_compiled_model_is_built_once_per_architecture_and_reinitialized(monkeypatch) -> None:
    from hpo.training import _trainer

    monkeypatch.setenv("HPO_COMPILE_BACKEND", "eager")  # the caching logic, minus inductor time
    monkeypatch.setattr(_trainer, "_COMPILED", {})
    data = load_data(CONFIG.data)
    config = dataclasses.replace(CONFIG, compile=True, epochs=2)
    first = train(config, data)
    (entry,) = _trainer._COMPILED.values()
    second = train(config, data)
    assert list(_trainer._COMPILED.values()) == [entry]  # reused, not compiled again
    # re-initialized under the same seed: the same run again
    assert [m.train_loss for m in first.history] == [m.train_loss for m in second.history]
    assert first.history[-1].val_accuracy > 0.5
