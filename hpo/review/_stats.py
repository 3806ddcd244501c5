"""The statistics the review layer quotes, each from its reference (scipy, statsmodels, or the
paper's formula where no library has it)."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence

ALPHA = 0.05


def expected_best(values: Sequence[float], n: int, sign: float = 1.0) -> tuple[float, float]:
    """Mean and standard deviation of the best of ``n`` draws (with replacement) from
    ``values`` (Dodge et al. 2019); ``sign`` -1 when lower is better."""
    ranked = sorted(values, key=lambda v: sign * v)
    size = len(ranked)
    weights = [(i / size) ** n - ((i - 1) / size) ** n for i in range(1, size + 1)]
    mean = sum(w * v for w, v in zip(weights, ranked, strict=True))
    second = sum(w * v * v for w, v in zip(weights, ranked, strict=True))
    return mean, math.sqrt(max(0.0, second - mean * mean))


def budgets(budget: int) -> list[int]:
    """n = 1, 2, 4, ... up to ``budget``, and ``budget`` itself."""
    out = [2 ** k for k in range(budget.bit_length()) if 2 ** k < budget]
    return [*out, budget]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (statsmodels' implementation)."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(list(p_values), alpha=ALPHA, method="holm")[1]]


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float | None, float]:
    """(mean(a) - mean(b), half width of its 95 % CI, two-sided p) by Welch's t-test; identical
    samples give p = 1 and no CI."""
    from scipy import stats

    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, None, 1.0
    with warnings.catch_warnings():
        # nearly identical samples: scipy warns on the user's terminal; the NaN or p-value
        # that follows is handled below
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
    if not math.isfinite(result.pvalue):
        return diff, None, 1.0
    low, high = result.confidence_interval(0.95)
    return diff, float(high - low) / 2, float(result.pvalue)


def ci95(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and the half width of its 95 % confidence interval (Student's t); no interval from
    fewer than two values."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    from scipy import stats

    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(
        len(values))
    return mean, float(half)
