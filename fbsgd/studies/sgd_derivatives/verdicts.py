"""The verdict rules of the chapter on derivatives of SGD: tables in, :class:`fbsgd.book.verdicts.Verdict` out.

Each ``judge_*`` function applies one rule, with its thresholds named below, to the tables of
:mod:`fbsgd.studies.sgd_derivatives.study` and records the verdict in the chapter's ledger (and returns it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.book.verdicts import Ledger, Verdict, by_name, clause, outcome_of_cases

__all__ = ["FD_TOL", "KERNEL_RTOL", "PLATEAU_SLOPE_TOL", "EXACT_RTOL", "RATE_SE", "VISIBLE_SE", "X_DROP_MAX",
           "D_DROP_MIN", "EXPONENT_TOL", "PL_SLOPE_MAX", "three_way", "beyond_theorem", "judge_unrolled_derivative",
           "judge_solution_jacobian", "judge_plateau_linear", "judge_ols_exact_plateau", "judge_ols_below_bound",
           "judge_decreasing_rate", "judge_log2_not_tight", "judge_interpolation_rate", "judge_interpolation_exact",
           "judge_simple_interpolation", "judge_ols_error_zero", "judge_error_term_orders", "judge_pl_condition_edge",
           "step_range_text", "summary_texts", "setup_values", "step_values", "summary_values"]

FD_TOL = 1e-6  # largest |SGD′ − finite differences| (and |∂θx* − finite differences|)
KERNEL_RTOL = 1e-9  # compiled kernel vs numpy reference, relative to 1 + ‖D_K − D*‖
PLATEAU_SLOPE_TOL = 0.15  # |log–log slope of the plateau against η − 1|
EXACT_RTOL = 0.1  # relative gap to the exact expectation / exact factor per step
RATE_SE = 2.0  # the decreasing-step slope may exceed the bound's local slope by this many s.e.
VISIBLE_SE = 2.0  # s.e. by which a slope must be on one side of the midpoint between −1 and the bound's slope
X_DROP_MAX = 1e-6  # simple interpolation: iterate error end/start below this (linear convergence)
D_DROP_MIN = 1e-3  # simple interpolation: Jacobian error end/start above this (a plateau)
EXPONENT_TOL = {0.5: 0.1, -0.5: 0.1, 1.0: 0.15, 2.0: 0.3, 3.0: 0.3}  # |fitted − predicted exponent|, by prediction
PL_SLOPE_MAX = -0.4  # the bias must decay at least like (k + k₀)^(−0.4)



def _set(values) -> str:
    """Numbers as a set in prose: {0.03125, 0.0625} (:g format, sorted, no Python list syntax)."""
    return "{" + ", ".join(f"{v:g}" for v in sorted(set(float(x) for x in values))) + "}"

def beyond_theorem(table: pd.DataFrame | None) -> str:
    """A sentence for the evidence: where the steps of ``table`` (column ``eta_over_eta0``, the step
    over the theorem's largest first step η₀ = μ/(4L²)) lie against that hypothesis.  Empty
    without the column."""
    if table is None or "eta_over_eta0" not in table or not len(table):
        return ""
    r = table.eta_over_eta0.to_numpy(dtype=float)
    lo, hi = float(r.min()), float(r.max())
    if hi <= 1:
        return f" Every step satisfies the theorem's hypothesis η ≤ η₀ = μ/(4L²) (η/η₀ ≤ {hi:.3g})."
    span = f"η/η₀ = {lo:.3g}" if lo == hi else f"η/η₀ from {lo:.3g} to {hi:.3g}"
    which = "every step is" if lo > 1 else f"{int((r > 1).sum())} of {r.size} steps are"
    return (f" The theorem assumes η₀ ≤ μ/(4L²); here {which} larger ({span}), so this tests the formula "
            f"beyond its stated range.")


def three_way(flags_hold, flags_fail) -> str:
    """Outcome of a claim about every case when each case holds, fails, or is undecided (neither):
    holds if all hold, fails if all fail, partial if some hold and the others fail, else unresolved."""
    h, f = np.asarray(flags_hold, bool), np.asarray(flags_fail, bool)
    if not h.size:
        return "unresolved"
    if h.all():
        return "holds"
    if f.all():
        return "fails"
    return "partial" if (h | f).all() else "unresolved"


def judge_unrolled_derivative(ledger: Ledger, fd: pd.DataFrame) -> Verdict:
    r = fd.iloc[0]
    gap_ok = r.fd_gap < FD_TOL
    kernel_ok = abs(r.kernel_error - r.reference_error) < KERNEL_RTOL * (1 + r.reference_error)
    return ledger.add(Verdict(ledger.claim("unrolled_derivative"), "holds" if gap_ok and kernel_ok else ("partial" if gap_ok or kernel_ok else "fails"),
        rule=f"max |D_K − central differences of x_K(θ)| < {FD_TOL:g}, and |kernel − reference| on ‖D_K − D*‖ < "
             f"{KERNEL_RTOL:g}·(1 + ‖D_K − D*‖) (partial: one of the two)",
        evidence=f"setting {r.setting}, β = {r.beta:g}, K = {int(r.iters)}: max |D_K − finite differences| = {r.fd_gap:.1e} "
                 f"over {int(r.d)}×{int(r.p)} entries; compiled kernel {r.kernel_error:.9f} and numpy reference "
                 f"{r.reference_error:.9f} on ‖D_K − D*‖.",
        key_number=float(r.fd_gap), key_label="max |SGD′ − finite differences|",
        threshold=f"< {FD_TOL:g}, and kernel = reference to {KERNEL_RTOL:g}"))


def judge_solution_jacobian(ledger: Ledger, fd: pd.DataFrame) -> Verdict:
    r = fd.iloc[0]
    return ledger.add(Verdict(ledger.claim("solution_jacobian"), "holds" if r.star_gap < FD_TOL else "fails",
        rule=f"max |∂θx* − central differences of x*(θ)| < {FD_TOL:g}",
        evidence=f"setting {r.setting}, β = {r.beta:g}: max |∂θx* − finite differences of x*(θ)| = {r.star_gap:.1e}.",
        key_number=float(r.star_gap), key_label="max |∂θx* − finite differences|", threshold=f"< {FD_TOL:g}"))


def judge_plateau_linear(ledger: Ledger, slopes: pd.DataFrame, fractions, iters: int, n_seeds: int,
                         plateaus: pd.DataFrame | None = None) -> Verdict:
    ok = (np.abs(slopes.slope - 1) < PLATEAU_SLOPE_TOL).to_numpy()
    return ledger.add(Verdict(ledger.claim("plateau_linear"), outcome_of_cases(ok),
        rule=f"|log–log slope of the plateau against η − 1| < {PLATEAU_SLOPE_TOL:g} for every (setting, β) with a "
             f"plateau (σ_D > 0)",
        threshold=f"within ±{PLATEAU_SLOPE_TOL:g} of 1 for every (setting, β)" if len(slopes) else "at least 1 plateau",
        evidence="fitted exponent of the plateau against η: " + "; ".join(
            f"{r.setting}, β = {r.beta:g}: {r.slope:.3f} ± {r.slope_se:.3f}" for r in slopes.itertuples())
        + f". Steps η = c/L with c ∈ {_set(fractions)}, {iters:,} iterations, {n_seeds} seeds."
        + beyond_theorem(plateaus),
        key_number=float(slopes.slope.iloc[int(np.argmax(np.abs(slopes.slope - 1)))]) if len(slopes) else 0,
        key_label="exponent farthest from 1" if len(slopes) else "plateaus fitted"))


def _ols(slopes):
    return slopes[slopes.beta == 0]


def judge_ols_exact_plateau(ledger: Ledger, slopes: pd.DataFrame) -> Verdict:
    ols = _ols(slopes)
    ok = (ols.max_rel_to_exact < EXACT_RTOL).to_numpy()
    return ledger.add(Verdict(ledger.claim("ols_exact_plateau"), outcome_of_cases(ok),
        rule=f"for β = 0, every plateau within {EXACT_RTOL:.0%} of the exact expectation over the same window, in every "
             f"setting with a plateau (unresolved without a β = 0 run)",
        evidence=("largest relative gap between the measured plateau and the exact expectation: " + ", ".join(
            f"{r.setting} {100 * r.max_rel_to_exact:.1f}%" for r in ols.itertuples()) + ".") if len(ols)
        else "no β = 0 run with a plateau in this configuration.",
        key_number=float(ols.max_rel_to_exact.max()) if len(ols) else 0,
        key_label="largest relative gap" if len(ols) else "β = 0 runs with a plateau",
        threshold=f"< {EXACT_RTOL:.0%}" if len(ols) else "at least 1"))


def judge_ols_below_bound(ledger: Ledger, slopes: pd.DataFrame, plateaus: pd.DataFrame | None = None) -> Verdict:
    ols = _ols(slopes)
    beyond = beyond_theorem(None if plateaus is None else plateaus[plateaus.beta == 0])
    ok = (ols.max_ratio_to_bound < 1).to_numpy()
    return ledger.add(Verdict(ledger.claim("ols_below_bound"), outcome_of_cases(ok),
        rule="for β = 0, every plateau / (4σ²η/μ) < 1, in every setting with a plateau (unresolved without a β = 0 run)",
        evidence=("largest plateau / bound ratio: " + ", ".join(f"{r.setting} {r.max_ratio_to_bound:.3f}" for r in ols.itertuples())
                  + " (the bound is conservative by the inverse of this factor)." + beyond) if len(ols)
        else "no β = 0 run with a plateau in this configuration.",
        key_number=float(ols.max_ratio_to_bound.max()) if len(ols) else 0,
        key_label="largest plateau / bound" if len(ols) else "β = 0 runs with a plateau",
        threshold="< 1 in every setting" if len(ols) else "at least 1"))


def judge_decreasing_rate(ledger: Ledger, decr: pd.DataFrame) -> Verdict:
    ok = (decr.slope <= decr.bound_local_slope + RATE_SE * decr.slope_se).to_numpy()
    z = (decr.slope - decr.bound_local_slope) / decr.slope_se
    ex = decr[decr.beta == 0]
    return ledger.add(Verdict(ledger.claim("decreasing_rate"), outcome_of_cases(ok),
        rule=f"fitted slope of log error against log(k + k0) ≤ the local slope of log²(k+k0)/(k+k0) over the same window "
             f"+ {RATE_SE:g} s.e., for every β",
        threshold=f"≤ {RATE_SE:g} for every β",
        evidence="fitted slope over the fitting window: " + "; ".join(
            f"β={r.beta:g} (k ≥ {r.window_start:,.0f}, k0 = {r.k0:,.0f}): {r.slope:.3f} ± {r.slope_se:.3f} (bound's local "
            f"slope {r.bound_local_slope:.3f}; the iterates: {r.x_slope:.3f})" for r in decr.itertuples())
        + (f"; for β = 0 the mean over seeds is within {100 * ex.max_rel_to_exact.iloc[0]:.0f}% of the exact expectation."
           if len(ex) else "."),
        key_number=float(z.max()), key_label="largest (slope − bound's local slope) / s.e."))


def _se_caveat(decr: pd.DataFrame) -> str:
    """For β = 0: how many of its s.e. the measured slope lies from the exact expectation's slope
    over the same window, and why that s.e. understates the uncertainty."""
    ex = decr[decr.beta == 0].dropna(subset=["exact_slope"])
    if not len(ex):
        return ""
    r = ex.iloc[0]
    z = abs(r.slope - r.exact_slope) / r.slope_se
    return (f" (for β = 0 the measured slope is {z:.1f} s.e. from the exact one: the s.e. comes from the "
            f"residuals of the fit to the mean curve, whose checkpoints are strongly correlated, so it "
            f"understates the uncertainty of the slope)")


def judge_log2_not_tight(ledger: Ledger, decr: pd.DataFrame) -> Verdict:
    mid = -1 + 0.5 * (decr.bound_local_slope + 1)
    closer_to_1k = (decr.slope < mid - VISIBLE_SE * decr.slope_se).to_numpy()
    closer_to_bound = (decr.slope > mid + VISIBLE_SE * decr.slope_se).to_numpy()
    z = (decr.slope - mid) / decr.slope_se
    ex = decr.exact_slope.dropna()
    return ledger.add(Verdict(ledger.claim("log2_not_tight"), three_way(closer_to_1k, closer_to_bound),
        rule=f"per β, with m the midpoint between −1 (a clean 1/k) and the local slope of log²k/k: slope < m − {VISIBLE_SE:g} s.e. "
             f"holds (closer to 1/k), slope > m + {VISIBLE_SE:g} s.e. fails (the log² shows), otherwise undecided; "
             f"over all β: holds/fails if every β does, partial if they split, unresolved if any β is undecided",
        evidence="measured slopes " + ", ".join(f"β={r.beta:g}: {r.slope:.3f} ± {r.slope_se:.3f} (midpoint {m:.3f})"
                                                for r, m in zip(decr.itertuples(), mid))
        + "; bound's local slope " + ", ".join(f"{s:.3f}" for s in decr.bound_local_slope)
        + (("; the exact expectation for β = 0 has slope " + ", ".join(f"{s:.3f}" for s in ex)) if len(ex) else "")
        + _se_caveat(decr)
        + ". An upper bound need not be tight: whichever way this goes, the rate bound itself is judged above.",
        key_number=float(z.max()), key_label="largest (slope − midpoint) / s.e.",
        threshold=f"< −{VISIBLE_SE:g} for every β (> +{VISIBLE_SE:g}: the log² shows)"))


def judge_interpolation_rate(ledger: Ledger, rates: pd.DataFrame) -> Verdict:
    dbl = rates[(rates.setting == "double_interpolation") & (rates.quantity == "Jacobian")]
    ok = (np.log(dbl.rate) <= np.log(dbl.bound_rate)).to_numpy()
    ratio = np.log(dbl.rate) / np.log(dbl.bound_rate)
    return ledger.add(Verdict(ledger.claim("interpolation_rate"), outcome_of_cases(ok),
        rule="double interpolation, every (β, η): fitted factor per step of the mean Jacobian error ≤ 1 − μη/2 "
             "(unresolved without a run)",
        threshold="≥ 1 at every (β, η)" if len(dbl) else "at least 1 run",
        evidence=("fitted factor per step vs bound: " + "; ".join(
            f"β = {r.beta:g}, η = {r.eta:.4g}: {r.rate:.6f} vs {r.bound_rate:.6f}" for r in dbl.itertuples())
            + f". The measured decay per step is {np.median(ratio):.1f}× the bound's (median). The theorem states "
              "O(k(1 − 1/(8κ²))^k) at the constant step η = η₀ = μ/(4L²), which is (1 − μη₀/2)^k; the factor "
              "1 − μη/2 at other steps comes from the poster's auxiliary table on inexact SGD."
            + beyond_theorem(dbl)) if len(dbl)
        else "no double-interpolation run reached the fitting range.",
        key_number=float(np.min(ratio)) if len(dbl) else 0,
        key_label="smallest measured decay per step / the bound's" if len(dbl) else "double-interpolation runs"))


def judge_interpolation_exact(ledger: Ledger, rates: pd.DataFrame) -> Verdict:
    d0 = rates[(rates.setting == "double_interpolation") & (rates.quantity == "Jacobian") & (rates.beta == 0)]
    rel = np.abs(np.log(d0.rate) / np.log(d0.exact_rate) - 1).to_numpy()
    return ledger.add(Verdict(ledger.claim("interpolation_exact"), outcome_of_cases(rel < EXACT_RTOL),
        rule=f"double interpolation, β = 0, every η: |log ρ̂ / log ρ_exact − 1| < {EXACT_RTOL:g} (unresolved without a run)",
        evidence=("fitted vs exact factor per step: " + "; ".join(
            f"η={r.eta:.4g}: {r.rate:.5f} vs {r.exact_rate:.5f}" for r in d0.itertuples())
            + f"; largest relative gap of the decay per step {100 * rel.max():.1f}%.") if len(d0)
        else "no β = 0 double-interpolation run in this configuration.",
        key_number=float(rel.max()) if len(d0) else 0, key_label="largest relative gap" if len(d0) else "β = 0 runs",
        threshold=f"< {EXACT_RTOL:g} at every η" if len(d0) else "at least 1"))


def judge_simple_interpolation(ledger: Ledger, rates: pd.DataFrame, drops: pd.DataFrame,
                               plateaus: pd.DataFrame) -> Verdict:
    si = plateaus[plateaus.setting == "simple_interpolation"]
    si_rates = rates[(rates.setting == "simple_interpolation") & (rates.quantity == "iterate")]
    rule = (f"every simple-interpolation run: iterates converge linearly (a fitted factor < 1 and error end/start < "
            f"{X_DROP_MAX:g}) and the Jacobian error end/start > {D_DROP_MIN:g} (partial: one of the two)")
    if not len(si):
        return ledger.add(Verdict(ledger.claim("simple_interpolation"), "unresolved", rule=rule, evidence="no simple-interpolation run.",
                                  key_number=0, key_label="simple-interpolation runs", threshold="at least 1"))
    x_ok = bool(len(si_rates) == len(si) and (si_rates.rate < 1).all() and (drops.x_drop < X_DROP_MAX).all())
    D_ok = bool((drops.D_drop > D_DROP_MIN).all())
    return ledger.add(Verdict(ledger.claim("simple_interpolation"), "holds" if x_ok and D_ok else ("partial" if x_ok or D_ok else "fails"), rule=rule,
        evidence=f"iterate error at the end / at the start: at most {drops.x_drop.max():.1e} (fitted factors per step "
                 + ", ".join(f"{r:.4f}" for r in si_rates.rate) + f"); Jacobian error at the end / at the start: at least "
                 f"{drops.D_drop.min():.1e}, with plateaus from {si.plateau.min():.3g} to {si.plateau.max():.3g}. "
                 "The poster lists this setting without stating its outcome: the plateau is the book's inference.",
        key_number=float(drops.D_drop.min()), key_label="smallest Jacobian error end/start",
        threshold=f"> {D_DROP_MIN:g}, with the iterate error end/start < {X_DROP_MAX:g}"))


def judge_ols_error_zero(ledger: Ledger, plateaus: pd.DataFrame, decr: pd.DataFrame) -> Verdict:
    e = np.r_[plateaus[plateaus.beta == 0].e_max, decr[decr.beta == 0].e_max]
    rule = "largest ‖e_(k+1)‖ over every step of every β = 0 run = 0 exactly (unresolved without a β = 0 run)"
    if not e.size:
        return ledger.add(Verdict(ledger.claim("ols_error_zero"), "unresolved", rule=rule, evidence="no β = 0 run in this configuration.",
                                  key_number=0, key_label="β = 0 runs", threshold="at least 1"))
    return ledger.add(Verdict(ledger.claim("ols_error_zero"), "holds" if float(e.max()) == 0.0 else "fails", rule=rule,
                        evidence=f"largest ‖e_(k+1)‖ over every step of {e.size} β = 0 configurations: {float(e.max())!r}.",
                        key_number=float(e.max()), key_label="largest ‖e‖ (β = 0)", threshold="= 0 exactly"))


def judge_error_term_orders(ledger: Ledger, fits: pd.DataFrame, plateaus: pd.DataFrame, beta: float) -> Verdict:
    ok = np.array([abs(r.exponent - r.predicted) <= EXPONENT_TOL[r.predicted] for r in fits.itertuples()], bool)
    worst = max((abs(r.exponent - r.predicted) / EXPONENT_TOL[r.predicted] for r in fits.itertuples()), default=0.0)
    tol = ", ".join(f"{k:g}: ±{v:g}" for k, v in EXPONENT_TOL.items())
    e = plateaus[plateaus.beta == beta].e_max
    return ledger.add(Verdict(ledger.claim("error_term_orders"), outcome_of_cases(ok),
        rule=f"every fitted exponent within its tolerance of the prediction (prediction: tolerance — {tol}) "
             f"(unresolved without a β > 0 run)",
        threshold="≤ 1 for every fit" if len(fits) else "at least 1 fit",
        evidence=("; ".join(f"{r.regime}, {r.setting}: {r.measured} exponent {r.exponent:.3f} (predicted {r.predicted:g})"
                            for r in fits.itertuples())
                  + f". The largest ‖e_(k+1)‖ met with β = {beta:g}: {e.max():.3g}.") if len(fits)
        else "no β > 0 run in this configuration.",
        key_number=float(worst), key_label="largest |exponent − prediction| / its tolerance" if len(fits) else "fits"))


def judge_pl_condition_edge(ledger: Ledger, decr: pd.DataFrame, beta: float) -> Verdict:
    row = decr[decr.beta == beta]
    rule = f"fitted exponent of the bias against k + k0 ≤ {PL_SLOPE_MAX:g} (unresolved without a β > 0 run)"
    if beta <= 0 or not len(row):
        return ledger.add(Verdict(ledger.claim("pl_condition_edge"), "unresolved", rule=rule, evidence="no β > 0 run in this configuration.",
                                  key_number=0, key_label="β > 0 runs", threshold="at least 1"))
    r = row.iloc[0]
    return ledger.add(Verdict(ledger.claim("pl_condition_edge"), "holds" if r.eps_bias_slope <= PL_SLOPE_MAX else "fails", rule=rule,
        evidence=f"measured exponent of the bias against k + k0: {r.eps_bias_slope:.3f} (the condition allows −0.5 up to a "
                 f"logarithm); the Jacobian error itself decays with slope {r.slope:.3f}.",
        key_number=float(r.eps_bias_slope), key_label="exponent of the bias", threshold=f"≤ {PL_SLOPE_MAX:g}"))


# -- the chapter's prose, computed from the tables and the verdicts -----------------------------------

def step_range_text(table: pd.DataFrame) -> str:
    """Where the constant steps (column ``eta_over_eta0``) lie against the theorem's η₀, as words."""
    r = table.eta_over_eta0.to_numpy(dtype=float) if "eta_over_eta0" in table else np.array([])
    if not r.size:
        return "no step was run"
    big = int((r > 1).sum())
    if big == r.size:
        return "every step is larger than that limit, so these results test the theorem beyond its stated range"
    if big == 0:
        return "every step is within that limit, inside the theorem's stated range"
    return f"{big} of {r.size} steps are larger than that limit, so those test the theorem beyond its stated range"


def summary_texts(ledger: Ledger) -> dict:
    """The closing section's measured sentences (glue names without the ``sgdd-sum-`` prefix), each
    chosen by the outcome of the verdict it restates (:func:`fbsgd.book.verdicts.clause`)."""
    v = by_name(ledger)
    return {
        "plateau": clause(v.get("plateau_linear"),
                          "the Jacobian error settles at a level proportional to η in every setting with non-zero "
                          "derivative residuals and every β (slope farthest from 1: {k:.3g})",
                          "the plateau is not proportional to η (slope farthest from 1: {k:.3g})"),
        "exact": clause(v.get("ols_exact_plateau"),
                        "for least squares the level is the exact stationary value of the moment recursion (largest "
                        "relative gap {k:.2g})",
                        "for least squares the level departs from the exact stationary value (largest relative gap "
                        "{k:.2g})"),
        "bound": clause(v.get("ols_below_bound"),
                        "it lies below Iutzeler et al.'s bound (largest plateau / bound {k:.2g})",
                        "it exceeds Iutzeler et al.'s bound (largest plateau / bound {k:.2g})"),
        "decreasing": clause(v.get("decreasing_rate"),
                             "the error decays at least as fast as Iutzeler et al.'s log²k/k",
                             "the error decays more slowly than Iutzeler et al.'s log²k/k"),
        "log2": clause(v.get("log2_not_tight"),
                       "the fitted decay is closer to a clean 1/k than to the log²k/k shape, so the extra logarithm "
                       "does not show",
                       "the fitted decay is closer to the log²k/k shape than to a clean 1/k"),
        "interpolation": clause(v.get("interpolation_rate"),
                                "linear convergence, at least as fast as (1 − μη/2)^k at every step (smallest measured "
                                "decay / bound's decay {k:.3g})",
                                "no linear convergence at the rate (1 − μη/2)^k"),
        "interpolation-exact": clause(v.get("interpolation_exact"),
                                      "for least squares the factor per step is the exact spectral radius of the "
                                      "second-moment map (largest relative gap {k:.2g})",
                                      "for least squares the factor per step departs from the spectral radius of the "
                                      "second-moment map (largest relative gap {k:.2g})"),
        "simple": clause(v.get("simple_interpolation"),
                         "the iterates converge linearly there and the Jacobian does not",
                         "the Jacobian does not stall there as the book's reading expects"),
        "ols-zero": clause(v.get("ols_error_zero"),
                           "the error term is zero for Iutzeler et al.'s least-squares problems, so there SGD′ is "
                           "exactly SGD on (Opt′)",
                           "the error term does not vanish for least squares (largest ‖e‖ {k:.2g})"),
        "orders": clause(v.get("error_term_orders"),
                         "for the non-quadratic losses every fitted exponent of the error term is its predicted one "
                         "(largest gap {k:.2g} of its tolerance)",
                         "for the non-quadratic losses the fitted exponents of the error term miss their predictions "
                         "(largest gap {k:.2g} times its tolerance)",
                         partial="for the non-quadratic losses the fitted exponents of the error term match their "
                                 "predictions only in part (largest gap {k:.2g} times its tolerance; the cases are in "
                                 "the verdict)"),
        "pl": clause(v.get("pl_condition_edge"),
                     "with decreasing steps the bias meets the order of the PL condition of Corollary 1, at its edge "
                     "(exponent {k:.2f})",
                     "with decreasing steps the bias decays too slowly for the PL condition of Corollary 1 (exponent "
                     "{k:.2f})"),
    }


def setup_values(n_seeds: int, fd_iters: int, const_iters: int, step_fractions) -> dict:
    """The run's set-up as the prose glues it (glue name → value): seeds per configuration, length
    of the finite-difference check, constant-step iterations and the smallest and largest c of η = c/L."""
    return {"sgdd-n-seeds": n_seeds, "sgdd-fd-iters": fd_iters, "sgdd-const-iters": const_iters,
            "sgdd-c-min": min(step_fractions), "sgdd-c-max": max(step_fractions)}


def step_values(plateaus: pd.DataFrame) -> dict:
    """Where the constant steps lie against the theorem's η₀ (glue name → value): η₀ of least
    squares (β = 0; of the first problem if no β is 0), the smallest and largest η/η₀, and
    :func:`step_range_text`."""
    ols = plateaus[plateaus.beta == 0] if (plateaus.beta == 0).any() else plateaus
    return {"sgdd-eta0": float(ols.eta0_theorem.iloc[0]),
            "sgdd-ratio-min": float(plateaus.eta_over_eta0.min()),
            "sgdd-ratio-max": float(plateaus.eta_over_eta0.max()),
            "sgdd-range-text": step_range_text(plateaus)}


def summary_values(ledger: Ledger, plateaus: pd.DataFrame, n_seeds: int, fd_iters: int, const_iters: int,
                   step_fractions) -> dict:
    """Every number and sentence the chapter's prose glues (glue name → value), figures aside:
    :func:`setup_values`, :func:`step_values` of the constant-step table ``plateaus``, and the
    closing section's sentences :func:`summary_texts` (as ``sgdd-sum-<key>``) from the ledger."""
    return {**setup_values(n_seeds, fd_iters, const_iters, step_fractions), **step_values(plateaus),
            **{f"sgdd-sum-{key}": text for key, text in summary_texts(ledger).items()}}
