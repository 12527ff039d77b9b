"""Sections 5–6 made measurable: step-size schedules, perturbation budgets,
power laws fitted across horizons, and the right-hand sides of the
convergence bounds for the Section 7 problem.

Schedules (Remarks 1 and 2)
    :func:`gamma_nonconvex` γ = c/√T, under which (34)/(37) give O(T^{-1/2});
    :func:`gamma_pl`        γ = c·ln T/T, under which (38) gives Õ(T^{-1}).

Budgets (Section 6.2, Table 1)
    :func:`budget_count`  Q = ⌈T^a⌉ occurrences;
    :func:`spread_fields` RunConfig fields (start, interval, budget) for Q ≈ T^a
    occurrences every Δ = round(T^{1−a}) iterations over the whole horizon;
    :func:`budget_fields` exactly Q occurrences as :func:`fbsgd.perturbations.budget`
    places them (every ⌊T/Q⌋ iterations, which can stop well before T);
    :func:`active_steps`  the iterations at which a configuration's
    perturbations act, read off its core perturbation objects.

Fits
    :func:`fit_power_law` the exponent p of metric ≈ A·T^p: least squares of
    log(mean over seeds) on log T, with a jackknife-over-seeds standard error
    (seeds are the independent units; one seed's runs at different T share
    random streams, so T values are not independent);
    :func:`compare_exponents`, :func:`budget_threshold` whether a perturbed
    setting keeps the exponent of the rate, and the largest budget exponent a
    that does.

Bounds
    :func:`estimate_constants` L_∇ℓ, μ, σ², Δ₀ of the Section 7 problem;
    :func:`gradient_error_moments` E‖ũ − u‖² and ‖E[ũ − u]‖² of one
    perturbed pass of the logistic chain, exactly (closed forms and
    Gauss–Legendre quadrature over the uniform draws);
    :func:`rhs_nonconvex`  the right-hand side of (34) term by term;
    :func:`rhs_pl`         the right-hand side of (38)/(41) term by term;
    :func:`logistic_chain_constants` the Assumption 3 constants of the chain
    f₁ = −y hᵀw, f₂ = softplus on a region, for the coefficients (21)/(33)
    of :mod:`fbsgd.bounds` (the perturbation terms of (37)/(38)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from . import bounds as B
from .limits import smoothed_sigmoid
from .metrics import fit_line
from .perturbations import UniformNoise
from .sweeps import RunConfig

__all__ = [
    "gamma_nonconvex",
    "gamma_pl",
    "horizons",
    "budget_count",
    "budget_fields",
    "spread_interval",
    "spread_fields",
    "active_steps",
    "decaying_size",
    "GEOMETRIES",
    "geometry_fields",
    "metric_every_for",
    "horizon_configs",
    "PowerLaw",
    "fit_power_law",
    "reference_exponent",
    "compare_exponents",
    "budget_threshold",
    "matches",
    "fit_groups",
    "PAPER_TABLE1",
    "averaging_threshold",
    "table1_comparison",
    "ProblemConstants",
    "estimate_constants",
    "path",
    "uniform_ranges",
    "gradient_error_moments",
    "region_moments",
    "rhs_nonconvex",
    "rhs_pl",
    "logistic_chain_constants",
    "assumption3_moments",
]


# -------------------------------------------------------------------------------------------------
# schedules (Remarks 1–2) and horizons
# -------------------------------------------------------------------------------------------------


def gamma_nonconvex(T: int, c: float) -> float:
    """Remark 1: γ = c/√T, which balances 6Δ₀/(γT) and 6L_∇ℓγσ² in (34) up to c."""
    if T < 1 or c <= 0:
        raise ValueError(f"need T >= 1 and c > 0, got T={T}, c={c}")
    return c / math.sqrt(T)


def gamma_pl(T: int, c: float) -> float:
    """Remark 2: γ = c·ln T/T.  With c = 3/μ the contraction term (1 − μγ/3)^T Δ₀ of (38)
    is at most e^{−ln T} Δ₀ = Δ₀/T, and the sampling term 3L_∇ℓγσ²/μ is O(ln T/T)."""
    if T < 2 or c <= 0:
        raise ValueError(f"need T >= 2 and c > 0, got T={T}, c={c}")
    return c * math.log(T) / T


def horizons(T_min: int, T_max: int, per_decade: int = 2) -> list[int]:
    """Log-spaced horizons from T_min to T_max (both included), rounded to integers
    with two significant digits (1000, 3200, 10000, ... for two per decade)."""
    if not (2 <= T_min <= T_max) or per_decade < 1:
        raise ValueError(f"need 2 <= T_min <= T_max and per_decade >= 1, got {T_min}, {T_max}, {per_decade}")
    n = max(1, round(per_decade * math.log10(T_max / T_min)))
    out = []
    for x in np.geomspace(T_min, T_max, n + 1):
        digits = max(0, int(math.floor(math.log10(x))) - 1)
        out.append(int(round(x / 10**digits) * 10**digits))
    out[0], out[-1] = int(T_min), int(T_max)
    return sorted(set(out))


# -------------------------------------------------------------------------------------------------
# budgets (Section 6.2)
# -------------------------------------------------------------------------------------------------


def budget_count(T: int, a: float) -> int:
    """Q = ⌈T^a⌉ perturbed iterations out of T (0 <= a <= 1), so Q = 1 for a = 0 and Q = T for a = 1.

    A relative tolerance of 1e-9 keeps exact powers exact (⌈1000^{1/3}⌉ = 10, not 11).
    """
    if not 0 <= a <= 1:
        raise ValueError(f"the budget exponent a must be in [0, 1], got {a}")
    if int(T) != T or T < 1:
        raise ValueError(f"T must be a positive integer, got {T}")
    x = float(T) ** a
    return int(min(T, max(1, math.ceil(x * (1 - 1e-9)))))


def budget_fields(Q: int, T: int, start: int = 0) -> dict:
    """RunConfig fields for exactly Q occurrences every ⌊(T − start)/Q⌋ iterations from
    ``start``: the steps of :func:`fbsgd.perturbations.budget`.  When Q does not divide
    T − start the occurrences stop early, up to Q − 1 iterations before the end
    (half the horizon for Q = T/2 + 1); :func:`spread_fields` avoids that."""
    if int(Q) != Q or not 1 <= Q <= T - start:
        raise ValueError(f"need 1 <= Q <= T - start, got Q={Q}, T={T}, start={start}")
    return dict(start=int(start), interval=int((T - start) // Q), budget=int(Q))


def spread_interval(T: int, a: float) -> int:
    """Δ = round(T^{1−a}) >= 1: the spacing whose occurrences number about T^a."""
    budget_count(T, a)  # validates T and a
    return max(1, int(round(float(T) ** (1.0 - a))))


def spread_fields(T: int, a: float) -> dict:
    """RunConfig fields for a budget Q ≈ T^a of occurrences spread over the whole horizon:
    t = 0, Δ, 2Δ, ... < T with Δ = round(T^{1−a}), so Q = ⌈T/Δ⌉ (Remark 5: Q ≈ ⌈T/Δt⌉).

    Q is ⌈T^a⌉ up to the rounding of Δ (a factor within [0.5, 1.5] when Δ is 1 or 2,
    closer for larger Δ); the chapters report the Q actually used.  The last
    occurrence is within Δ of the end, which matters under the PL condition,
    where only the last ~1/(μγ) iterations shape the final loss.
    """
    dt = spread_interval(T, a)
    return dict(start=0, interval=dt, budget=int(-(-T // dt)))


def _placed(cfg: RunConfig):
    plan = cfg.plan()
    placed = [p for p in (plan.forward.get(1), plan.backward.get(2)) if p is not None]
    return placed


def active_steps(cfg: RunConfig) -> np.ndarray:
    """Iterations t in 0..T−1 at which the configuration's perturbations act,
    read off the core objects of ``cfg.plan()`` (their ``schedule``)."""
    placed = _placed(cfg)
    if not placed:
        return np.zeros(0, dtype=np.int64)
    p = placed[0]  # forward and backward share one schedule in a RunConfig
    return p.schedule.steps_before(cfg.T)


def decaying_size(sigma0: float, T: int, T_ref: int, exponent: float, log_power: float = 0.0) -> float:
    """σ(T) = σ₀ (T/T_ref)^{−exponent} (ln T/ln T_ref)^{log_power}: a perturbation size that
    shrinks with the horizon as Corollary 1 allows (e.g. exponent 1/8 for ‖δ‖ in (43),
    exponent 1/4 with log_power 1/4 for ‖δ‖ in (44)); equal to σ₀ at T = T_ref."""
    if T < 2 or T_ref < 2:
        raise ValueError("need T, T_ref >= 2")
    return float(sigma0 * (T / T_ref) ** (-exponent) * (math.log(T) / math.log(T_ref)) ** log_power)


# -------------------------------------------------------------------------------------------------
# the two geometries and configuration builders
# -------------------------------------------------------------------------------------------------

GEOMETRIES = {
    # name: regularizer, step-size schedule, convergence metric (column of the sweep table), theorem.
    "nonconvex": dict(regularizer="nonconvex", schedule="sqrt", metric="mean_sq_grad_norm", bound="(34)/(37)",
                      rate="O(T^-1/2)"),
    "pl": dict(regularizer="l2", schedule="log", metric="final_loss_gap", bound="(38)", rate="O(ln T / T)"),
}

# The non-convex metric (1/T) Σ_t ‖∇ℓ(w_t)‖² is estimated from every k-th iterate.  With γ = c/√T the
# transient lasts only a few dozen iterations at small T, where sampling every 10th iterate overstates
# the average by 65 % (T = 1000, c = 10) and bends the fitted exponent.  Sampling every
# k = max(1, ⌊FLOW_TIME/γ⌋) iterates keeps γk <= FLOW_TIME: every mode of the gradient, which decays by
# at most a factor 1 − γL_∇ℓ per iteration (L_∇ℓ ≈ 0.28 here), changes by under 7 % between samples,
# so the estimate is biased by a few per cent at most, and by the same amount at every large T.
FLOW_TIME = 0.25
PL_METRIC_EVERY = 50  # the PL metric is ℓ(w_T) − ℓ*; the gradient norm is only recorded for plots


def metric_every_for(geometry: str, gamma: float) -> int:
    """How often the engine evaluates the exact gradient norm in a run of this geometry."""
    if GEOMETRIES[geometry]["schedule"] == "sqrt":
        return max(1, int(FLOW_TIME / gamma))
    return PL_METRIC_EVERY


def geometry_fields(geometry: str, T: int, c: float, rho: float) -> dict:
    """RunConfig fields of one geometry at horizon T: regularizer, ρ, the schedule's γ and
    the metric sampling of :func:`metric_every_for` (at most T/2)."""
    g = GEOMETRIES[geometry]
    gamma = gamma_nonconvex(T, c) if g["schedule"] == "sqrt" else gamma_pl(T, c)
    every = min(metric_every_for(geometry, gamma), max(1, T // 2))
    return dict(regularizer=g["regularizer"], rho=rho, gamma=gamma, T=int(T), metric_every=every)


def horizon_configs(geometry: str, Ts: Iterable[int], seeds: Iterable[int], c: float, rho: float, *,
                    size=None, budget_exponent: float | None = None, **fields) -> list[RunConfig]:
    """One RunConfig per (T, seed) with the geometry's schedule γ(T).

    ``size(T)`` (optional) returns a dict of sizes, e.g. ``{"sigma_f": ...}``, that
    depend on T (Corollary 1); ``budget_exponent`` a places Q ≈ T^a occurrences
    spread over the horizon (Table 1, :func:`spread_fields`); ``fields`` are passed to every RunConfig.
    """
    out = []
    for T in Ts:
        extra = dict(size(T)) if size is not None else {}
        if budget_exponent is not None:
            extra.update(spread_fields(T, budget_exponent))
        for s in seeds:
            out.append(RunConfig(**{**geometry_fields(geometry, T, c, rho), **fields, **extra, "seed": int(s)}))
    return out


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
        return f"{self.exponent:.3f} ± {self.se:.3f}"


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


# Table 1 of the paper: the largest budget exponent a (Q ≲ T^a) that keeps the rate, by
# (geometry, pass, mean); O(1) is a = 0.
PAPER_TABLE1 = {
    ("nonconvex", "forward", "zero"): 0.5, ("nonconvex", "backward", "zero"): 1.0,
    ("nonconvex", "forward", "nonzero"): 0.5, ("nonconvex", "backward", "nonzero"): 0.5,
    ("pl", "forward", "zero"): 0.0, ("pl", "backward", "zero"): 1.0,
    ("pl", "forward", "nonzero"): 0.0, ("pl", "backward", "nonzero"): 0.0,
}


def averaging_threshold(geometry: str, biased: bool) -> float:
    """The budget exponent at which the rate breaks by a time-averaging argument (not the paper's).

    Kicks that come faster than the iterates recover act like a constant bias
    ‖b‖Q/T, which holds ‖∇ℓ‖² near (‖b‖Q/T)² ∝ T^{2a−2} (below T^{−1/2} iff a <= 3/4)
    and ℓ − ℓ* near (‖b‖Q/T)²/(2μ) (below ln T/T iff a <= 1/2, up to the logarithm).
    Unbiased kicks only add variance, ∝ γQ/T, which never beats the rate for Q <= T.
    A zero-mean forward perturbation is biased here: E σ(z + δ) ≠ σ(z).
    """
    if not biased:
        return 1.0
    return 0.75 if GEOMETRIES[geometry]["schedule"] == "sqrt" else 0.5


def table1_comparison(statuses: pd.DataFrame, tol_note: str = "") -> pd.DataFrame:
    """Per (geometry, pass, mean): the paper's bound next to the measured threshold.

    ``statuses`` has columns geometry, pass, mean, a, status (kept/lost/unresolved).
    Agreement: the paper's Table 1 gives sufficient budgets, so it is contradicted
    only if a budget within its bound (a <= a_paper) loses the rate; it is
    confirmed if every such budget keeps it; otherwise the measurement cannot
    tell at these horizons.  The wording says whether larger budgets also keep
    the rate (the bound is conservative) or the loss starts right above it.
    """
    rows = []
    for (geo, pas, mean), g in statuses.groupby(["geometry", "pass", "mean"], sort=False):
        a_paper = PAPER_TABLE1[(geo, pas, mean)]
        th = budget_threshold(g["a"].tolist(), g["status"].tolist())
        within = g[g["a"] <= a_paper + 1e-12]
        above = sorted(a for a in g["a"] if a > a_paper + 1e-12)
        if (within["status"] == "lost").any():
            holds, word = False, "disagrees: a budget within the paper's bound loses the rate"
        elif (within["status"] == "kept").all():
            holds = True
            if not above:
                word = "agrees"
            elif th["kept_up_to"] > a_paper + 1e-12:
                word = (f"agrees; the bound is conservative here: every budget up to a = {th['kept_up_to']:g} keeps the rate"
                        + (f", the first that loses it is a = {th['lost_from']:g}" if not math.isnan(th["lost_from"])
                           else ", and none in the grid loses it"))
            elif not math.isnan(th["lost_from"]) and th["lost_from"] <= above[0] + 1e-12:
                word = "agrees, and the loss starts at the next exponent of the grid"
            else:
                word = "agrees; just above the bound the measurement cannot tell"
        else:
            holds, word = None, "cannot resolve: the budgets within the bound are not all clearly kept at these T"
        rows.append(dict(geometry=geo, **{"pass": pas}, mean=mean, paper_a=a_paper,
                         averaging_a=averaging_threshold(geo, biased=not (pas == "backward" and mean == "zero")),
                         kept_up_to=th["kept_up_to"], lost_from=th["lost_from"], holds=holds, agreement=word))
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------------------
# constants of the Section 7 problem
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemConstants:
    """The constants of Theorems 3–5 for one problem, estimated on a region.

    ``L``: L_∇ℓ, the largest Hessian eigenvalue on the region; ``mu``: the
    smallest (the PL constant μ of Assumption 4 when the loss is strongly
    convex there); ``sigma2``: σ² = d·σ_n² of Assumption 2 (the sampling noise
    ξ ~ N(0, σ_n² I_d)); ``delta0``: Δ₀ = f(w₀) − f*.
    """

    L: float
    mu: float
    sigma2: float
    delta0: float
    f_star: float
    w_star: np.ndarray

    def step_limit(self) -> float:
        """The step-size condition of Theorems 3–5: γ <= 1/(3 L_∇ℓ)."""
        return 1.0 / (3.0 * self.L)


def path(w_from: np.ndarray, w_to: np.ndarray, n: int = 41) -> np.ndarray:
    """n points on the segment from w_from to w_to (both included)."""
    s = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - s) * np.asarray(w_from, dtype=float)[None, :] + s * np.asarray(w_to, dtype=float)[None, :]


def estimate_constants(problem, noise_std: float, w0: np.ndarray | None = None, points: np.ndarray | None = None,
                       n_path: int = 41) -> ProblemConstants:
    """L_∇ℓ and μ from the Hessian's extreme eigenvalues over the region visited by
    the iterates, taken as the segment from w₀ to the minimizer w* plus ``points``
    (e.g. the γ → 0 limits of perturbed runs); σ² = d σ_n²; Δ₀ = f(w₀) − f*.

    For this logistic regression the Hessian is at most ¼AᵀA/M + ρ max R'' in the
    Loewner order, and both bounds are attained at w = 0, so with w₀ = 0 the
    estimate of L_∇ℓ is the global constant.
    """
    d = problem.d
    w0 = np.zeros(d) if w0 is None else np.asarray(w0, dtype=float)
    w_star = problem.minimize()
    region = path(w0, w_star, n_path)
    if points is not None and len(points):
        region = np.vstack([region, np.atleast_2d(points)])
    eig = np.array([np.linalg.eigvalsh(problem.hessian(w))[[0, -1]] for w in region])
    f_star = problem.loss(w_star)
    return ProblemConstants(L=float(eig[:, 1].max()), mu=float(eig[:, 0].min()), sigma2=d * noise_std**2,
                            delta0=float(problem.loss(w0) - f_star), f_star=float(f_star), w_star=w_star)


# -------------------------------------------------------------------------------------------------
# moments of the gradient error ũ − u of one pass
# -------------------------------------------------------------------------------------------------


def uniform_ranges(cfg: RunConfig):
    """(forward (lo, hi) or None, backward (lo, hi) or None, per_sample) of a configuration:
    the support of each placed perturbation's law (at the steps where it acts)."""
    def rng_of(p):
        if p is None:
            return None
        law = p.law
        if law.family != "uniform" or law.support is None:
            raise NotImplementedError(f"moments are implemented for uniform perturbations, got {p!r}")
        lo, hi = law.support
        return (lo, hi)

    plan = cfg.plan()
    return rng_of(plan.forward.get(1)), rng_of(plan.backward.get(2)), cfg.mode == "per_sample"


def _softplus(x):
    return np.logaddexp(0.0, x)


def gradient_error_moments(problem, w: np.ndarray, forward=None, backward=None, per_sample: bool = True,
                           nodes: int = 64) -> tuple[float, float]:
    """(E‖ũ − u‖², ‖E[ũ − u]‖²) of one perturbed pass of the logistic chain at w.

    The gradient error of the batch is e = −(1/M) Σ_l a_l [σ(z_l + δ_l) − σ(z_l) + ε_l]
    with z_l = −a_lᵀw, a_l = y_l h_l (the engine's (5a)–(5c)), δ ~ U(forward),
    ε ~ U(backward).  Per sample the draws are independent across samples and

        E σ(z + δ)  = [sp(z + hi) − sp(z + lo)]/(hi − lo),
        E σ(z + δ)² = [(sp − σ)(z + hi) − (sp − σ)(z + lo)]/(hi − lo)   (sp = softplus),

    so E‖e‖² = ‖E e‖² + (1/M²) Σ_l ‖a_l‖² (Var σ(z_l + δ) + Var ε).  With one draw
    shared by the batch, E‖e‖² is a one-dimensional integral over δ, done by
    Gauss–Legendre quadrature with ``nodes`` points.  ξ is common to ũ and u
    and cancels.
    """
    a = problem.signed_features
    M = a.shape[0]
    z = -a @ np.asarray(w, dtype=float)
    s = expit(z)
    abar = a.mean(axis=0)
    if backward is not None:
        blo, bhi = backward
        m_eps, e2_eps = 0.5 * (blo + bhi), (blo**2 + blo * bhi + bhi**2) / 3.0
    else:
        m_eps, e2_eps = 0.0, 0.0
    var_eps = max(e2_eps - m_eps**2, 0.0)
    mean_s, var_s = s, np.zeros_like(z)
    if forward is not None:
        lo, hi = forward
        mean_s, _ = smoothed_sigmoid(z, lo, hi)  # a point mass δ = lo when hi = lo
        if hi > lo:
            sq_s = ((_softplus(z + hi) - expit(z + hi)) - (_softplus(z + lo) - expit(z + lo))) / (hi - lo)
            var_s = np.maximum(sq_s - mean_s**2, 0.0)
    bias = -(a.T @ (mean_s - s)) / M - m_eps * abar
    bias_sq = float(bias @ bias)
    if per_sample:
        mse = bias_sq + float(np.sum((a * a).sum(axis=1) * (var_s + var_eps))) / M**2
        return mse, bias_sq
    # shared: e(δ, ε) = −g(δ) − ε ā with g(δ) = (1/M) Σ a_l (σ(z_l + δ) − σ(z_l))
    if forward is not None and forward[1] > forward[0]:
        x, wq = np.polynomial.legendre.leggauss(nodes)
        deltas = 0.5 * (forward[0] + forward[1]) + 0.5 * (forward[1] - forward[0]) * x
        G = np.array([(a.T @ (expit(z + dl) - s)) / M for dl in deltas])  # (nodes, d)
        weights = 0.5 * wq  # the uniform density times the Jacobian of the change of variables
        Eg = weights @ G
        Eg2 = float(weights @ (G * G).sum(axis=1))
    elif forward is not None:
        Eg = (a.T @ (expit(z + forward[0]) - s)) / M
        Eg2 = float(Eg @ Eg)
    else:
        Eg, Eg2 = np.zeros(problem.d), 0.0
    mse = Eg2 + 2 * m_eps * float(abar @ Eg) + e2_eps * float(abar @ abar)
    return float(mse), bias_sq


def region_moments(problem, cfg: RunConfig, points: np.ndarray) -> tuple[float, float]:
    """The largest E‖ũ − u‖² and ‖E[ũ − u]‖² of one active step of ``cfg`` over ``points``
    (the engine keeps no iterates, so the region stands in for the trajectory)."""
    fwd, bwd, per_sample = uniform_ranges(cfg)
    if fwd is None and bwd is None:
        return 0.0, 0.0
    vals = np.array([gradient_error_moments(problem, w, fwd, bwd, per_sample) for w in np.atleast_2d(points)])
    return float(vals[:, 0].max()), float(vals[:, 1].max())


# -------------------------------------------------------------------------------------------------
# right-hand sides of (34) and (38)
# -------------------------------------------------------------------------------------------------


def rhs_nonconvex(gamma: float, T: int, K: ProblemConstants, steps: np.ndarray | None = None,
                  mse: float = 0.0, bias_sq: float = 0.0) -> dict:
    """Right-hand side of (34), term by term, for (1/T) Σ_t E‖∇ℓ(w_t)‖²:

        6Δ₀/(γT) + 6L_∇ℓγσ² + (6L_∇ℓγ/T) Σ_t E‖ũ_t − u_t‖² + (3/T) Σ_t ‖E_t[ũ_t − u_t]‖²,

    with the gradient-error moments equal to ``mse`` and ``bias_sq`` at the
    active ``steps`` and zero elsewhere.  ``valid`` says whether γ <= 1/(3L_∇ℓ).
    """
    n = 0 if steps is None else int(np.count_nonzero(np.asarray(steps) < T))
    out = dict(optimization=6 * K.delta0 / (gamma * T), sampling=6 * K.L * gamma * K.sigma2,
               error_variance=6 * K.L * gamma * n * mse / T, error_bias=3 * n * bias_sq / T)
    out["total"] = sum(out.values())
    out["valid"] = bool(gamma <= K.step_limit())
    return out


def rhs_pl(gamma: float, T: int, K: ProblemConstants, steps: np.ndarray | None = None,
           mse: float = 0.0, bias_sq: float = 0.0) -> dict:
    """Right-hand side of (38) (in the form (41)), term by term, for E[ℓ(w_T) − ℓ*]:

        q^T Δ₀ + 3L_∇ℓγσ²/μ + L_∇ℓγ² Σ_t q^{T−t} E‖ũ_t − u_t‖² + (γ/2) Σ_t q^{T−t} ‖E_t[ũ_t − u_t]‖²,

    q = 1 − μγ/3, the moments equal to ``mse``/``bias_sq`` at the active
    ``steps`` and zero elsewhere.
    """
    q = 1.0 - K.mu * gamma / 3.0
    if steps is None or len(steps) == 0:
        w_sum = 0.0
    else:
        t = np.asarray(steps, dtype=float)
        t = t[t < T]
        w_sum = float(np.sum(np.exp((T - t) * math.log(q))))
    out = dict(optimization=q**T * K.delta0, sampling=3 * K.L * gamma * K.sigma2 / K.mu,
               error_variance=K.L * gamma**2 * w_sum * mse, error_bias=0.5 * gamma * w_sum * bias_sq)
    out["total"] = sum(out.values())
    out["valid"] = bool(gamma <= K.step_limit() and K.mu > 0)
    return out


# -------------------------------------------------------------------------------------------------
# Assumption 3 constants of the logistic chain, for the coefficients of (37)/(38)
# -------------------------------------------------------------------------------------------------


def logistic_chain_constants(problem, points: np.ndarray, delta_range: tuple = (0.0, 0.0)) -> B.Constants:
    """One set of Assumption 3 constants valid for both operators of the chain on a region.

    f₁(x, w) = −y hᵀw with input x = (h, y) and weight w, at the weights in ``points``
    and on the data (‖h‖ <= H = max_l ‖h_l‖, |y| = 1):

    * ∇₁f₁ = −(y wᵀ, hᵀw):  ‖∇₁f₁‖_op = √(‖w‖² + (hᵀw)²), also its Lipschitz constant L_f;
    * ∇₂f₁ = −y hᵀ:          ‖∇₂f₁‖_op = ‖h‖ <= H;
    * ∇₂f₁ is bilinear in (h, y): its derivative in x has norm √(1 + H²) (C_∇²f and
      the Lipschitz constant of ∇₂f₁), and ∇₁f₁ is Lipschitz in x with constant ‖w‖;
      the second derivatives are constant in x, so L_∇²f = 0 for f₁.

    f₂ = softplus on the range of ỹ₁ = −aᵀw + δ (δ in ``delta_range``):
    :func:`fbsgd.bounds.elementwise_constants`.  The uniform set takes the
    maximum of each constant over the two operators, as Assumption 3 does.
    """
    W = np.atleast_2d(points)
    h = problem.features
    H = float(np.linalg.norm(h, axis=1).max())
    hw = h @ W.T  # (M, n_points)
    wn = np.linalg.norm(W, axis=1)
    j1 = float(np.sqrt(wn[None, :] ** 2 + hw**2).max())
    c2 = math.sqrt(1 + H**2)
    op1 = B.Constants(C_grad=max(j1, H), C_hess=c2, L_f=j1, L_grad=max(c2, float(wn.max())), L_hess=0.0)
    z = -problem.signed_features @ W.T
    op2 = B.elementwise_constants("softplus", [float(z.min()) + delta_range[0]], [float(z.max()) + delta_range[1]])
    return B.Constants.uniform([op1, op2])


def assumption3_moments(cfg: RunConfig, K3: B.Constants, variant: str = "printed") -> tuple[float, float]:
    """The right-hand sides of (13) and (23) for one active step of ``cfg`` (N = 2: δ₁
    after f₁, ε₂ after ∂f₂/∂f₁), from the moments of the scalar draws; they bound the
    per-sample gradient error, hence (Jensen) the batch mean's too."""
    fwd, bwd, _ = uniform_ranges(cfg)
    dsq, d4, dm, esq, em = {}, {}, {}, {}, {}
    if fwd is not None:
        mom = B.perturbation_moments(UniformNoise(*fwd), 1)
        dsq[1], dm[1], d4[1] = mom.second, mom.mean_sq, mom.fourth
    if bwd is not None:
        mom = B.perturbation_moments(UniformNoise(*bwd), 1)
        esq[2], em[2] = mom.second, mom.mean_sq
    return (B.mse_bound(2, K3, delta_sq=dsq, eps_sq=esq, variant=variant),
            B.bias_bound(2, K3, delta_mean_sq=dm, delta_fourth=d4, eps_mean_sq=em, variant=variant))
