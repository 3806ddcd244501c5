"""Gradient-flow diagnostics: the stages, and the arithmetic checked against direct norms."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from hpo.training import (
    DataConfig,
    ModelConfig,
    TrainConfig,
    apply_init,
    build_model,
    load_data,
    train,
)
from hpo.training._diagnostics import (
    EXPLODING,
    VANISHING,
    GradientFlow,
    flow_clause,
    flow_state,
    stage_of_parameters,
)


def _stages(model: nn.Module) -> dict[str, list[str]]:
    names, index = stage_of_parameters(model)
    out: dict[str, list[str]] = {n: [] for n in names}
    for (pname, _), i in zip(model.named_parameters(), index, strict=True):
        out[names[i]].append(pname)
    return out


def test_cifar_and_torchvision_stages() -> None:
    cifar = _stages(build_model(ModelConfig("resnet20"), 3, 10))
    assert list(cifar) == ["stem", "stage1", "stage2", "stage3", "classifier"]
    assert cifar["stem"] == ["conv.weight", "bn.weight", "bn.bias"]
    assert cifar["classifier"] == ["fc.weight", "fc.bias"]
    assert all(p.startswith(("blocks.0.", "blocks.1.", "blocks.2.")) for p in cifar["stage1"])
    assert all(p.startswith(("blocks.6.", "blocks.7.", "blocks.8.")) for p in cifar["stage3"])
    tv = _stages(build_model(ModelConfig("resnet18"), 3, 10))
    assert list(tv) == ["stem", "stage1", "stage2", "stage3", "stage4", "classifier"]
    assert tv["stem"] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert all(p.startswith("layer4.") for p in tv["stage4"])


def test_figures_equal_norms_computed_directly() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig("resnet8", width=4), 1, 10)
    flow = GradientFlow(model)
    flow.start_epoch()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads: list[dict[str, torch.Tensor]] = []
    for _ in range(3):  # three steps: the epoch's figure is the RMS over them
        model.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 1, 8, 8)),
                                    torch.randint(0, 10, (8,))).backward()
        flow.after_backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    figures = flow.end_epoch()
    stages = _stages(model)
    params = dict(model.named_parameters())
    for i, stage in enumerate(figures["stages"]):
        names = stages[stage]

        def norm(tensors: list[torch.Tensor]) -> float:
            return torch.linalg.vector_norm(torch.cat([t.flatten() for t in tensors])).item()

        per_step = [norm([g[n] for n in names]) for g in grads]
        rms = (sum(v * v for v in per_step) / 3) ** 0.5
        assert figures["grad_norm"][i] == pytest.approx(rms, rel=1e-3)
        weight = norm([params[n].detach() for n in names])
        assert figures["weight_norm"][i] == pytest.approx(weight, rel=1e-3)
        moved = norm([params[n].detach() - start[n] for n in names])
        assert figures["update_ratio"][i] == pytest.approx(
            moved / norm([start[n] for n in names]), rel=1e-3)
    # the ratio is the stem's gradient norm over the last residual stage's, from those figures
    assert figures["ratio"] == pytest.approx(figures["grad_norm"][0] / figures["grad_norm"][-2],
                                             rel=1e-3)


def test_a_plain_56_measures_its_stem_from_the_first_epoch() -> None:
    config = TrainConfig(
        data=DataConfig(name="synthetic", options={"size": 8, "train_size": 80,
                                                   "test_size": 10}),
        model=ModelConfig("resnet56", residual=False), optimizer="sgd", lr=0.1,
        schedule="constant", epochs=1, batch_size=64, seed=0)
    result = train(config, load_data(config.data))
    flow = result.history[0].flow
    assert flow["stages"][0] == "stem" and flow["grad_norm"][0] > 0  # measured at step 1
    assert flow["ratio"] == pytest.approx(flow["grad_norm"][0] / flow["grad_norm"][3],
                                          rel=2e-3)
    off = train(dataclasses.replace(config, diagnostics=False), load_data(config.data))
    assert off.history[0].flow is None
    assert off.history[0].train_loss == result.history[0].train_loss  # measuring changes nothing


def test_removing_shortcuts_removes_exactly_the_projections() -> None:
    count = lambda m: sum(1 for _ in m.modules())  # noqa: E731
    for shortcut, removed in (("A", 0), ("B", 2 * 3)):  # B: 2 stage changes x (seq, conv, bn)
        res = build_model(ModelConfig("resnet56", shortcut=shortcut), 3, 10)
        plain = build_model(ModelConfig("resnet56", shortcut=shortcut, residual=False), 3, 10)
        assert count(res) - count(plain) == removed
    # With its branch zeroed, a residual block is the identity and a plain one outputs zero.
    res = build_model(ModelConfig("resnet20"), 3, 10)
    plain = build_model(ModelConfig("resnet20", residual=False), 3, 10)
    apply_init(res, "kaiming_normal", True)
    apply_init(plain, "kaiming_normal", True)
    x = torch.relu(torch.randn(2, 16, 8, 8))
    with torch.no_grad():
        assert torch.equal(res.blocks[1].eval()(x), x)
        assert torch.equal(plain.blocks[1].eval()(x), torch.zeros_like(x))


def test_thresholds_and_the_stop_reason_clause() -> None:
    assert flow_state(VANISHING / 2) == "vanishing" and flow_state(EXPLODING * 2) == "exploding"
    assert flow_state(1.0) is None and flow_state(float("inf")) == "exploding"
    history = [{"ratio": r, "state": flow_state(r)} for r in (1.0, 300.0, 500.0)]
    assert flow_clause(history) == ("; gradients exploding since epoch 2 (first/last stage "
                                    "gradient ratio 5e+02)")
    assert flow_clause(history[:1]) == ""
