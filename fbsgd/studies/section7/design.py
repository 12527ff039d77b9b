"""The Section 7 experiments: the configuration grids behind Figures 3–8, the
parameters their chapters share, and the statistics their verdicts use.

Every verdict in the Section 7 chapters is one of two questions about the
stable gradient norm S(γ) as the step size shrinks:

* does S keep falling towards zero, like standard SGD (S ∝ γ^{1/2} here)?
* or does it level off at a plateau that no step size removes?

Both are answered by the log-log slope of S against γ over the smallest step
sizes of the grid (:func:`small_step_slopes`), fitted on all seeds with a
standard error, next to the γ → 0 prediction of :mod:`fbsgd.theory.small_step_limits`.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import pandas as pd

from fbsgd.book import params as P
from fbsgd import perturbations as PT
from fbsgd.studies import rates as R
from fbsgd.engine import sweeps
from fbsgd.theory.small_step_limits import small_step_limit
from fbsgd.lowprec import FORMATS
from fbsgd.metrics import fit_line
from fbsgd.studies.section7.verdicts import DECREASE_SLOPE, PLATEAU_SLOPE, geometric_mean, trend
from fbsgd.engine.sweeps import RunConfig, check_memory, default_cache_dir

__all__ = [
    "section7_spec",
    "section7_rules",
    "ROUND_FORMATS",
    "ROUND_MODES",
    "horizon_rules",
    "sweep_rules",
    "memory_problem",
    "cache_dir_problem",
    "common",
    "frequent_configs",
    "nonzero_mean_configs",
    "intermittent_configs",
    "small_step_slopes",
    "predicted_plateau",
    "add_predictions",
    "PLATEAU_SLOPE",
    "DECREASE_SLOPE",
    "SLOPE_WINDOW",
    "trend",
    "with_levels",
    "level_of",
    "slopes_with_predictions",
    "slope_window",
    "slope_summary",
    "figure3_runs",
    "settled_bias_plateau",
    "final_weight_norms",
    "interval_labels",
    "perturbed_iterations",
    "book_grid",
    "BOOK_DEFAULTS",
]

# the small-step slope is fitted over this many of the smallest step sizes of the grid
SLOPE_WINDOW = 3

# what a chapter may round a message to: the low-precision formats of fbsgd.lowprec (fewer
# significand bits than float32), in the rounding modes of fbsgd.perturbations.Round
ROUND_FORMATS = tuple(name for name, f in FORMATS.items() if f.man_bits < FORMATS["float32"].man_bits)
ROUND_MODES = tuple(PT._ROUND_MODES)


def section7_spec() -> dict:
    """Parameter declarations shared by the Section 7 chapters (paper and quick defaults)."""
    return dict(
        T=P.Int(paper=200_000, quick=5_000, min=20, max=2**31 - 1),
        gammas=P.FloatList(paper=[0.003, 0.01, 0.03, 0.1, 0.3, 1.0], quick=[0.1, 0.3, 1.0], min=1e-9, max=1e3, min_len=2),
        seeds=P.IntList(paper=[0, 1, 2], quick=[0, 1], min=0),
        mode=P.Str(choices=tuple(sweeps._MODES)),
        ewma=P.Float(min=1e-6, max=0.999999),
        metric_every=P.Int(min=1, max=10_000),
        precision=P.Str(choices=("float32", "float64")),
        data_seed=P.Int(min=0),
        n_jobs=P.Int(min=-64, max=256),
        output_dir=P.Dir(),
    )


# -- checks, before anything runs, for the chapters that call run_sweep --------------------------

N_JOBS_MESSAGE = "parameter 'n_jobs' must not be 0 (use -1 for all cores, or a positive count), got 0"


def memory_problem(name: str, T: int, metric_every: int, n_jobs: int) -> str | None:
    """The problem, naming parameter ``name``, if a sweep of horizon T sampled every
    ``metric_every`` iterations on ``n_jobs`` workers needs too much memory (:func:`fbsgd.engine.sweeps.check_memory`)."""
    try:
        check_memory(T, metric_every, n_jobs=n_jobs)
    except MemoryError as exc:
        return f"parameter {name!r} is too large for this machine's memory: {exc}"
    return None


def cache_dir_problem() -> str | None:
    """The problem if the sweep cache folder (:func:`fbsgd.engine.sweeps.default_cache_dir`) cannot be written."""
    path = default_cache_dir()
    reason = P.unwritable(path)
    if reason is None:
        return None
    env = os.environ.get("FBSGD_CACHE_DIR")
    if env:
        return f"environment variable FBSGD_CACHE_DIR must name a writable folder for the sweep cache, got {env!r}: {reason}"
    return (f"the sweep cache folder {str(path)!r} is not writable ({reason}); "
            f"set the environment variable FBSGD_CACHE_DIR to a writable folder")


def sweep_rules(memory) -> list[P.Rule]:
    """Rules of every chapter that runs sweeps: n_jobs != 0 (joblib refuses it only when the
    sweep starts), a writable cache folder, and ``memory`` (a rule test: the parameters it
    needs by name -> None or a problem, typically from :func:`memory_problem`)."""
    return [P.rule(lambda n_jobs: n_jobs != 0, N_JOBS_MESSAGE), P.rule(cache_dir_problem), P.rule(memory)]


def section7_rules(finest_metric_every: int | None = None) -> list[P.Rule]:
    """Rules of the Section 7 chapters (parameters of :func:`section7_spec`): T >= 2 * metric_every,
    and :func:`sweep_rules` with the memory of the runs of horizon T; ``finest_metric_every``: a
    smaller metric interval that the chapter also runs with (the reproducibility notes use 1)."""
    def memory(T, metric_every, n_jobs):
        return memory_problem("T", T, min(metric_every, finest_metric_every or metric_every), n_jobs)

    return [P.rule(lambda T, metric_every: T >= 2 * metric_every,
                   "parameter 'T' must be at least 2 * metric_every, got T={T}, metric_every={metric_every}"),
            *sweep_rules(memory)]


def horizon_rules() -> list[P.Rule]:
    """Rules of the chapters that sweep horizons T_min..T_max (convergence, budgets): T_max > T_min,
    and :func:`sweep_rules` with the memory of the longest runs (T_max, at the finer metric interval
    of the two geometries; budgets also: spike_T)."""
    spike_every = RunConfig.__dataclass_fields__["metric_every"].default

    def memory(T_max, c_nonconvex, n_jobs, spike_T=None):
        every = min(R.geometry_fields("nonconvex", T_max, c_nonconvex, 0.0)["metric_every"], R.PL_METRIC_EVERY)
        return (memory_problem("T_max", T_max, every, n_jobs)
                or (memory_problem("spike_T", 10 * spike_T, 10 * spike_every, n_jobs) if spike_T else None))

    return [P.rule(lambda T_min, T_max: T_max > T_min,
                   "parameter 'T_max' must be larger than 'T_min', got T_min={T_min}, T_max={T_max}"),
            *sweep_rules(memory)]


def common(p: dict) -> dict:
    """The RunConfig fields shared by every run of a chapter, from its resolved parameters."""
    return dict(T=p["T"], mode=p["mode"], ewma=p["ewma"], metric_every=p["metric_every"],
                precision=p["precision"], data_seed=p["data_seed"])


def frequent_configs(figure: str, regularizer: str, rho: float, sigma_f_levels, sigma_b_levels, gammas, seeds, *,
                     mean: str = "zero", **kw) -> list[RunConfig]:
    """Figures 4 and 5: forward-only levels (panel 'left'), backward-only levels
    (panel 'right') and standard SGD ('baseline'), at every step size and seed."""
    out = []
    for g in gammas:
        for s in seeds:
            base = dict(figure=figure, regularizer=regularizer, rho=rho, gamma=g, seed=s, **kw)
            out.append(RunConfig(panel="baseline", **base))
            out += [RunConfig(panel="left", perturbation="forward", mean=mean, sigma_f=sf, **base) for sf in sigma_f_levels]
            out += [RunConfig(panel="right", perturbation="backward", mean=mean, sigma_b=sb, **base) for sb in sigma_b_levels]
    return out


def nonzero_mean_configs(figure: str, regularizer: str, rho: float, sigma_b_levels, gammas, seeds, **kw) -> list[RunConfig]:
    """Figure 6: backward perturbations U(0, σ_b/√d) at every iteration (σ_b = 0 is standard SGD)."""
    out = []
    for g in gammas:
        for s in seeds:
            for sb in sigma_b_levels:
                pert = "backward" if sb > 0 else "none"
                out.append(RunConfig(figure=figure, panel="main", regularizer=regularizer, rho=rho, gamma=g, seed=s,
                                     perturbation=pert, mean="nonzero", sigma_b=sb, **kw))
    return out


def intermittent_configs(figure: str, regularizer: str, rho: float, sigma_f_panels, intervals, gammas, seeds, **kw) -> list[RunConfig]:
    """Figures 7 and 8: zero-mean forward perturbations every Δt iterations, one panel per σ_f."""
    out = []
    for g in gammas:
        for s in seeds:
            base = dict(figure=figure, regularizer=regularizer, rho=rho, gamma=g, seed=s, **kw)
            out.append(RunConfig(panel="baseline", **base))
            for sf in sigma_f_panels:
                out += [RunConfig(panel=f"sigma_f={sf:g}", perturbation="forward", sigma_f=sf, interval=dt, **base) for dt in intervals]
    return out


def level_of(row) -> str:
    """A readable label of a run's perturbation."""
    if row["perturbation"] == "none":
        return "standard SGD"
    parts = []
    if row["perturbation"] in ("forward", "both"):
        parts.append(f"σ_f={row['sigma_f']:g}")
    if row["perturbation"] in ("backward", "both"):
        parts.append(f"σ_b={row['sigma_b']:g}")
    if row["interval"] > 1:
        parts.append(f"Δt={row['interval']}")
    return ", ".join(parts)


