import math

import pytest
import torch

from hpo.training import SCHEDULES, lr_at

TOTAL, PER_EPOCH, PEAK = 1000, 10, 0.1


def lr(name: str, step: int, **params: float) -> float:
    return lr_at(step, TOTAL, PER_EPOCH, PEAK, name, params)


def cos(p: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * p))


def test_constant() -> None:
    assert [lr("constant", s) for s in (0, 500, 999)] == [PEAK] * 3


def test_step_divides_by_ten_at_half_and_three_quarters() -> None:
    # He et al. 2016: /10 at 32k and 48k of 64k iterations.
    assert lr("step", 499) == PEAK
    assert lr("step", 500) == pytest.approx(PEAK * 0.1)
    assert lr("step", 749) == pytest.approx(PEAK * 0.1)
    assert lr("step", 750) == pytest.approx(PEAK * 0.01)
    assert lr("step", 100, milestone1=0.1, gamma=0.5) == pytest.approx(PEAK * 0.5)


def test_cosine() -> None:
    for s in (0, 250, 500, 999):
        assert lr("cosine", s) == pytest.approx(PEAK * cos(s / TOTAL))
    assert lr("cosine", 999, min_lr_ratio=0.1) == pytest.approx(
        PEAK * (0.1 + 0.9 * cos(999 / TOTAL)))


def test_warmup_is_linear_then_the_schedule_runs_on_the_rest() -> None:
    w = 5 * PER_EPOCH  # 5 epochs
    assert lr("cosine", 0, warmup_epochs=5) == pytest.approx(PEAK / w)
    assert lr("cosine", 24, warmup_epochs=5) == pytest.approx(PEAK * 25 / w)
    assert lr("cosine", w, warmup_epochs=5) == pytest.approx(PEAK)
    assert lr("cosine", 525, warmup_epochs=5) == pytest.approx(PEAK * cos((525 - w) / (TOTAL - w)))


def test_warmup_cosine_defaults_to_five_epochs_of_warmup() -> None:
    assert lr("warmup_cosine", 49) == pytest.approx(PEAK)
    assert lr("warmup_cosine", 9) == pytest.approx(PEAK * 10 / 50)
    assert lr("warmup_cosine", 500) == pytest.approx(PEAK * cos(450 / 950))


def test_cosine_restarts_follow_sgdr_cycles() -> None:
    # 3 cycles with t_mult 2: lengths 1, 2, 4 units of 1000/7 steps.
    unit = TOTAL / 7
    assert lr("cosine_restarts", 0) == pytest.approx(PEAK)
    assert lr("cosine_restarts", math.ceil(unit)) == pytest.approx(
        PEAK * cos((math.ceil(unit) - unit) / (2 * unit)))
    assert lr("cosine_restarts", 600) == pytest.approx(PEAK * cos((600 - 3 * unit) / (4 * unit)))


@pytest.mark.parametrize("total,pct,div,final_div", [
    (1000, 0.3, 25.0, 1e4), (97, 0.25, 10.0, 100.0), (20, 0.5, 5.0, 1e3), (7, 0.3, 25.0, 1e4),
])
def test_onecycle_matches_torch_onecycle_lr_step_by_step(total: int, pct: float, div: float,
                                                         final_div: float) -> None:
    """The reference is torch.optim.lr_scheduler.OneCycleLR (cosine, two phases)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=PEAK)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=PEAK, total_steps=total, pct_start=pct, div_factor=div,
        final_div_factor=final_div, cycle_momentum=False)
    ours = []
    for step in range(total):
        ours.append(lr_at(step, total, 1, PEAK, "onecycle",
                          {"pct_start": pct, "div_factor": div, "final_div_factor": final_div}))
        assert ours[-1] == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15), step
        opt.step()
        sched.step()
    peak_at = pct * total - 1
    if peak_at == int(peak_at):  # the peak lands on a step
        assert ours[int(peak_at)] == pytest.approx(PEAK) and ours[int(peak_at) + 1] < PEAK
    assert ours[-1] == pytest.approx(PEAK / div / final_div)  # the floor, at the last step


def test_exponential_and_polynomial() -> None:
    assert lr("exponential", 500) == pytest.approx(PEAK * 0.01**0.5)
    # One step short of final_lr_ratio at the last step, as torch's ExponentialLR with
    # gamma = final_lr_ratio ** (1 / TOTAL) would be.
    assert lr("exponential", 999) == pytest.approx(PEAK * 0.01 ** (999 / TOTAL))
    assert lr("polynomial", 250) == pytest.approx(PEAK * 0.75)
    assert lr("polynomial", 250, power=2.0) == pytest.approx(PEAK * 0.75**2)


def test_every_schedule_is_tested() -> None:
    tested = {"constant", "step", "cosine", "warmup_cosine", "cosine_restarts", "onecycle",
              "exponential", "polynomial"}
    assert set(SCHEDULES) == tested
