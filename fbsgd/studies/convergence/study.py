"""Section 5 measured: SGD with the schedules of Remarks 1–2 across horizons, the
right-hand sides of (34), (37) and (38) next to the measurements, and the verdicts.

Design
    :func:`settings` standard SGD and one zero-mean perturbation at every iteration
    in either pass; :func:`setup` the problem, its region and its constants
    (:func:`fbsgd.theory.rate_bounds.estimate_constants`); :func:`convergence_design`
    one RunConfig per (geometry, setting, T, seed), labels as columns.
Analysis
    :func:`bounds_table` the right-hand sides of (34)/(38) term by term, with the
    exact gradient-error moments and with their Section 4 bounds (13)/(23);
    :func:`fit_table` the fitted exponent of each (geometry, setting).
Verdicts
    :func:`rate_verdict` (Remarks 1–2, with their evidence in :func:`remark1_verdict` and
    :func:`remark2_verdict`), :func:`bound_verdict` ((34), (38)),
    :func:`tightness_verdict` (the book's probe), :func:`section4_verdict` ((37)).
Page
    the tables it shows (:func:`constants_shown`, :func:`bounds_ends_view`, :func:`exponents_view`),
    the figure (:func:`rates_figure`), the runs' summary (:func:`run_summary_text`) and every
    glued number and sentence (:func:`summary_values`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fbsgd.book import figures as FIG
from fbsgd.book import verdicts as V
from fbsgd.book.report import number, show
from fbsgd.theory.small_step_limits import small_step_limit
from fbsgd.theory.logistic_closed_forms import assumption3_moments, logistic_chain_constants, region_moments, uniform_ranges
from fbsgd.studies.rates.schedules import GEOMETRIES, active_steps, design, geometry_fields, horizon_configs
from fbsgd.studies.rates.statistics import fit_groups, format_estimate, matches, reference_exponent
from fbsgd.engine.sweeps import RunConfig, cost_text
from fbsgd.theory.rate_bounds import ProblemConstants, estimate_constants, path, rhs_nonconvex, rhs_pl

__all__ = ["GEOS", "STANDARD", "TIGHT_SPREAD", "settings", "Setup", "setup", "constants_table", "convergence_design",
           "bounds_table", "fit_table", "rate_verdict", "bound_verdict", "tightness_verdict", "section4_verdict",
           "constants_view", "region_note", "exponent_comparison", "transient_product", "step_condition_text",
           "span_text", "standard_terms_text", "perturbed_ratio_text", "span_short", "remark1_verdict", "remark2_verdict",
           "constants_shown", "run_summary_text", "bounds_ends_view", "exponents_view", "rates_figure", "setup_values",
           "result_values", "summary_values"]

GEOS = ("nonconvex", "pl")
STANDARD = "standard SGD"
EQUATION = {"nonconvex": "(34)", "pl": "(38)"}
# the book's tightness probe: bound / measured may vary by at most this factor over the horizons
TIGHT_SPREAD = 2.0


def settings(sigma_f: float, sigma_b: float, mode: str) -> dict:
    """Setting name -> RunConfig fields: standard SGD, and a zero-mean perturbation of one size at
    every iteration in the forward or the backward pass (left out when its size is 0)."""
    out = {STANDARD: dict()}
    if sigma_f > 0:
        out[f"forward, σ_f = {sigma_f:g}"] = dict(perturbation="forward", sigma_f=sigma_f, mode=mode)
    if sigma_b > 0:
        out[f"backward, σ_b = {sigma_b:g}"] = dict(perturbation="backward", sigma_b=sigma_b, mode=mode)
    return out


@dataclass(frozen=True)
class Setup:
    """One geometry's problem, the region its iterates visit, and its constants."""

    problem: object
    region: np.ndarray
    constants: ProblemConstants
    noise_std: float