_GROUP = ["figure", "panel", "regularizer", "rho", "perturbation", "mean", "sigma_f", "sigma_b", "interval", "mode"]


def small_step_slopes(table: pd.DataFrame, n_smallest: int = SLOPE_WINDOW) -> pd.DataFrame:
    """Per perturbation setting: log-log slope of the stable gradient norm against γ
    over the ``n_smallest`` step sizes (all seeds), with its standard error, and
    the geometric mean over seeds of the norm at the smallest γ.  Diverged runs are excluded and counted."""
    rows = []
    for key, g in table.groupby(_GROUP, sort=False):
        ok = g[~g.diverged]
        gam = np.sort(ok.gamma.unique())[:n_smallest]
        pts = ok[ok.gamma.isin(gam)]
        fit = fit_line(np.log(pts.gamma), np.log(pts.stable_grad_norm)) if len(gam) >= 2 else None
        smallest = pts[pts.gamma == gam.min()].stable_grad_norm if len(gam) else pd.Series(dtype=float)
        rows.append(dict(zip(_GROUP, key), level=level_of(g.iloc[0]), slope=fit.slope if fit else np.nan,
                         slope_se=fit.slope_se if fit else np.nan, gamma_min=gam.min() if len(gam) else np.nan,
                         norm_at_gamma_min=geometric_mean(smallest),
                         diverged_runs=int(g.diverged.sum()), runs=len(g)))
    return pd.DataFrame(rows)


