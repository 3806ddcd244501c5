import math

import pytest
import torch
from torch import nn

from hpo.training import INITS, ModelConfig, apply_init, build_model


def _model(scheme: str, zero: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig("resnet56"), 3, 10)
    apply_init(model, scheme, zero)
    return model


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.numel() > 4000]


def _fans(w: torch.Tensor) -> tuple[int, int]:
    receptive = w[0][0].numel()
    return w.shape[1] * receptive, w.shape[0] * receptive


# (scheme, expected std of the weights as a function of (fan_in, fan_out))
EXPECTED_STD = {
    "kaiming_normal": lambda fi, fo: math.sqrt(2 / fo),
    "kaiming_uniform": lambda fi, fo: math.sqrt(6 / fi) / math.sqrt(3),
    "xavier_normal": lambda fi, fo: math.sqrt(2 / (fi + fo)),
    "xavier_uniform": lambda fi, fo: math.sqrt(6 / (fi + fo)) / math.sqrt(3),
    "default": lambda fi, fo: (1 / math.sqrt(fi)) / math.sqrt(3),
}


@pytest.mark.parametrize("scheme", EXPECTED_STD)
def test_weight_std_matches_the_scheme(scheme: str) -> None:
    for conv in _convs(_model(scheme)):
        fan_in, fan_out = _fans(conv.weight)
        expected = EXPECTED_STD[scheme](fan_in, fan_out)
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
        assert abs(conv.weight.mean().item()) < 0.1 * expected


@pytest.mark.parametrize("scheme", ["kaiming_uniform", "xavier_uniform", "default"])
def test_uniform_schemes_respect_their_bound(scheme: str) -> None:
    for conv in _convs(_model(scheme)):
        fan_in, fan_out = _fans(conv.weight)
        bound = EXPECTED_STD[scheme](fan_in, fan_out) * math.sqrt(3)
        assert conv.weight.abs().max().item() <= bound + 1e-6


def test_orthogonal_rows_are_orthonormal() -> None:
    for conv in _convs(_model("orthogonal")):
        w = conv.weight.flatten(1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-4)


def test_every_scheme_is_tested() -> None:
    assert set(INITS) == set(EXPECTED_STD) | {"orthogonal"}


def test_schemes_reset_batchnorm_and_biases() -> None:
    model = _model("xavier_normal")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        if isinstance(m, nn.Linear):
            assert torch.all(m.bias == 0)
            assert m.weight.std().item() == pytest.approx(0.01, rel=0.1)


def test_zero_init_residual_zeroes_exactly_the_last_bn_of_each_block() -> None:
    """He et al.'s CIFAR blocks end in bn2; nothing else is zeroed."""
    model = _model("kaiming_normal", zero=True)
    last = {id(block.bn2) for block in model.blocks}
    zeroed = {id(m) for m in model.modules()
              if isinstance(m, nn.BatchNorm2d) and torch.all(m.weight == 0)}
    assert zeroed == last and len(last) == 27  # 3 stages x 9 blocks in ResNet-56
    others = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in last]
    assert others and all(torch.all(m.weight == 1) for m in others)


def test_zero_init_residual_on_torchvision_bottlenecks() -> None:
    model = build_model(ModelConfig("resnet50"), 3, 10)
    apply_init(model, "kaiming_normal", True)
    blocks = [m for m in model.modules() if hasattr(m, "bn3")]
    assert len(blocks) == 16 and all(torch.all(b.bn3.weight == 0) for b in blocks)
    assert all(torch.all(b.bn1.weight == 1) for b in blocks)


def test_zero_init_residual_on_preact_zeroes_the_last_conv_of_each_branch() -> None:
    """A pre-activation branch ends in a convolution: zero-init must still change the model."""
    model = build_model(ModelConfig("preact_resnet18"), 3, 10)
    apply_init(model, "kaiming_normal", True)
    assert all(torch.all(b.conv2.weight == 0) for b in model.blocks)
    assert all(torch.all(b.conv1.weight != 0) for b in model.blocks)
    x = torch.randn(2, 64, 8, 8)
    block = model.blocks[1].eval()  # same width, stride 1: the identity at the start
    assert torch.equal(block(x), x)


# Every model the table knows, at an input size it accepts (torchvision's ImageNet models reach
# layer4 at 1x1 from 32x32: enough for the loss at step 0, at an eighth of 64x64's cost).
MODEL_INPUTS = {"resnet8": 8, "resnet20": 32, "resnet56": 32, "preact_resnet18": 32,
                "resnet18": 32, "resnet34": 32, "resnet50": 32}


def test_every_model_is_tested() -> None:
    """A new MODELS entry needs its input size here (the CIFAR family: several depths)."""
    from hpo.training import MODELS

    assert set(MODELS) <= set(MODEL_INPUTS)
    assert {"resnet8", "resnet20", "resnet56"} <= set(MODEL_INPUTS)


@pytest.mark.parametrize("name", MODEL_INPUTS)
@pytest.mark.parametrize("scheme", INITS)
def test_first_loss_is_that_of_a_uniform_guess(name: str, scheme: str) -> None:
    """At step 0 on random inputs every scheme and model is within 25 % of ln(classes)."""
    size = MODEL_INPUTS[name]
    for zero in (False, True):
        torch.manual_seed(1)
        model = build_model(ModelConfig(name), 3, 10)
        apply_init(model, scheme, zero)
        x, y = torch.randn(16, 3, size, size), torch.randint(0, 10, (16,))
        with torch.no_grad():
            loss = nn.functional.cross_entropy(model.train()(x), y).item()
        assert abs(loss / math.log(10) - 1) < 0.25, (zero, loss)


def test_default_gives_pytorch_layer_defaults_on_torchvision_models_too() -> None:
    """torchvision draws its convolutions with fan_out Kaiming; `default` must not keep that."""
    model = build_model(ModelConfig("resnet18"), 3, 10)
    apply_init(model, "default", False)
    conv = model.layer4[0].conv2  # 512 x 512 x 3 x 3
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.05)


def test_block_starts_as_identity_with_zero_init() -> None:
    model = _model("kaiming_normal", zero=True).eval()
    block = model.blocks[1]  # same width, stride 1
    x = torch.relu(torch.randn(2, 16, 8, 8))
    assert torch.allclose(block(x), x)
