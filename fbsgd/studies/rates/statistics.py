"""Power laws fitted across horizons, and whether a perturbed setting keeps the rate
(Sections 5–6 read through their exponents of T).

:func:`fit_power_law` the exponent p of metric ≈ A·T^p: least squares of
log(mean over seeds) on log T, with a jackknife-over-seeds standard error
(seeds are the independent units; one seed's runs at different T share
random streams, so T values are not independent);
:func:`reference_exponent` the exponent of the textbook rate on a set of horizons;
:func:`matches` a fitted exponent against a target band;
:func:`compare_exponents`, :func:`budget_threshold` whether a perturbed
setting keeps the exponent of the rate, and the largest budget exponent a
that does; :func:`fit_groups` one fit per group of a sweep table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from fbsgd.metrics import fit_line
from fbsgd.studies.rates.schedules import GEOMETRIES

__all__ = ['PowerLaw', 'estimate_decimals', 'format_estimate', 'fit_power_law', 'reference_exponent', 'compare_exponents', 'budget_threshold', 'matches', 'fit_groups']


# -------------------------------------------------------------------------------------------------
# power-law fits across horizons
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLaw:
    """metric ≈ prefactor · T^exponent, fitted on the mean over seeds at each T.

    ``se``: jackknife standard error over seeds (the regression SE when there is
    one seed); ``ci_low``/``ci_high``: exponent ± t·se with t the Student quantile
    at n_seeds − 1 degrees of freedom (n_T − 2 with one seed); ``misfit_se``: the
    regression SE of the line through the per-T means, large when the local
    slope changes across the range of T.
    """

    exponent: float
    se: float
    ci_low: float
    ci_high: float
    prefactor: float
    misfit_se: float
    n_T: int
    n_seeds: int
    dof: int

    def covers(self, value: float) -> bool:
        return bool(self.ci_low <= value <= self.ci_high)

    def __str__(self) -> str:
        return format_estimate(self.exponent, self.se)

    def interval_text(self) -> str:
        """The 95 % interval with as many decimals as :func:`format_estimate` uses."""
        n = estimate_decimals(self.se)
        return f"{self.ci_low:.{n}f} … {self.ci_high:.{n}f}"


def estimate_decimals(se: float, significant: int = 2, least: int = 3) -> int:
    """Decimals that show a standard error ``se`` with ``significant`` digits (at least ``least``)."""
    if not (isinstance(se, (int, float)) and math.isfinite(se)) or se <= 0:
        return least
    return max(least, significant - 1 - int(math.floor(math.log10(se))))


def format_estimate(value: float, se: float) -> str:
    """"value ± se" with enough decimals for the error to show two significant digits
    (−0.4972 ± 0.00031 prints as −0.49720 ± 0.00031, never as −0.497 ± 0.000)."""
    n = estimate_decimals(se)
    return f"{value:.{n}f} ± {se:.{n}f}"


def _line(x, y):
    """(slope, intercept, slope standard error) of the least-squares line."""
    f = fit_line(x, y)
    return f.slope, f.intercept, f.slope_se


def _log_means(T, y, seed, keep):
    df = pd.DataFrame({"T": T, "y": y, "seed": seed})[keep]
    m = df.groupby("T").y.mean()
    m = m[(m > 0) & np.isfinite(m)]
    return np.log(m.index.to_numpy(dtype=float)), np.log(m.to_numpy())


def fit_power_law(T, y, seed=None, confidence: float = 0.95) -> PowerLaw:
    """Fit y ≈ A·T^p across horizons T with an uncertainty from the seeds.

    The theorems bound expectations, so the fitted curve is the mean over seeds
    at each T; p is the least-squares slope of log(mean) on log T.  The
    uncertainty comes from the seeds by the jackknife: the fit is repeated with
    each seed left out (every T at once, since a seed's runs at different T
    share random streams) and se² = (n−1)/n Σ(p₋ᵢ − p̄)².  Non-finite values
    (diverged runs) are left out of the means.
    """
    T = np.asarray(T, dtype=float)
    y = np.asarray(y, dtype=float)
    seed = np.zeros(T.size, dtype=int) if seed is None else np.asarray(seed)
    if not (T.size == y.size == seed.size):
        raise ValueError("T, y and seed must have the same length")
    ok = np.isfinite(y) & np.isfinite(T) & (T > 0)
    x, ly = _log_means(T, y, seed, ok)
    if x.size < 2:
        raise ValueError(f"need finite positive means at >= 2 horizons, got {x.size}")
    p, c0, misfit = _line(x, ly)
    seeds = np.unique(seed[ok])
    n = seeds.size
    if n >= 2:
        loo = []
        for s in seeds:
            xs, ys = _log_means(T, y, seed, ok & (seed != s))
            loo.append(_line(xs, ys)[0] if xs.size >= 2 else np.nan)
        loo = np.asarray(loo)
        se = float(math.sqrt((n - 1) / n * np.nansum((loo - np.nanmean(loo)) ** 2)))
        dof = n - 1
    else:
        se, dof = misfit, x.size - 2
    t = float(stats.t.ppf(0.5 + confidence / 2, dof)) if dof >= 1 else float("nan")
    return PowerLaw(p, se, p - t * se, p + t * se, float(math.exp(c0)), misfit, int(x.size), int(n), int(dof))


def reference_exponent(Ts: Sequence[int], geometry: str) -> float:
    """The exponent a perfect textbook rate shows on these horizons: −1/2 for T^{−1/2};
    for ln T/T, the least-squares slope of log(ln T/T) on log T (about −0.9 for T ≤ 10⁶)."""
    if GEOMETRIES[geometry]["schedule"] == "sqrt":
        return -0.5
    x = np.log(np.asarray(Ts, dtype=float))
    return _line(x, np.log(x) - x)[0]


def compare_exponents(fit: PowerLaw, reference, tol: float, confidence: float = 0.95) -> dict:
    """Does a perturbed setting keep the rate?

    ``reference`` is the exponent of the rate, either a number (the textbook
    exponent, see :func:`reference_exponent`) or the :class:`PowerLaw` of the
    unperturbed runs (then its uncertainty is added, seeds independent).  The
    excess exponent Δ = p − p_ref (positive: slower convergence) is compared with
    the tolerance by one-sided bounds at level ``confidence`` (Student quantile
    at the fit's degrees of freedom): ``kept`` if the upper bound is below
    ``tol``, ``lost`` if the lower bound is above it, else ``unresolved``.
    """
    if isinstance(reference, PowerLaw):
        ref, ref_se, dof = reference.exponent, reference.se, min(fit.dof, reference.dof)
    else:
        ref, ref_se, dof = float(reference), 0.0, fit.dof
    d = fit.exponent - ref
    se = math.sqrt(fit.se**2 + ref_se**2)
    t = float(stats.t.ppf(confidence, max(1, dof)))
    lo, hi = d - t * se, d + t * se
    status = "kept" if hi < tol else ("lost" if lo > tol else "unresolved")
    return dict(excess=d, excess_se=se, excess_low=lo, excess_high=hi, status=status)


def budget_threshold(a_values: Sequence[float], statuses: Sequence[str]) -> dict:
    """The largest budget exponent a up to which every a of the grid keeps the rate
    (``kept_up_to``; NaN if even the smallest does not), and the smallest a that
    loses it (``lost_from``; NaN if none does)."""
    order = np.argsort(a_values)
    a = np.asarray(a_values, dtype=float)[order]
    st = [statuses[i] for i in order]
    kept_up_to = float("nan")
    for ai, s in zip(a, st):
        if s != "kept":
            break
        kept_up_to = float(ai)
    lost = [ai for ai, s in zip(a, st) if s == "lost"]
    return dict(kept_up_to=kept_up_to, lost_from=float(min(lost)) if lost else float("nan"))


def matches(fit: PowerLaw, target: float, tol: float):
    """True if the fitted exponent is within ``tol`` of ``target``; None if only its
    interval reaches that band; False if the interval lies outside it."""
    if abs(fit.exponent - target) <= tol:
        return True
    if fit.ci_low <= target + tol and fit.ci_high >= target - tol:
        return None
    return False


def fit_groups(table: pd.DataFrame, by: Sequence[str], geometry_col: str = "geometry") -> pd.DataFrame:
    """One power-law fit per group of ``table`` (a sweep table with a geometry column):
    the metric of the group's geometry against T, seeds as units."""
    rows = []
    for key, g in table.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        metric = GEOMETRIES[g[geometry_col].iloc[0]]["metric"]
        fit = fit_power_law(g["T"], g[metric], g["seed"])
        means = g.groupby("T")[metric].mean()
        rows.append({**dict(zip(by, key)), "exponent": fit.exponent, "se": fit.se, "ci_low": fit.ci_low,
                     "ci_high": fit.ci_high, "misfit_se": fit.misfit_se, "dof": fit.dof, "n_T": fit.n_T,
                     "n_seeds": fit.n_seeds, "metric_at_T_max": float(means.iloc[-1]),
                     "diverged_runs": int(g["diverged"].sum()), "fit": fit})
    return pd.DataFrame(rows)