@lru_cache(maxsize=512)
def _prediction(cfg: RunConfig):
    return small_step_limit(cfg.problem(), cfg.plan())


def predicted_plateau(cfg: RunConfig) -> tuple[float, bool]:
    """(γ → 0 prediction of the stable gradient norm, whether the iterates escape to infinity)."""
    base = RunConfig(**{**cfg.__dict__, "figure": "", "panel": "", "gamma": 1.0, "seed": 0, "T": 2 * cfg.metric_every})
    r = _prediction(base)
    return r["plateau"], r["escapes"]


def add_predictions(slopes: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Attach the γ → 0 prediction to each row of :func:`small_step_slopes`."""
    preds, esc = [], []
    for _, row in slopes.iterrows():
        match = table
        for col in _GROUP:
            match = match[match[col] == row[col]]
        cfg = RunConfig.from_row(match.iloc[0])
        p, e = predicted_plateau(cfg)
        preds.append(p)
        esc.append(e)
    return slopes.assign(predicted_limit=preds, escapes=esc)


def with_levels(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep table with a readable ``level`` column."""
    return table.assign(level=[level_of(r) for _, r in table.iterrows()])


# -------------------------------------------------------------------------------------------------
# tables the chapters show and plot (the verdicts themselves: fbsgd.studies.section7.verdicts)
# -------------------------------------------------------------------------------------------------


def slopes_with_predictions(table: pd.DataFrame, n_smallest: int = SLOPE_WINDOW) -> pd.DataFrame:
    """:func:`small_step_slopes` of ``table`` with the γ → 0 predictions attached."""
    return add_predictions(small_step_slopes(table, n_smallest), table)


def slope_window(gammas, n_smallest: int = SLOPE_WINDOW) -> list[float]:
    """The step sizes the small-step slope uses: the ``n_smallest`` smallest of ``gammas``."""
    return sorted(gammas)[:n_smallest]


def slope_summary(slopes: pd.DataFrame) -> pd.DataFrame:
    """The columns of a slope table a chapter shows, with the trend each slope means."""
    cols = [c for c in ["figure", "panel", "level", "interval", "slope", "slope_se", "norm_at_gamma_min", "predicted_limit",
                        "escapes", "diverged_runs"] if c in slopes]
    return slopes[cols].assign(trend=[trend(s) for s in slopes.slope])


def figure3_runs(table: pd.DataFrame, sigma_f: float, sigma_b: float, gammas) -> tuple:
    """The runs of Figure 3 (one row per configuration): forward σ_f, backward σ_b, standard SGD."""
    sub = table[table.gamma.isin(gammas)].drop_duplicates("config_id")
    left = sub[(sub.perturbation == "forward") & (sub.sigma_f == sigma_f) & (sub["mean"] == "zero")]
    right = sub[(sub.perturbation == "backward") & (sub.sigma_b == sigma_b) & (sub["mean"] == "zero")]
    base = sub[(sub.perturbation == "none") & (sub.regularizer == left.regularizer.iloc[0]) & (sub.rho == left.rho.iloc[0])]
    return left, right, base


def settled_bias_plateau(slopes: pd.DataFrame, cfg: RunConfig) -> pd.Series:
    """m‖ā‖ with m = σ_b/(2√d): the plateau of a biased backward run whose iterates settle (:mod:`fbsgd.theory.small_step_limits`)."""
    a_bar = np.linalg.norm(cfg.problem().signed_features.mean(axis=0))
    return slopes.sigma_b / (2 * np.sqrt(cfg.d)) * a_bar


def final_weight_norms(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ‖w_T‖ of the perturbed runs: rows levels, columns γ."""
    return table[table.perturbation != "none"].groupby(["level", "gamma"]).final_weight_norm.mean().unstack()


def interval_labels(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``level`` = "standard SGD" or "Δt = k" (the legend of Figures 7-8)."""
    return table.assign(level=[("standard SGD" if p == "none" else f"Δt = {i}")
                               for p, i in zip(table.perturbation, table.interval)])


def perturbed_iterations(slopes: pd.DataFrame, T: int) -> pd.Series:
    """Q_δ = ⌈T/Δt⌉ of each row (0 for standard SGD)."""
    return pd.Series([(-(-T // int(i)) if p != "none" else 0) for p, i in zip(slopes.perturbation, slopes.interval)],
                     index=slopes.index)


# -------------------------------------------------------------------------------------------------
# the whole Section 7 grid of the book at paper scale (for the benchmark's projection)
# -------------------------------------------------------------------------------------------------

# the chapters' defaults (tests/test_experiments.py checks the notebooks use the same values)
BOOK_DEFAULTS = dict(
    frequent=dict(sigma_f_levels=[0.1, 0.2, 0.5, 1.0, 2.0], sigma_b_levels=[0.5, 1.0, 2.0, 4.0],
                  rho_nonconvex=0.001, rho_l2=0.1),
    nonzero=dict(sigma_b_levels=[0.0, 0.1, 0.25, 0.5, 1.0, 2.0], regularizer="nonconvex", rho=0.001),
    intermittent=dict(sigma_f_panels=[1.0, 2.0], rho_nonconvex=0.001, rho_l2=0.5),
)


def book_grid(scale: str = "paper") -> list[RunConfig]:
    """Every distinct run behind Figures 3–8 with the chapters' default parameters."""
    spec = section7_spec()
    p = {k: v.default(scale) for k, v in spec.items() if k in ("T", "gammas", "seeds")}
    kw = dict(T=p["T"])
    g, s = p["gammas"], p["seeds"]
    F, N, I = BOOK_DEFAULTS["frequent"], BOOK_DEFAULTS["nonzero"], BOOK_DEFAULTS["intermittent"]
    intervals = [1, 10, 100, 1000, 10000] if scale == "paper" else [1, 10, 100]
    configs = (
        frequent_configs("4", "nonconvex", F["rho_nonconvex"], F["sigma_f_levels"], F["sigma_b_levels"], g, s, **kw)
        + frequent_configs("5", "l2", F["rho_l2"], F["sigma_f_levels"], F["sigma_b_levels"], g, s, **kw)
        + nonzero_mean_configs("6", N["regularizer"], N["rho"], N["sigma_b_levels"], g, s, **kw)
        + intermittent_configs("7", "nonconvex", I["rho_nonconvex"], I["sigma_f_panels"], intervals, g, s, **kw)
        + intermittent_configs("8", "l2", I["rho_l2"], I["sigma_f_panels"], intervals, g, s, **kw)
    )
    unique = {}
    for c in configs:
        unique.setdefault(c.key(), c)
    return list(unique.values())
