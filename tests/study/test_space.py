"""The search space: each family's conditional settings reach the optimizer torch builds."""

import optuna
import pytest

from hpo.study._space import suggest_config
from hpo.study._spec import parse_spec
from hpo.training import OPTIMIZERS, ModelConfig, build_model, build_optimizer
from tests.training.test_optimizers import EXPECTED_CLASS, SETTINGS, _torch_value


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_is_built_with_its_conditional_settings(name: str) -> None:
    """The search space asks for the family's settings and the optimizer receives them."""
    own = dict(OPTIMIZERS[name].params)
    searched = {k: {"low": 1e-9, "high": 0.999} for k in ("lr", "weight_decay", *own)}
    spec = parse_spec({"study": {"name": "x", "n_trials": 1}, "model": {"name": "resnet8"},
                       "search": {"optimizer": name, name: searched}}, "test")
    params = {f"{name}.lr": 0.0123, f"{name}.weight_decay": 3e-4,
              **{f"{name}.{k}": SETTINGS[k] for k in own}}
    config = suggest_config(optuna.trial.FixedTrial(params), spec.space, spec.base)
    assert config.optimizer == name and config.lr == 0.0123 and config.weight_decay == 3e-4
    assert config.optimizer_params == {k: SETTINGS[k] for k in own}

    model = build_model(ModelConfig("resnet8", width=4), 1, 10)
    opt = build_optimizer(name, model, config.lr, config.weight_decay, False,
                          config.optimizer_params)
    assert type(opt) is EXPECTED_CLASS[name]
    group = opt.param_groups[0]
    assert group["lr"] == 0.0123 and group["weight_decay"] == 3e-4
    for k in own:
        assert _torch_value(group, k) == pytest.approx(SETTINGS[k])
    assert group.get("nesterov", False) == (name == "nesterov")
