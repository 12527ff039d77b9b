"""The measurements of the chapter on derivatives of SGD, as tidy tables.

Runs of :func:`fbsgd.studies.sgd_derivatives.sgd_prime.run_sgd_prime` become long tables with one row per
(configuration, seed, recorded iteration k) — :func:`run_table` — and each study condenses
them into the quantities the verdicts judge:

* :func:`finite_difference_check` — SGD′ against central differences of the unrolled iterates;
* :func:`constant_step_study` and :func:`plateau_slopes` — the O(η) plateau with constant steps;
* :func:`decreasing_step_study` — the decay with steps 2/(μ(k + k₀));
* :func:`interpolation_rates` and :func:`simple_interpolation_drops` — linear convergence at σ = 0;
* :func:`error_term_fits` — the exponents of the error term e_{k+1} against η, k and ‖x_k − x*‖.

The chapter's problems and constants come from :func:`generate_problems` and :func:`constants_table`;
the tables it displays from the ``*_view`` functions at the end (:func:`fbsgd.book.report.show` with the
chosen columns, headers and caption).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.studies.sgd_derivatives import sgd_prime as S
from fbsgd.metrics import fit_line, log_slope
from fbsgd.book.report import show

__all__ = ["ZERO", "theorem_step", "run_table", "mean_curve", "finite_difference_check", "constant_step_study", "plateau_slopes",
           "fitting_window", "decreasing_step_study", "interpolation_rates", "simple_interpolation_drops",
           "error_term_fits", "predicted_bias_order", "generate_problems", "constants_table", "main_setting",
           "interpolation_mu_over_L", "ends_of", "plain_setting", "constants_view", "plateau_ends_view", "slopes_view",
           "decreasing_view", "rate_ends_view", "error_term_view"]

ZERO = 1e-20  # a variance below this counts as zero (interpolation)


def generate_problems(d: int, m: int, settings, curvatures, data_seed: int) -> dict:
    """The chapter's problems, keyed by (setting, β): one :meth:`ParametricLeastSquares.generate
    <fbsgd.studies.sgd_derivatives.sgd_prime.ParametricLeastSquares.generate>` per setting and curvature, all from ``data_seed``."""
    return {(s, b): S.ParametricLeastSquares.generate(d, m, s, b, data_seed) for s in settings for b in curvatures}


def constants_table(problems: dict) -> pd.DataFrame:
    """One row per problem (keyed by (setting, β)): the setting, β, the size p of θ, the problem's
    ``constants`` and the theorem's largest first step ``eta0`` (:func:`theorem_step`)."""
    return pd.DataFrame([dict(setting=s, beta=b, p=pr.p, **pr.constants, eta0=theorem_step(pr.constants))
                         for (s, b), pr in problems.items()])


def main_setting(settings) -> str:
    """The setting the decreasing-step and error-term studies run: ``general`` (non-zero residuals,
    as in Iutzeler et al.'s experiment) if it was chosen, else the first one."""
    return "general" if "general" in settings else settings[0]


def interpolation_mu_over_L(problems: dict, curvatures) -> float:
    """μ/L of the double-interpolation problem with the smallest β (the reference line of the
    interpolation figure), 1 if that problem was not run."""
    dbl = ("double_interpolation", min(curvatures))
    c = problems[dbl].constants if dbl in problems else dict(mu=1.0, L=1.0)
    return c["mu"] / c["L"]


def theorem_step(constants: dict) -> float:
    """The largest first step η₀ = μ/(4L²) that Iutzeler et al.'s theorem (and their auxiliary
    proposition on inexact SGD) admits, from a problem's ``constants``."""
    return constants["mu"] / (4 * constants["L"] ** 2)


def run_table(run: dict, **config) -> pd.DataFrame:
    """The arrays of one :func:`run_sgd_prime` call as a long table: the configuration
    columns, then seed index, k and the recorded quantities."""
    n_seeds, n_k = run["D_err2"].shape
    cols = {name: run[name].ravel() for name in S.RECORDED}
    t = pd.DataFrame(dict(seed=np.repeat(np.arange(n_seeds), n_k), k=np.tile(run["k"], n_seeds), **cols))
    for key, value in reversed(list(config.items())):
        t.insert(0, key, value)
    return t


def mean_curve(curves: pd.DataFrame, column: str, **select) -> pd.Series:
    """The mean over seeds of ``column`` against k, for the configuration ``select``."""
    sub = curves
    for key, value in select.items():
        sub = sub[sub[key] == value]
    return sub.groupby("k")[column].mean()


def finite_difference_check(problem: S.ParametricLeastSquares, iters: int, seed: int, h: float = 1e-6) -> pd.DataFrame:
    """One row: the largest gap between D_K of SGD′ and central differences (step h) of θ ↦ x_K(θ)
    along a fixed sample sequence (constant step 0.25/L), the largest gap between ∂θx* and central
    differences of θ ↦ x*(θ), and ‖D_K − D*‖ from the compiled kernel and from the numpy reference."""
    etas = S.constant_steps(0.25 / problem.constants["L"], iters)
    xis = S.sample_indices(seed, iters, problem.m)
    E = np.eye(problem.p)
    D_fd = np.column_stack([(S.unrolled_iterate(problem, problem.theta + h * e, etas, xis)
                             - S.unrolled_iterate(problem, problem.theta - h * e, etas, xis)) / (2 * h) for e in E])
    _, Ds, _ = S.sgd_prime_reference(problem, etas, xis)
    run = S.run_sgd_prime(problem, etas, [seed], np.array([iters]))
    xstar_fd = np.column_stack([(problem.solve_x(problem.theta + h * e) - problem.solve_x(problem.theta - h * e)) / (2 * h)
                                for e in E])
    return pd.DataFrame([dict(setting=problem.setting, beta=problem.curvature, iters=iters, d=problem.d, p=problem.p,
                              fd_gap=float(np.max(np.abs(D_fd - Ds[-1]))),
                              star_gap=float(np.max(np.abs(xstar_fd - problem.jacobian_star))),
                              kernel_error=float(np.sqrt(run["D_err2"][0, 0])),
                              reference_error=float(np.linalg.norm(Ds[-1] - problem.jacobian_star)))])


def constant_step_study(problems: dict, fractions, iters: int, seeds, ck) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Constant steps η = c/L for every problem (keyed by (setting, β)) and fraction c.

    Returns ``(plateaus, curves, exact)``: one row per configuration with the step against the
    theorem's largest first step (``eta0_theorem`` = μ/(4L²), :func:`theorem_step`, and
    ``eta_over_eta0``), the plateau (mean of
    ‖D_k − D*‖² over seeds and over k ≥ iters/2) and its s.e. over seeds, the exact expectation
    over the same window and the exact stationary level (β = 0), the bound 4σ²η/μ with
    σ² = max(σ²_x, σ²_D) (β = 0), the plateaus of ‖x − x*‖², of the bias and RMS of the error
    term, and the largest ‖e_{k+1}‖; the long table of the runs (:func:`run_table`); and the
    exact expected curves E‖D_k − D*‖² (β = 0 only)."""
    ck = np.asarray(ck)
    late = ck >= iters // 2
    rows, curves, exact_rows = [], [], []
    for (s, b), pr in problems.items():
        c = pr.constants
        for frac in fractions:
            eta = frac / c["L"]
            etas = S.constant_steps(eta, iters)
            r = S.run_sgd_prime(pr, etas, seeds, ck)
            curves.append(run_table(r, setting=s, beta=b, fraction=frac, eta=eta))
            exact = S.expected_error(pr, etas, ck) if b == 0 else None
            if exact is not None:
                exact_rows.append(pd.DataFrame(dict(setting=s, beta=b, fraction=frac, k=ck, exact=exact)))
            per_seed = r["D_err2"][:, late].mean(axis=1)
            rows.append(dict(
                setting=s, beta=b, fraction=frac, eta=eta, eta0_theorem=theorem_step(c),
                eta_over_eta0=eta / theorem_step(c), plateau=float(per_seed.mean()),
                plateau_se=float(per_seed.std(ddof=1) / np.sqrt(len(per_seed))) if len(per_seed) > 1 else np.nan,
                exact_window=float(exact[late].mean()) if exact is not None else np.nan,
                exact_stationary=S.stationary_error(pr, eta) if b == 0 else np.nan,
                poster_bound=4 * max(c["sigma2_x"], c["sigma2_D"]) * eta / c["mu"] if b == 0 else np.nan,
                x_plateau=float(r["x_err2"][:, late].mean()), eps_bias_plateau=float(r["eps_bias"][:, late].mean()),
                eps_rms_plateau=float(np.sqrt((r["eps_rms"][:, late] ** 2).mean())), e_max=float(r["e_max"].max()),
                sigma2_x=c["sigma2_x"], sigma2_D=c["sigma2_D"]))
    exact = pd.concat(exact_rows, ignore_index=True) if exact_rows else pd.DataFrame(
        columns=["setting", "beta", "fraction", "k", "exact"])
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True), exact


def plateau_slopes(plateaus: pd.DataFrame) -> pd.DataFrame:
    """Log–log slope of the plateau against η per (setting, β) with σ²_D > 0 (a plateau exists),
    with, for β = 0, the largest relative gap to the exact window and the largest plateau/bound ratio."""
    rows = []
    for (s, b), g in plateaus.groupby(["setting", "beta"], sort=False):
        if g.sigma2_D.iloc[0] < ZERO:
            continue
        fit = log_slope(g.eta, g.plateau)
        rows.append(dict(setting=s, beta=b, slope=fit.slope, slope_se=fit.slope_se,
                         max_rel_to_exact=float(np.max(np.abs(g.plateau / g.exact_window - 1))) if b == 0 else np.nan,
                         max_ratio_to_bound=float(np.max(g.plateau / g.poster_bound)) if b == 0 else np.nan))
    return pd.DataFrame(rows, columns=["setting", "beta", "slope", "slope_se", "max_rel_to_exact", "max_ratio_to_bound"])


def fitting_window(iters: int, k0: float) -> float:
    """First iteration of the decreasing-step fit: max(K/10, 15k₀), or K/2 if that is beyond 0.6K
    (from 15k₀ on the squared mean error, ∝ (k₀/(k+k₀))⁴, is negligible)."""
    start = max(iters / 10, 15 * k0)
    return start if start <= 0.6 * iters else iters / 2


def decreasing_step_study(problems: dict, setting: str, curvatures, iters: int, seeds, offset=None,
                          ck=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Steps η_k = 2/(μ(k + k₀)), k₀ = ``offset`` or 8κ², for (``setting``, β) and each β.

    Returns ``(fits, curves, exact)``: per β the log–log slopes against k + k₀ over
    :func:`fitting_window` of the mean ‖D_k − D*‖² (with s.e.), of the bound's shape
    log²(k+k₀)/(k+k₀), of ‖x_k − x*‖² and its root, of the bias (β > 0) and of the exact
    expectation (β = 0), the largest relative gap to it, the final error and the largest ‖e‖;
    the long table of the runs (with k₀); the exact curves (β = 0)."""
    ck = S.checkpoints(iters, 200, 100) if ck is None else np.asarray(ck)
    rows, curves, exact_rows = [], [], []
    for b in curvatures:
        pr = problems[(setting, b)]
        c = pr.constants
        k0 = offset if offset is not None else 8 * c["kappa"] ** 2
        etas = S.decreasing_steps(c["mu"], k0, iters)
        r = S.run_sgd_prime(pr, etas, seeds, ck)
        curves.append(run_table(r, setting=setting, beta=b, k0=k0))
        exact = S.expected_error(pr, etas, ck) if b == 0 else None
        if exact is not None:
            exact_rows.append(pd.DataFrame(dict(setting=setting, beta=b, k0=k0, k=ck, exact=exact)))
        start = fitting_window(iters, k0)
        sel = ck >= start
        kk = ck[sel] + k0
        mean = r["D_err2"].mean(axis=0)[sel]
        fit = log_slope(kk, mean)
        rows.append(dict(setting=setting, beta=b, k0=k0, eta0=etas[0], window_start=start, slope=fit.slope,
                         slope_se=fit.slope_se, bound_local_slope=log_slope(kk, np.log(kk) ** 2 / kk).slope,
                         x_slope=log_slope(kk, r["x_err2"].mean(axis=0)[sel]).slope, final_error=float(mean[-1]),
                         max_rel_to_exact=float(np.max(np.abs(mean / exact[sel] - 1))) if exact is not None else np.nan,
                         exact_slope=log_slope(kk, exact[sel]).slope if exact is not None else np.nan,
                         eps_bias_slope=log_slope(kk, r["eps_bias"].mean(axis=0)[sel]).slope if b > 0 else np.nan,
                         x_rms_slope=log_slope(kk, np.sqrt(r["x_err2"].mean(axis=0)[sel])).slope,
                         e_max=float(r["e_max"].max()), sigma2_x=c["sigma2_x"]))
    exact = pd.concat(exact_rows, ignore_index=True) if exact_rows else pd.DataFrame(
        columns=["setting", "beta", "k0", "k", "exact"])
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True), exact


def interpolation_rates(curves: pd.DataFrame, problems: dict, hi: float = 1e-3, lo: float = 1e-24) -> pd.DataFrame:
    """Fitted factor per step of the mean error, log E‖·‖² linear in k over the records where it has
    dropped below ``hi`` times its start and is still above ``lo``: the Jacobian in double
    interpolation, the iterates in both interpolation settings (at least 3 points). With η/η₀
    (:func:`theorem_step`), the exact spectral radius of the second-moment map (β = 0) and the
    bound's 1 − μη/2."""
    rows = []
    for (s, b, frac, eta), g in curves.groupby(["setting", "beta", "fraction", "eta"], sort=False):
        if s not in ("double_interpolation", "simple_interpolation"):
            continue
        for which in ("D_err2", "x_err2"):
            mean = g.groupby("k")[which].mean()
            k, y = mean.index.to_numpy(), mean.to_numpy()
            if y[0] <= 0 or (which == "D_err2" and s == "simple_interpolation"):
                continue
            ok = (y < hi * y[0]) & (y > lo)
            if ok.sum() < 3:
                continue
            fit = fit_line(k[ok], np.log(y[ok]))
            pr = problems[(s, b)]
            rows.append(dict(setting=s, beta=b, quantity="Jacobian" if which == "D_err2" else "iterate", fraction=frac,
                             eta=eta, eta_over_eta0=eta / theorem_step(pr.constants), rate=float(np.exp(fit.slope)),
                             exact_rate=S.second_moment_rate(pr.A, eta) if b == 0 else np.nan,
                             bound_rate=1 - pr.constants["mu"] * eta / 2, points=int(ok.sum())))
    return pd.DataFrame(rows, columns=["setting", "beta", "quantity", "fraction", "eta", "eta_over_eta0", "rate",
                                       "exact_rate", "bound_rate", "points"])


def simple_interpolation_drops(curves: pd.DataFrame) -> pd.DataFrame:
    """Per simple-interpolation run (β, c): mean error at the end over mean error at the start,
    for the iterates and for the Jacobian."""
    rows = []
    for (b, frac), g in curves[curves.setting == "simple_interpolation"].groupby(["beta", "fraction"], sort=False):
        x, D = g.groupby("k").x_err2.mean().to_numpy(), g.groupby("k").D_err2.mean().to_numpy()
        rows.append(dict(beta=b, fraction=frac, x_drop=x[-1] / x[0], D_drop=D[-1] / D[0]))
    return pd.DataFrame(rows, columns=["beta", "fraction", "x_drop", "D_drop"])


def predicted_bias_order(sigma2_x: float, sigma2_D: float) -> float:
    """Order of the bias ‖E_k e_{k+1}‖ in ‖x_k − x*‖: φ″(r_k) − φ″(r*) is first order in δ when
    r* ≠ 0 and second order when r* = 0 (interpolation, φ‴(0) = 0); the factor aᵀD_k − ∂θb_ξ adds
    one order when the derivative residuals vanish (double interpolation)."""
    return (1.0 if sigma2_x > ZERO else 2.0) + (0.0 if sigma2_D > ZERO else 1.0)


def error_term_fits(plateaus: pd.DataFrame, decr: pd.DataFrame, curves: pd.DataFrame, beta: float,
                    setting_const: str, setting_decr: str, dx_range=(1e-6, 0.3)) -> pd.DataFrame:
    """Fitted exponents of the error term for curvature ``beta`` > 0, with their predictions:
    plateau of the bias and of ‖x − x*‖ against η (constant steps, ``setting_const``; ½ each),
    the bias and ‖x − x*‖ against k + k₀ (decreasing steps; −½ each), both only when σ²_x > 0,
    and, per setting, the bias against ‖x_k − x*‖ over every recorded (deviation, bias) pair of
    the constant-step runs with deviation in ``dx_range`` (:func:`predicted_bias_order`)."""
    rows = []
    cols = ["regime", "setting", "measured", "exponent", "se", "predicted"]
    if beta <= 0:
        return pd.DataFrame(rows, columns=cols)
    g = plateaus[(plateaus.setting == setting_const) & (plateaus.beta == beta)]
    if len(g) and g.sigma2_x.iloc[0] > ZERO:
        for name, y in (("plateau of bias vs η", g.eps_bias_plateau), ("plateau of ‖x − x*‖ vs η", np.sqrt(g.x_plateau))):
            f = log_slope(g.eta, y)
            rows.append(dict(regime="constant steps", setting=setting_const, measured=name, exponent=f.slope, se=f.slope_se,
                             predicted=0.5))
    row = decr[decr.beta == beta]
    if len(row) and row.sigma2_x.iloc[0] > ZERO:
        row = row.iloc[0]
        rows.append(dict(regime="decreasing steps", setting=setting_decr, measured="bias vs k + k0", exponent=row.eps_bias_slope,
                         se=np.nan, predicted=-0.5))
        rows.append(dict(regime="decreasing steps", setting=setting_decr, measured="‖x − x*‖ vs k + k0",
                         exponent=row.x_rms_slope, se=np.nan, predicted=-0.5))
    for s, g in curves[curves.beta == beta].groupby("setting", sort=False):
        dx, bb = np.sqrt(g.x_err2.to_numpy()), g.eps_bias.to_numpy()
        ok = (dx > dx_range[0]) & (dx < dx_range[1]) & (bb > 0)
        if ok.sum() > 10:
            f = log_slope(dx[ok], bb[ok])
            p = plateaus[(plateaus.setting == s) & (plateaus.beta == beta)].iloc[0]
            rows.append(dict(regime="constant steps", setting=s, measured="bias vs ‖x − x*‖", exponent=f.slope, se=f.slope_se,
                             predicted=predicted_bias_order(p.sigma2_x, p.sigma2_D)))
    return pd.DataFrame(rows, columns=cols)


# -- the tables the chapter shows ----------------------------------------------------------------------

def ends_of(table: pd.DataFrame, keys) -> pd.DataFrame:
    """The rows with the smallest and the largest ``eta`` of each group of ``keys`` (one row if the
    group has one step), groups in order of first appearance, sorted by ``keys`` then ``eta``."""
    keys = list(keys)
    return (table.sort_values("eta").groupby(keys, sort=False).nth([0, -1])
            .sort_values(keys + ["eta"]))


def plain_setting(setting: str) -> str:
    """A setting's name as the tables print it, with spaces: ``double interpolation``."""
    return setting.replace("_", " ")


PLAIN = {"setting": plain_setting}  # the ``formats`` of :func:`fbsgd.book.report.show` for a setting column


def constants_view(const: pd.DataFrame):
    """The displayed part of :func:`constants_table` (κ, p, ‖D*‖ and η₀ are in the CSV)."""
    return show(const, "Constants of Iutzeler et al.'s assumptions (κ, p, ‖D*‖, η₀: the CSV above)",
                columns=["setting", "beta", "mu", "L", "M", "sigma2_x", "sigma2_D"],
                rename={"sigma2_x": "σ_x²", "sigma2_D": "σ_D²"}, formats=PLAIN)


def plateau_ends_view(plateaus: pd.DataFrame):
    """The plateaus of :func:`constant_step_study` at the smallest and largest step of each
    (setting, β) (:func:`ends_of`), against the exact level and Iutzeler et al.'s bound."""
    return show(ends_of(plateaus, ["setting", "beta"]),
                "Plateaus at the smallest and largest step of each setting; η/η₀ is the step "
                "over the theorem's η₀ = μ/(4L²) (every step and column: the CSV above)",
                columns=["setting", "beta", "eta", "eta_over_eta0", "plateau", "exact_stationary", "poster_bound"],
                rename={"eta_over_eta0": "η/η₀", "exact_stationary": "exact level",
                        "poster_bound": "Iutzeler et al. bound"}, formats=PLAIN)


def slopes_view(slopes: pd.DataFrame):
    """The table of :func:`plateau_slopes`, every column."""
    return show(slopes, "Log–log slope of the plateau against η; for β = 0 the largest gap to the "
                "exact level and the largest plateau / bound ratio",
                rename={"slope_se": "s.e.", "max_rel_to_exact": "max gap to exact",
                        "max_ratio_to_bound": "max plateau / bound"}, formats=PLAIN)


def decreasing_view(decr: pd.DataFrame):
    """The displayed part of :func:`decreasing_step_study`'s table: the fitted slope against the
    bound's and the exact local slopes."""
    return show(decr, "Decreasing steps: fitted log–log slope of the mean Jacobian error against "
                "k + k₀ over the fitting window, with the local slopes of the bound's shape "
                "log²(k+k₀)/(k+k₀) and of the exact expectation (β = 0); all columns: the CSV above",
                columns=["beta", "k0", "window_start", "slope", "slope_se", "bound_local_slope", "exact_slope"],
                rename={"window_start": "window from k", "slope_se": "s.e.",
                        "bound_local_slope": "bound's slope", "exact_slope": "exact slope"})


def rate_ends_view(rates: pd.DataFrame):
    """The factors per step of :func:`interpolation_rates` at the smallest and largest step of each
    (setting, β, quantity) (:func:`ends_of`), to 6 significant figures."""
    return show(ends_of(rates, ["setting", "beta", "quantity"]),
                "Factor per step at the smallest and largest step, to 6 significant figures "
                "(every step: the CSV above)",
                columns=["setting", "beta", "quantity", "eta", "rate", "exact_rate", "bound_rate"],
                digits=6, rename={"rate": "fitted ρ̂", "exact_rate": "exact", "bound_rate": "1 − μη/2"},
                formats={**PLAIN, "beta": "{:g}", "eta": "{:.3g}"})


def error_term_view(err_fits: pd.DataFrame):
    """The table of :func:`error_term_fits`, every column."""
    return show(err_fits, "Fitted exponents of the error term and their predictions "
                "(—: no standard error for a slope read off the decreasing-step table)",
                rename={"se": "s.e."}, formats=PLAIN)
