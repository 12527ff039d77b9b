"""Fits and summary statistics used to turn measurements into verdicts."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["LineFit", "fit_line", "log_slope", "ewma", "geometric_mean", "drift_ratio"]


@dataclass(frozen=True)
class LineFit:
    """Least-squares line y = intercept + slope·x with standard errors."""

    slope: float
    intercept: float
    slope_se: float
    n: int

    def ci(self, z: float = 1.96) -> tuple[float, float]:
        return self.slope - z * self.slope_se, self.slope + z * self.slope_se


def _numbers(who: str, name: str, a) -> np.ndarray:
    """``a`` as a float array, refusing text and complex numbers (which ``dtype=float`` would parse or truncate)."""
    kind = np.asarray(a).dtype.kind
    if kind in "USc":
        raise ValueError(f"{who}: {name} must hold real numbers, got {'text' if kind in 'US' else 'complex numbers'}")
    return np.asarray(a, dtype=float)


def fit_line(x, y) -> LineFit:
    x = _numbers("fit_line", "x", x)
    y = _numbers("fit_line", "y", y)
    if x.shape != y.shape:
        raise ValueError(f"fit_line: x and y must have the same shape (one y per x), got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = x.size
    if n < 2:
        raise ValueError(f"need at least 2 finite points to fit a line, got {n}")
    X = np.column_stack([np.ones(n), x])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    if n > 2:
        resid = y - X @ coef
        s2 = resid @ resid / (n - 2)
        cov = s2 * np.linalg.inv(X.T @ X)
        se = float(np.sqrt(max(cov[1, 1], 0.0)))
    else:
        se = float("nan")
    return LineFit(float(coef[1]), float(coef[0]), se, n)


def log_slope(x, y, log_x: bool = True) -> LineFit:
    """Slope of log y against log x (or against x when ``log_x`` is False)."""
    x = _numbers("log_slope", "x", x)
    y = _numbers("log_slope", "y", y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return fit_line(np.log(x) if log_x else x, np.log(y))


def ewma(values, beta: float, every: int = 1) -> np.ndarray:
    """Exponentially weighted moving average of a metric sampled every ``every`` iterations.

    e_0 = g_0 and e_n = β^k e_{n−1} + (1 − β^k) g_n with k = ``every``: the
    per-iteration EWMA with factor β, assuming the metric is constant between
    samples.  NaNs (after a divergence) stay NaN.
    """
    from scipy.signal import lfilter

    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0 <= beta <= 1:
        raise ValueError(f"ewma: beta must be a number in [0, 1], got {beta!r}")
    if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
        raise ValueError(f"ewma: every must be an integer >= 1 (iterations between samples), got {every!r}")
    g = _numbers("ewma", "values", values)
    if g.ndim != 1:
        raise ValueError(f"ewma: values must be a 1-D series, got shape {g.shape}")
    out = np.full_like(g, np.nan)
    ok = np.isfinite(g)
    n = int(np.argmin(ok)) if not ok.all() else g.size  # finite prefix
    if n == 0:
        return out
    b = beta**every
    out[:n], _ = lfilter([1.0 - b], [1.0, -b], g[:n], zi=[b * g[0]])
    return out


def geometric_mean(values, axis=None):
    """exp(mean(log x)) over the finite positive values (NaN where there are none): the book's
    mean over seeds of positive, skewed levels (gradient norms, loss gaps)."""
    import warnings

    x = np.asarray(values, dtype=float)
    logs = np.log(np.where(np.isfinite(x) & (x > 0), x, np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice gives NaN, as documented
        out = np.exp(np.nanmean(logs, axis=axis))
    return float(out) if axis is None else out


def drift_ratio(trace) -> float:
    """Mean of an EWMA trace over its last quarter / mean over the quarter before (1 when the run
    has settled; below 1 while it is still falling towards its stable value)."""
    trace = np.asarray(trace, dtype=float)
    n = trace.size
    return float(np.mean(trace[3 * n // 4:]) / np.mean(trace[n // 2:3 * n // 4]))