def setup(geometry: str, rho: float, data_seed: int, fields: dict) -> Setup:
    """The region is the segment w₀ = 0 → w* plus the segments from w* to the γ → 0 limits of the
    perturbed settings (``fields``: setting -> RunConfig fields); the constants are estimated on it."""
    probe = RunConfig(regularizer=GEOMETRIES[geometry]["regularizer"], rho=rho, data_seed=data_seed)
    prob = probe.problem()
    w_star = prob.minimize()
    limits = [small_step_limit(prob, RunConfig(**{**probe.computation(), **kw}).plan())["w"] for kw in fields.values() if kw]
    region = np.vstack([path(np.zeros(prob.d), w_star)] + [path(w_star, w) for w in limits])
    return Setup(prob, region, estimate_constants(prob, probe.noise_std, points=region), probe.noise_std)


def constants_table(setups: dict, rho: dict, c_used: dict, Ts) -> pd.DataFrame:
    """One row per geometry: the constants, the region, the schedule and its largest γ."""
    return pd.DataFrame([dict(
        geometry=geo, regularizer=GEOMETRIES[geo]["regularizer"], rho=rho[geo], L=s.constants.L, mu=s.constants.mu,
        sigma2=s.constants.sigma2, delta0=s.constants.delta0, w_star_norm=float(np.linalg.norm(s.constants.w_star)),
        region_max_norm=float(np.linalg.norm(s.region, axis=1).max()), step_limit=s.constants.step_limit(),
        schedule="γ = c/√T" if GEOMETRIES[geo]["schedule"] == "sqrt" else "γ = c·ln T/T", c=c_used[geo],
        largest_gamma=max(geometry_fields(geo, T, c_used[geo], rho[geo])["gamma"] for T in Ts),
    ) for geo, s in setups.items()])


def convergence_design(Ts, seeds, c_used: dict, rho: dict, fields: dict, data_seed: int) -> pd.DataFrame:
    """The design table: one RunConfig per (geometry, setting, T, seed), the labels as columns."""
    return pd.concat([design(horizon_configs(geo, Ts, seeds, c_used[geo], rho[geo], data_seed=data_seed, **kw),
                             geometry=geo, setting=name)
                      for geo in GEOS for name, kw in fields.items()], ignore_index=True)


def _bound_rows(geo: str, name: str, grp: pd.DataFrame, s: Setup) -> list[dict]:
    first = RunConfig.from_row(grp.iloc[0])
    mse, bias_sq = region_moments(s.problem, first, s.region)
    fwd = uniform_ranges(first)[0]
    K3 = logistic_chain_constants(s.problem, s.region, fwd or (0.0, 0.0))
    mse3, bias3 = assumption3_moments(first, K3) if first.perturbation != "none" else (0.0, 0.0)
    rhs = rhs_nonconvex if GEOMETRIES[geo]["schedule"] == "sqrt" else rhs_pl
    rows = []
    for T, g in grp.groupby("T"):
        cfg = RunConfig.from_row(g.iloc[0])
        steps = active_steps(cfg)
        exact = rhs(cfg.gamma, T, s.constants, steps, mse, bias_sq)
        sec4 = rhs(cfg.gamma, T, s.constants, steps, mse3, bias3)
        rows.append(dict(geometry=geo, setting=name, T=T, gamma=cfg.gamma, measured=g.convergence_metric.mean(),
                         measured_min=g.convergence_metric.min(), measured_max=g.convergence_metric.max(),
                         **{f"rhs_{k}": v for k, v in exact.items() if k != "valid"},
                         rhs_section4_total=sec4["total"], step_condition=exact["valid"],
                         error_mse=mse, error_bias_sq=bias_sq, section4_mse=mse3, section4_bias_sq=bias3))
    return rows


def bounds_table(runs: pd.DataFrame, setups: dict) -> pd.DataFrame:
    """Per (geometry, setting, T): the mean measurement and the right-hand side of (34) or (38) term by
    term with the exact error moments (largest over the region), and its total with the Section 4
    bounds (13)/(23) in their place ((37) and (38) substituted)."""
    rows = []
    for (geo, name), grp in runs.groupby(["geometry", "setting"], sort=False):
        rows += _bound_rows(geo, name, grp, setups[geo])
    out = pd.DataFrame(rows)
    out["rhs_over_measured"] = out.rhs_total / out.measured
    out["section4_over_measured"] = out.rhs_section4_total / out.measured
    return out


