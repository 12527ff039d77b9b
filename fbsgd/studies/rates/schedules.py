"""The experiment design of Sections 5–6: step-size schedules, horizons, perturbation
budgets, and the RunConfigs of one geometry across horizons.

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
    perturbations act, read off its core perturbation objects;
    :func:`decaying_size` a size that shrinks with T as Corollary 1 allows.

Geometries
    :data:`GEOMETRIES` the non-convex (Theorems 3–4) and PL (Theorem 5) set-ups:
    regularizer, schedule, metric; :func:`geometry_fields`, :func:`horizon_configs`.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from fbsgd.engine.sweeps import RunConfig, run_sweep

__all__ = ['gamma_nonconvex', 'gamma_pl', 'horizons', 'budget_count', 'budget_fields', 'spread_interval', 'spread_fields', 'active_steps', 'decaying_size', 'GEOMETRIES', 'FLOW_TIME', 'PL_METRIC_EVERY', 'metric_every_for', 'geometry_fields', 'horizon_configs', 'design', 'stack', 'run_design', 'metric_of']


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
# running a design: configurations with their labels as columns
# -------------------------------------------------------------------------------------------------


def design(configs: Iterable[RunConfig], **labels) -> pd.DataFrame:
    """A design table: one row per configuration (column ``config``) with the labels as columns."""
    configs = list(configs)
    return pd.DataFrame({"config": configs, **{k: [v] * len(configs) for k, v in labels.items()}})


def stack(*designs: pd.DataFrame) -> pd.DataFrame:
    """Several design tables as one (their label columns united; a label a table lacks is empty)."""
    return pd.concat(designs, ignore_index=True)


def metric_of(table: pd.DataFrame) -> pd.Series:
    """The convergence metric of each row's geometry (column ``geometry``): the column named
    by :data:`GEOMETRIES` (mean of ‖∇ℓ(w_t)‖² or ℓ(w_T) − ℓ*)."""
    out = pd.Series(np.nan, index=table.index, dtype=float)
    for geo, g in GEOMETRIES.items():
        rows = table["geometry"] == geo
        out[rows] = table.loc[rows, g["metric"]].astype(float)
    return out


def run_design(plan: pd.DataFrame, *, n_jobs=-1, trace_points: int = 600, **kw):
    """Run every configuration of a design table once and return (runs, sweep result).

    ``runs`` is the design's label columns joined, by each configuration's key, with its
    row of the sweep table (so a configuration in two analyses runs once and appears in
    both); with a ``geometry`` label it also gets the ``convergence_metric`` column (``metric`` is a RunConfig field).  The longest
    runs are sent first, so the workers finish together.
    """
    configs = list(plan["config"])
    unique = list({c.key(): c for c in configs}.values())
    unique.sort(key=lambda c: -c.T)
    result = run_sweep(unique, n_jobs=n_jobs, trace_points=trace_points, **kw)
    by_key = result.table.drop_duplicates("config_id").set_index("config_id")
    runs = plan.drop(columns="config").reset_index(drop=True)
    summary = by_key.loc[[c.key() for c in configs]].reset_index()
    summary = summary.drop(columns=[c for c in runs.columns if c in summary.columns])  # the labels win
    runs = pd.concat([summary, runs], axis=1)
    if "geometry" in runs:
        runs["convergence_metric"] = metric_of(runs)
    return runs, result
