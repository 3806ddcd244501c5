import pytest
import torch
from torch import nn

from hpo.errors import UserError
from hpo.training import ModelConfig, build_model

# He et al. 2016, Table 6 (millions of parameters).
PAPER_PARAMS = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85,
                "resnet110": 1.7}


@pytest.mark.parametrize("name,millions", PAPER_PARAMS.items())
def test_cifar_resnet_parameter_counts_match_the_paper(name: str, millions: float) -> None:
    model = build_model(ModelConfig(name), in_channels=3, num_classes=10)
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - millions) / millions < 0.03, count


def test_resnet20_has_20_weighted_layers() -> None:
    model = build_model(ModelConfig("resnet20"), 3, 10)
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) == 20  # option A adds no projection


def test_option_b_adds_projection_shortcuts() -> None:
    a = build_model(ModelConfig("resnet20", shortcut="A"), 3, 10)
    b = build_model(ModelConfig("resnet20", shortcut="B"), 3, 10)
    convs = lambda m: sum(isinstance(x, nn.Conv2d) for x in m.modules())  # noqa: E731
    assert convs(b) == convs(a) + 2  # one 1x1 projection per stage change


@pytest.mark.parametrize("name,size", [("resnet8", 8), ("resnet20", 32), ("preact_resnet18", 32),
                                       ("resnet18", 64), ("resnet34", 64), ("resnet50", 64)])
def test_models_take_the_data_channels_and_classes(name: str, size: int) -> None:
    model = build_model(ModelConfig(name), in_channels=1, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 7)


def test_unknown_model_lists_the_allowed_names() -> None:
    with pytest.raises(UserError, match="resnet20.*preact_resnet18"):
        build_model(ModelConfig("resnet21"), 3, 10)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_torchvision_models_have_torchvision_state_dict_keys(name: str) -> None:
    """A checkpoint of ours loads strictly into a plain torchvision model, and back."""
    import torchvision

    ours = build_model(ModelConfig(name), 3, 10)
    theirs = getattr(torchvision.models, name)(weights=None, num_classes=10)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict(), strict=True)


def test_no_layer_is_registered_twice() -> None:
    """Each state_dict key is its own tensor: 59 parameters + 19 x 3 BN buffers (ResNet-20)."""
    model = build_model(ModelConfig("resnet20"), 3, 10)
    state = model.state_dict()
    assert len(list(model.named_modules(remove_duplicate=False))) == len(list(model.modules()))
    assert len(list(model.parameters())) == 59
    assert len(state) == 59 + 3 * 19