def fit_table(runs: pd.DataFrame, Ts) -> pd.DataFrame:
    """One power-law fit per (geometry, setting), with the textbook exponent on these horizons."""
    fits = fit_groups(runs, ["geometry", "setting"])
    fits["reference"] = [reference_exponent(Ts, g) for g in fits.geometry]
    fits["rate"] = [GEOMETRIES[g]["rate"] for g in fits.geometry]
    return fits


def fit_of(fits: pd.DataFrame, geometry: str, setting: str = STANDARD):
    return fits[(fits.geometry == geometry) & (fits.setting == setting)].iloc[0]["fit"]


_MATCH = {True: "holds", None: "unresolved", False: "fails"}


def rate_verdict(claim: V.Claim, fit, target: float, tol: float, evidence: str) -> V.Verdict:
    """Remarks 1–2: the fitted exponent against the rate's, within ±tol (see :func:`matches`)."""
    rule = (f"holds if |fitted exponent − ({target:.3f})| ≤ {tol:g}; unresolved if only the 95 % interval reaches "
            f"the band {target - tol:.3f} … {target + tol:.3f}; fails if the interval lies outside it")
    ev = (f"fitted exponent {format_estimate(fit.exponent, fit.se)} (95 % interval {fit.interval_text()}, "
          f"{fit.n_seeds} seeds, line misfit {fit.misfit_se:.3g}); " + evidence)
    return V.Verdict(claim, _MATCH[matches(fit, target, tol)], rule, ev, fit.exponent, "fitted exponent")


def bound_verdict(claim: V.Claim, rhs: pd.DataFrame, geometry: str) -> V.Verdict:
    """(34)/(38) with the estimated constants and exact moments bound the mean measurement, per (setting, T)."""
    part = rhs[rhs.geometry == geometry]
    ok = part.measured <= part.rhs_total
    ev = (f"{int(ok.sum())} of {len(part)} (setting, T) pairs; bound / measured from {part.rhs_over_measured.min():.3g} "
          f"to {part.rhs_over_measured.max():.3g}; the step-size condition γ ≤ 1/(3L) holds at "
          f"{int(part.step_condition.sum())} of {len(part)}.")
    return V.Verdict(claim, V.outcome_of_cases(ok), "mean over seeds ≤ right-hand side at every (setting, T): holds if at "
                     "all, partial if at some, fails if at none", ev, part.rhs_over_measured.min(), "smallest bound / measured")


def tightness_verdict(claim: V.Claim, rhs: pd.DataFrame, geometry: str, spread: float = TIGHT_SPREAD) -> V.Verdict:
    """The book's probe: without perturbations, bound / measured stays within a factor ``spread`` over T."""
    part = rhs[(rhs.geometry == geometry) & (rhs.setting == STANDARD)]
    r = part.rhs_over_measured
    shares = {k: float((part[f"rhs_{k}"] / part.rhs_total).mean()) for k in ("optimization", "sampling", "error_variance", "error_bias")}
    main = max(shares, key=shares.get)
    nonconvex = GEOMETRIES[geometry]["schedule"] == "sqrt"
    names = {"optimization": "optimization" if nonconvex else "contraction", "sampling": "sampling",
             "error_variance": "error-variance", "error_bias": "error-bias"}
    follows = part.measured / part["rhs_optimization" if nonconvex else "rhs_sampling"]
    contraction = part.rhs_optimization / part.measured
    tail = (f"{follows.min():.3f}…{follows.max():.3f} times the optimization term 6Δ₀/(γT)." if nonconvex else
            f"{follows.min():.3f}…{follows.max():.3f} times the sampling term 3Lγσ²/μ, while the contraction term "
            f"(1 − μγ/3)^T Δ₀ ≈ Δ₀/T is {contraction.min():.3g}…{contraction.max():.3g} times the measurement.")
    ev = (f"bound / measured between {r.min():.3g} and {r.max():.3g} over T = {int(part['T'].min()):,}…{int(part['T'].max()):,} "
          f"(spread ×{r.max() / r.min():.2f}); the largest term of the bound is the {names[main]} term "
          f"({shares[main]:.1%} of it on average); the measured value is " + tail)
    ok = r.max() / r.min() <= spread
    return V.Verdict(claim, "holds" if ok else "fails",
                     f"max/min over T of (bound / measured) ≤ {spread:g}: holds, else fails", ev,
                     r.max() / r.min(), "spread of bound / measured")


