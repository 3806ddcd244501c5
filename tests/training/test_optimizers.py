import pytest
import torch
from torch import nn

from hpo.training import OPTIMIZERS, ModelConfig, build_model, build_optimizer, param_groups

EXPECTED_CLASS = {
    "sgd": torch.optim.SGD, "nesterov": torch.optim.SGD, "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW, "nadam": torch.optim.NAdam, "radam": torch.optim.RAdam,
    "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad,
}
# Non-default values for every conditional setting, and where torch keeps each one.
SETTINGS = {"momentum": 0.8, "beta1": 0.85, "beta2": 0.98, "eps": 1e-6, "alpha": 0.95}


def _torch_value(group: dict, name: str) -> float:
    return {"beta1": lambda: group["betas"][0], "beta2": lambda: group["betas"][1]}.get(
        name, lambda: group[name])()


def test_every_optimizer_is_tested() -> None:
    """A new OPTIMIZERS entry needs its torch class here (and the tests below then cover it)."""
    assert set(OPTIMIZERS) == set(EXPECTED_CLASS)


@pytest.mark.parametrize("name,expected", [
    # p = 1, zero gradient, lr 0.1, weight decay 0.1, one step (formulas of torch.optim's docs):
    # AdamW decays the weight itself: p - lr * wd * p = 0.99; its Adam step sees no gradient.
    ("adamw", 0.99),
    # Adam adds wd * p to the gradient (L2): g = 0.1, m_hat = g, v_hat = g^2, p - lr = 0.9.
    ("adam", 0.9),
    # SGD adds wd * p to the gradient: p - lr * 0.1 = 0.99.
    ("sgd", 0.99),
])
def test_weight_decay_is_decoupled_for_adamw_and_l2_otherwise(name: str, expected: float) -> None:
    model = nn.Linear(1, 1, bias=False)
    nn.init.ones_(model.weight)
    opt = build_optimizer(name, model, 0.1, 0.1, False, {})
    model.weight.grad = torch.zeros_like(model.weight)
    opt.step()
    assert model.weight.item() == pytest.approx(expected, rel=1e-5)


def test_no_decay_group_holds_exactly_batchnorm_parameters_and_biases() -> None:
    model = build_model(ModelConfig("resnet20"), 3, 10)
    decay, no_decay = param_groups(model, 5e-4, no_decay_bn_bias=True)
    expected = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d)
                for p in (m.weight, m.bias)} | {id(model.fc.bias)}
    assert {id(p) for p in no_decay["params"]} == expected
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 5e-4
    everything = {id(p) for p in model.parameters()}
    assert {id(p) for p in decay["params"]} == everything - expected


def test_without_the_switch_every_parameter_decays() -> None:
    model = build_model(ModelConfig("resnet8"), 3, 10)
    (group,) = param_groups(model, 1e-4, no_decay_bn_bias=False)
    assert len(group["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_accelerated_optimizers_use_fused_or_foreach_kernels(name: str) -> None:
    """What the trainer asks for on CUDA; torch accepts both flags on the CPU too."""
    model = build_model(ModelConfig("resnet8", width=4), 1, 10)
    opt = build_optimizer(name, model, 0.01, 1e-4, True, {}, accelerated=True)
    flag = "fused" if OPTIMIZERS[name].fused else "foreach"
    assert opt.defaults[flag] is True
    loss = model(torch.randn(4, 1, 8, 8)).sum()
    loss.backward()
    opt.step()  # the kernels run
