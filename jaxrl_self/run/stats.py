"""Small statistics used by run summaries, sweep tables and plots.

Confidence intervals over seeds use Student's t distribution: for ``n`` finite values with sample mean
``m`` and sample standard deviation ``s`` (``ddof=1``) the two-sided ``level`` interval is
``m ± t_{(1+level)/2, n-1} · s / sqrt(n)``. It assumes the per-seed values are i.i.d. and roughly normal,
which is the usual reading of "mean ± 95% CI over seeds" in RL papers; with few seeds the interval is wide on
purpose (``n = 2`` multiplies the standard error by 12.7). With ``n < 2`` the interval is undefined and both
bounds are NaN. Non-finite values (seeds without a finished episode) are left out, and ``n`` says how many
values were used.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["MeanCI", "mean_ci", "DiffCI", "welch_diff_ci", "nanmean_masked", "final_value"]


@dataclasses.dataclass(frozen=True)
class MeanCI:
    """Mean and confidence interval of a set of per-seed values."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        return {f"{prefix}mean": self.mean, f"{prefix}ci_low": self.low, f"{prefix}ci_high": self.high,
                f"{prefix}n": self.n}

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a"
        if self.n < 2:
            return f"{self.mean:.4g} (n=1)"
        return f"{self.mean:.4g} ± {self.half_width:.3g}"


def mean_ci(values, level: float = 0.95) -> MeanCI:
    """Mean and two-sided Student-t confidence interval of the finite entries of ``values`` (1-D)."""
    from scipy import stats  # scipy is a dependency of jax

    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0, level)
    m = float(x.mean())
    if n < 2:
        return MeanCI(m, math.nan, math.nan, n, level)
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return MeanCI(m, m - half, m + half, n, level)


@dataclasses.dataclass(frozen=True)
class DiffCI:
    """``mean(a) - mean(b)`` and its confidence interval; ``holds_zero`` when the interval contains 0."""

    diff: float
    low: float
    high: float
    level: float = 0.95

    @property
    def holds_zero(self) -> bool:
        return bool(self.low <= 0.0 <= self.high)

    def as_dict(self) -> dict[str, float | bool]:
        return {"diff": self.diff, "low": self.low, "high": self.high, "holds_zero": self.holds_zero}


def welch_diff_ci(a, b, level: float = 0.95) -> DiffCI:
    """Welch's two-sided interval of ``mean(a) - mean(b)`` (unequal variances, Welch–Satterthwaite degrees of
    freedom) over the finite entries of two sets of per-seed values, each of at least 2. Both sets constant: the
    interval is the difference itself."""
    from scipy import stats

    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 2 or y.size < 2:
        raise ValueError(f"welch_diff_ci needs at least 2 finite values per side, got {x.size} and {y.size}")
    d = float(x.mean() - y.mean())
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0:
        return DiffCI(d, d, d, level)
    dof = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2.0, dof) * se)
    return DiffCI(d, d - half, d + half, level)


def nanmean_masked(values: np.ndarray, valid: np.ndarray | None, axis: int) -> np.ndarray:
    """Mean of ``values`` over ``axis`` counting only entries where ``valid``; NaN where none is valid."""
    values = np.asarray(values, dtype=np.float64)
    if valid is None:
        valid = np.isfinite(values)
    else:
        valid = np.asarray(valid, dtype=bool) & np.isfinite(values)
    count = valid.sum(axis=axis)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def final_value(values: np.ndarray, valid: np.ndarray | None = None, fraction: float = 0.1) -> np.ndarray:
    """Per-seed "final" value: the mean over the last ``fraction`` of updates (at least one update).

    ``values``/``valid`` have shape ``(num_seeds, num_updates)``; returns ``(num_seeds,)`` with NaN for a seed
    that has no valid entry in that window.
    """
    values = np.asarray(values, dtype=np.float64)
    num_updates = values.shape[-1]
    window = max(1, int(math.ceil(fraction * num_updates)))
    tail_valid = None if valid is None else np.asarray(valid)[..., -window:]
    return nanmean_masked(values[..., -window:], tail_valid, axis=-1)