def section4_verdict(claim: V.Claim, rhs: pd.DataFrame) -> V.Verdict:
    """(37), and (38) with (13)/(23) substituted, bound the perturbed runs, per (geometry, setting, T)."""
    pert = rhs[rhs.setting != STANDARD]
    if not len(pert):
        return V.Verdict(claim, "unresolved", "mean over seeds ≤ the Section 4 right-hand side at every perturbed "
                         "(geometry, setting, T)", "no perturbed setting was run (both sizes are 0).")
    ok = pert.measured <= pert.rhs_section4_total
    ev = ("bound / measured: " + "; ".join(
        f"{g}, {s}: {p.section4_over_measured.min():.2g} … {p.section4_over_measured.max():.2g}"
        for (g, s), p in pert.groupby(["geometry", "setting"], sort=False))
        + f". The exact-moment version (34)/(38) is within a factor {pert.rhs_over_measured.max():.3g} of the measurement; "
        f"the Section 4 constants multiply the error terms by "
        f"{(pert.section4_mse / pert.error_mse.where(pert.error_mse > 0)).min():.2g}× or more (squared error) and "
        f"{(pert.section4_bias_sq / pert.error_bias_sq.where(pert.error_bias_sq > 0)).min():.2g}× or more (squared bias).")
    return V.Verdict(claim, V.outcome_of_cases(ok), "mean over seeds ≤ the Section 4 right-hand side at every perturbed "
                     "(geometry, setting, T): holds if at all, partial if at some, fails if at none", ev,
                     pert.section4_over_measured.min(), "smallest bound / measured")


# --- what the page prints ---------------------------------------------------------

_GEO_NAME = {"nonconvex": "non-convex", "pl": "PL"}
_CONSTANT_ROWS = [  # constants_table column -> printed quantity
    ("regularizer", "regularizer"), ("rho", "ρ"), ("L", "L_∇ℓ"), ("mu", "μ"), ("sigma2", "σ²"), ("delta0", "Δ₀"),
    ("w_star_norm", "‖w*‖"), ("region_max_norm", "largest ‖w‖ in the region"), ("step_limit", "1/(3L_∇ℓ)"),
    ("schedule", "schedule"), ("c", "c"), ("largest_gamma", "largest γ (T = T_min)")]


def constants_view(const_table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """:func:`constants_table` as the page shows it: one row per constant (its symbol), one column
    per geometry, numbers to ``digits`` significant figures."""
    cols = {_GEO_NAME.get(r.geometry, r.geometry): r for r in const_table.itertuples()}
    return pd.DataFrame([{"quantity": label, **{g: number(getattr(r, c), digits) for g, r in cols.items()}}
                         for c, label in _CONSTANT_ROWS])


def region_note(runs: pd.DataFrame, const_table: pd.DataFrame) -> str:
    """One sentence per geometry: do the runs end inside the region on which the constants and the
    exact error moments were taken (largest final ‖w_T‖ against the region's largest norm)?"""
    parts = []
    for r in const_table.itertuples():
        g = runs[runs.geometry == r.geometry]
        if not len(g):
            continue
        far = g.loc[g.final_weight_norm.idxmax()]
        where = f"{far.setting}, T = {int(far['T']):,}"
        if far.final_weight_norm > r.region_max_norm:
            parts.append(f"In the {_GEO_NAME.get(r.geometry, r.geometry)} problem the runs end outside the region on which the constants were estimated: the "
                         f"largest ‖w_T‖ is {number(far.final_weight_norm)} ({where}), while the region reaches only "
                         f"‖w‖ = {number(r.region_max_norm)}, so the constants and the exact error moments used for its "
                         "bounds below are not guaranteed for the whole of these runs.")
        else:
            parts.append(f"In the {_GEO_NAME.get(r.geometry, r.geometry)} problem every run ends inside the region "
                         f"(largest ‖w_T‖ {number(far.final_weight_norm)}, {where}; the region reaches "
                         f"‖w‖ = {number(r.region_max_norm)}).")
    return " ".join(parts)


def exponent_comparison(fits: pd.DataFrame, geometry: str, setting: str) -> str:
    """"−0.928 (95 % interval −1.21 … −0.647), which contains the unperturbed −0.95": a perturbed
    setting's fitted exponent against standard SGD's in the same geometry."""
    row = fits[(fits.geometry == geometry) & (fits.setting == setting)].iloc[0]
    ref = float(fits[(fits.geometry == geometry) & (fits.setting == STANDARD)].iloc[0].exponent)
    inside = row.ci_low <= ref <= row.ci_high
    return (f"{number(row.exponent)} (95 % interval {number(row.ci_low)} … {number(row.ci_high)}), which "
            f"{'contains' if inside else 'does not contain'} the unperturbed {number(ref, 4)}")


def transient_product(const_table: pd.DataFrame, c: float, T: int, geometry: str = "nonconvex") -> float:
    """γTμ for γ = c/√T: how many curvature times 1/μ the run of horizon T lasts."""
    mu = float(const_table[const_table.geometry == geometry].mu.iloc[0])
    return c / np.sqrt(T) * T * mu


# --- the chapter's computed sentences (nothing measured is typed in its prose) ----------------------


def _range(x, digits: int = 3) -> str:
    lo, hi = float(np.min(x)), float(np.max(x))
    return number(lo, digits) if number(lo, digits) == number(hi, digits) else f"{number(lo, digits)} … {number(hi, digits)}"


def step_condition_text(const_table: pd.DataFrame) -> str:
    """The largest step size of each schedule against 1/(3L), in words."""
    parts = []
    for r in const_table.itertuples():
        ok = r.largest_gamma <= r.step_limit
        parts.append(f"γ = {number(r.largest_gamma)} {'≤' if ok else '>'} 1/(3L_∇ℓ) = {number(r.step_limit)} in the "
                     f"{_GEO_NAME.get(r.geometry, r.geometry)} case")
    ok_all = bool((const_table.largest_gamma <= const_table.step_limit).all())
    return ("; ".join(parts) + (", so the condition holds" if ok_all else ", so the condition is violated where γ is larger"))


def span_text(Ts) -> str:
    """"T = 1,000 … 1,000,000 (three decades)"."""
    decades = np.log10(max(Ts) / min(Ts))
    words = {1: "one decade", 2: "two decades", 3: "three decades"}
    return f"T = {min(Ts):,} … {max(Ts):,} ({words.get(int(round(decades)), f'{decades:.2g} decades') if np.isclose(decades, round(decades)) else f'{decades:.2g} decades'})"


def standard_terms_text(rhs: pd.DataFrame, geometry: str) -> str:
    """Standard SGD: the share of the largest term of the bound, and where the measurement sits
    (non-convex: against Δ₀/(γT) = optimization term / 6; PL: against the sampling term)."""
    part = rhs[(rhs.geometry == geometry) & (rhs.setting == STANDARD)]
    if not len(part):
        return "standard SGD was not run"
    nonconvex = GEOMETRIES[geometry]["schedule"] == "sqrt"
    names = {"optimization": "optimization term 6Δ₀/(γT)" if nonconvex else "contraction term (1 − μγ/3)^T Δ₀",
             "sampling": "sampling term", "error_variance": "error-variance term", "error_bias": "error-bias term"}
    shares = {k: float((part[f"rhs_{k}"] / part.rhs_total).mean()) for k in names}
    main = max(shares, key=shares.get)
    head = f"the largest term of the bound is the {names[main]}, {shares[main]:.1%} of it on average over T"
    if nonconvex:
        ratio = part.measured / (part.rhs_optimization / 6)
        return head + f", and the measured average is {_range(ratio)} times Δ₀/(γT)"
    return (head + f"; the measured gap is {_range(part.measured / part.rhs_sampling, 2)} times the sampling term "
            f"3L_∇ℓγσ²/μ, and bound / measured is {_range(part.rhs_over_measured)} over T")


def perturbed_ratio_text(rhs: pd.DataFrame) -> str:
    """bound / measured of the perturbed settings, with the exact moments and with the Section 4 constants."""
    pert = rhs[rhs.setting != STANDARD]
    if not len(pert):
        return "no perturbed setting was run"
    return (f"with the exact moments, bound / measured is {_range(pert.rhs_over_measured)} over the perturbed settings "
            f"and horizons; with the constants of Assumption 3, {_range(pert.section4_over_measured, 2)}")


def span_short(Ts) -> str:
    """"T = 1,000…10,000": the horizons' range, as the verdicts' evidence quotes it."""
    return f"T = {min(Ts):,}…{max(Ts):,}"


def remark1_verdict(claim: V.Claim, fits: pd.DataFrame, Ts, tol: float) -> V.Verdict:
    """Remark 1: standard SGD's fitted exponent in the non-convex geometry against −1/2 (:func:`rate_verdict`)."""
    return rate_verdict(claim, fit_of(fits, "nonconvex"), -0.5, tol,
                        f"metric (1/T)Σ‖∇ℓ(w_t)‖² over {span_short(Ts)}; textbook exponent −0.5.")


def remark2_verdict(claim: V.Claim, fits: pd.DataFrame, Ts, tol: float, c: float) -> V.Verdict:
    """Remark 2: standard SGD's fitted exponent under PL against the log–log slope of ln T/T on these
    horizons (the fits' ``reference``), with the schedule's ``c`` in the evidence (:func:`rate_verdict`)."""
    ref = fits[fits.geometry == "pl"].reference.iloc[0]
    return rate_verdict(claim, fit_of(fits, "pl"), ref, tol,
                        f"metric ℓ(w_T) − ℓ* over {span_short(Ts)}; ln T/T has the exponent {ref:.3f} on these horizons "
                        f"(−1 up to the logarithm); c = {c:.3g}.")


def constants_shown(const_table: pd.DataFrame):
    """The displayed table of constants: :func:`constants_view` with its caption."""
    return show(constants_view(const_table), "Constants of the two problems (one column per geometry)")


def run_summary_text(runs: pd.DataFrame, result, Ts, const_table: pd.DataFrame) -> str:
    """What the page prints after the runs: how many at which horizons, computed or from the cache
    (``result``: the sweep result of :func:`fbsgd.studies.rates.schedules.run_design`) and in how long, how many
    diverged, and the largest final ‖w_T‖ against the region's largest norm."""
    return (f"{len(runs)} runs at T = {', '.join(f'{T:,}' for T in Ts)}:\n"
            f"{cost_text(result)};\n"
            f"diverged: {int(runs.diverged.sum())}; "
            f"largest ‖w_T‖: {runs.final_weight_norm.max():.2f} "
            f"(region: {const_table.region_max_norm.max():.2f})")


def bounds_ends_view(rhs_table: pd.DataFrame, Ts):
    """The rows of :func:`bounds_table` at the shortest and the longest horizon: bound against
    measurement, and the Section 4 bound's ratio to 2 significant figures."""
    ends = rhs_table[rhs_table["T"].isin([min(Ts), max(Ts)])]
    return show(ends, f"Bound against measurement at T = {min(Ts):,} and {max(Ts):,} "
                f"({len(rhs_table)} rows, with every term in the CSV)",
                columns=["geometry", "setting", "T", "measured", "rhs_total", "rhs_over_measured",
                         "section4_over_measured"],
                rename={"rhs_total": "bound", "rhs_over_measured": "bound / measured",
                        "section4_over_measured": "bound (37) / measured"},
                formats={"section4_over_measured": partial(number, digits=2)})


def exponents_view(fit_table: pd.DataFrame):
    """The displayed part of the fitted exponents (:func:`fit_table` without its ``fit`` column):
    exponents to 5 significant figures, standard errors to 2."""
    return show(fit_table,
                "Fitted exponents of T (the rate, misfit_se, n_T, n_seeds and the metric "
                "at T_max are in the CSV)",
                columns=["geometry", "setting", "reference", "exponent", "se", "ci_low", "ci_high"],
                rename={"se": "s.e.", "ci_low": "95 % low", "ci_high": "95 % high"},
                digits=5, formats={"se": partial(number, digits=2)})


def rates_figure(rhs_table: pd.DataFrame, fits: pd.DataFrame, Ts, settings):
    """The chapter's figure: per geometry, the measured metric against T (open markers, one shape per
    setting, band: range over seeds), the right-hand side of (34)/(38) (dashed) and the fitted power
    law (thin line); standard SGD in black, drawn on top."""
    colours = dict(zip(settings, ["k", "C0", "C3"]))
    markers = dict(zip(settings, FIG.MARKERS))  # one open marker per setting, so coinciding points stay visible
    fit_styles = dict(zip(settings, ["-", "-.", ":"]))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
    for ax, geo in zip(axes, GEOS):
        for name, col in colours.items():
            part = rhs_table[(rhs_table.geometry == geo) & (rhs_table.setting == name)]
            first = geo == "nonconvex"
            ref = name == STANDARD  # the reference: drawn on top, larger open markers
            ax.loglog(part["T"], part.measured, markers[name], color=col, ms=7 if ref else 5.5, mfc="none", mew=1.3,
                      zorder=5 if ref else 4, label=f"{FIG.tex_label(name)}: measured" if first else None)
            ax.fill_between(part["T"], part.measured_min, part.measured_max, color=col, alpha=0.15, lw=0)
            ax.loglog(part["T"], part.rhs_total, "--", color=col, lw=1.3,
                      label=f"{FIG.tex_label(name)}: bound (34) / (38)" if first else None)
            fit = fit_of(fits, geo, name)
            Tg = np.geomspace(min(Ts), max(Ts), 50)
            ax.loglog(Tg, fit.prefactor * Tg**fit.exponent, fit_styles[name], color=col, lw=0.9, alpha=0.8)
        ax.set_xlabel("horizon $T$")
        ax.set_ylabel(r"mean of $\|\nabla\ell(w_t)\|^2$ over $t < T$" if geo == "nonconvex" else r"$\ell(w_T) - \ell^*$")
        ax.set_title(r"non-convex, $\gamma = c/\sqrt{T}$ (Thm 3)" if geo == "nonconvex"
                     else r"PL, $\gamma = c\,\ln T/T$ (Thm 5)", fontsize=10)
    fig.legend(loc="lower center", ncol=2)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    return fig


def setup_values(const_table: pd.DataFrame, setups: dict, Ts, c_nonconvex: float) -> dict:
    """The set-up's numbers and sentences as the prose glues them (glue name → value): the horizons,
    the step-size condition, c and γTμ of the shortest non-convex run, the problem's d, M, noise and σ²."""
    nc = setups["nonconvex"]
    return {"cv-transient": number(transient_product(const_table, c_nonconvex, min(Ts))),
            "cv-T-min": f"{min(Ts):,}", "cv-span": span_text(Ts), "cv-step": step_condition_text(const_table),
            "cv-c": f"{c_nonconvex:g}", "cv-d": f"{nc.problem.d}", "cv-M": f"{nc.problem.M:,}",
            "cv-noise": number(nc.noise_std), "cv-sigma2": number(float(const_table.sigma2.iloc[0]))}


def result_values(fits: pd.DataFrame, rhs_table: pd.DataFrame, settings) -> dict:
    """The measured sentences the prose glues (glue name → value): each pass's fitted exponent against
    standard SGD's per geometry (:func:`exponent_comparison`; "— (not run)" without that pass), standard
    SGD's terms per geometry (:func:`standard_terms_text`) and the perturbed ratios (:func:`perturbed_ratio_text`)."""
    out = {}
    for kind in ("backward", "forward"):
        named = [name for name in settings if name.startswith(kind)]
        for geo in GEOS:
            out[f"cv-{kind}-{geo}"] = exponent_comparison(fits, geo, named[0]) if named else "— (not run)"
    for geo in GEOS:
        out[f"cv-terms-{geo}"] = standard_terms_text(rhs_table, geo)
    out["cv-perturbed"] = perturbed_ratio_text(rhs_table)
    return out


def summary_values(const_table: pd.DataFrame, setups: dict, Ts, c_nonconvex: float, fits: pd.DataFrame,
                   rhs_table: pd.DataFrame, settings) -> dict:
    """Every number and sentence the chapter's prose glues (glue name → value), the figure aside:
    :func:`setup_values` and :func:`result_values`."""
    return {**setup_values(const_table, setups, Ts, c_nonconvex), **result_values(fits, rhs_table, settings)}
