"""Fits, the summary table and the verdicts of the correctors chapter (Section 8 of
{cite}`kong2026perturbed`: can correctors restore the error-free rates?).

Per setting (place × perturbation × corrector) of :mod:`fbsgd.studies.correctors.study`:

* the **small-step slope**: log-log slope of the stable gradient norm S against γ over the
  :data:`fbsgd.studies.section7.design.SLOPE_WINDOW` smallest step sizes, all seeds (as for Figure 4);
* the **floor** S(γ_min) (geometric mean over seeds) and the **floor ratio**
  S_corrected(γ_min) / S_plain(γ_min) against the uncorrected setting;
* the **rate exponent** p of (1/T) Σ ‖∇f(w_t)‖² ≈ A·T^p under γ = c/√T
  (:func:`fbsgd.studies.rates.statistics.fit_power_law`; error-free SGD: about −1/2).

:func:`classify` turns slope, floor ratio and floor over SGD into one of "restores the rate",
"lowers the floor", "no effect", "raises the floor", "diverges", "no floor to remove" or one of the
two undecided effects, "not yet settled" and "between the thresholds" (thresholds: :data:`LOWER_RATIO`
here, DECREASE_SLOPE, FLOOR_OVER_SGD, RECOVERY_FACTOR of :mod:`fbsgd.studies.section7.verdicts`).

Whether a curve leaves a floor is decided, for the plain and for the corrected settings alike, by
the rule every chapter uses (:func:`fbsgd.studies.section7.verdicts.floor_found`: True, False or None,
undecided), with the Section 7 chapters' drift test (:func:`fbsgd.studies.section7.verdicts.is_settled`
of the runs at γ_min, the drift being :func:`fbsgd.metrics.drift_ratio`: last quarter of the run over the
quarter before).  A flat curve that is not settled, or a comparison with a standard SGD that is not
settled, is undecided, never decided (:func:`outcome_of_flags`).  The verdicts that decide the floor of a
plain mechanism (rounding, Top-K, Rand-K, the paper's uniform noise) record it as a fact
(``finds``: ``fact("floor", mechanism_label, place, SETTING_S7)``) that the real-mechanisms chapter may
find too; the claims ledger refuses two chapters finding one fact differently.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import expit

from fbsgd.studies.section7.design import SLOPE_WINDOW
from fbsgd.metrics import drift_ratio, fit_line
from fbsgd.studies.rates.statistics import fit_power_law
from fbsgd.studies.section7.verdicts import (AGREEMENT_BAND, DECREASE_SLOPE, FLOOR_OVER_SGD, RECOVERY_FACTOR, SETTING_S7,
                                             floor_found, geometric_mean, in_band, is_settled)
from fbsgd.book.verdicts import Verdict, fact, outcome_of_cases
from fbsgd.theory.small_step_limits import small_step_limit
from fbsgd.studies.correctors.study import A3_VARIANTS, run_config
from fbsgd.book.report import show

__all__ = ["summary_values", "LOWER_RATIO", "SETTING", "COSTS", "num", "factor", "relative_text", "drift_ratio", "is_settled", "floor_found", "outcome_of_flags", "stable_slopes", "rate_exponents", "classify", "summary", "floor_finds",
           "expected_message_limit", "debias_predictions", "compression_predictions", "compression_prediction_cases",
           "compression_prediction_verdict", "PREDICT_DRAWS", "PREDICT_FLOW_STEPS", "corrector_verdict", "debias_verdict", "prediction_verdict", "a3_verdict",
           "ANSWERS", "names_text", "perturbation_words", "count_text", "effect_sentence", "plain_rates_text",
           "sgd_settled_text", "floor_text", "residual_text", "debias_remainder_text", "a3_sentence", "prose",
           "compression_verdicts", "a3_verdicts", "debias_verdicts", "a3_fates", "a3_fate_table", "debias_table",
           "SUMMARY_COLUMNS", "summary_shown", "summary_table"]

LOWER_RATIO = 0.5  # floor ratio below this: the corrector lowers the floor; above 1/LOWER_RATIO: raises it
SETTING = ["part", "place", "perturbation", "corrector"]
UNSETTLED = "not yet settled"
BETWEEN = "between the thresholds"  # flat, settled, S(γ_min) between RECOVERY_FACTOR and FLOOR_OVER_SGD × SGD's: undecided

# what each corrector costs per message of n entries (one number per sample here: n = M)
COSTS = {
    "none": ("none", "none"),
    "plain": ("none", "the compressor"),
    "error feedback": ("n floats at the sender (the residual e)", "the compressor + 2 additions"),
    "delta": ("n floats at the sender and at the receiver (the copy r)", "the compressor + 2 additions"),
    "stochastic rounding": ("none", "one uniform draw per entry"),
    "second-order": ("none", "about 5 flops per entry, at the receiver"),
    "exact": ("none", "a logit and a sum of about 28/(2a) terms per entry, at the receiver"),
}

_RULE_CLASSES = (f"a curve leaves a floor (the rule of every chapter, floor_found) if its slope ≤ {DECREASE_SLOPE}, "
                 f"its S(γ_min) > {FLOOR_OVER_SGD:g} × standard SGD's and its runs and standard SGD's at γ_min are "
                 f"settled; none if its slope > {DECREASE_SLOPE} or S(γ_min) ≤ {RECOVERY_FACTOR:g} × standard SGD's; "
                 f"otherwise undecided; a plain perturbation with a floor is a case, one whose floor is undecided an "
                 f"undecided case; the corrected curve: 'restores the rate' if it leaves no floor; 'diverges' if a "
                 f"run at the smallest step sizes diverged; '{UNSETTLED}' (undecided) if flat and it or standard SGD "
                 f"is not settled; '{BETWEEN}' (undecided) if flat, settled and S(γ_min) between "
                 f"{RECOVERY_FACTOR:g} and {FLOOR_OVER_SGD:g} × SGD's; if it leaves a floor: 'lowers the floor' "
                 f"(floor ratio < {LOWER_RATIO:g}), 'raises the floor' (ratio > {1 / LOWER_RATIO:g}), 'no effect' "
                 f"(otherwise); settled: the mean EWMA over a run's last quarter / that over the quarter before lies "
                 f"in {AGREEMENT_BAND[0]:g}–{AGREEMENT_BAND[1]:g} for every run at γ_min (is_settled); slope of log S "
                 f"on log γ over the {SLOPE_WINDOW} smallest γ, floor ratio = S_corrected / S_plain at the smallest "
                 f"γ (geometric means over seeds)")


def num(x, spec: str = ".3g", missing: str = "—") -> str:
    """``x`` formatted with ``spec``; ``missing`` ("—", or "diverged") when it is NaN, None or infinite."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return missing
    if not np.isfinite(x):
        return missing
    return format(x, spec).replace("-", "−")


def factor(x) -> str:
    """A factor in prose: three significant digits, plain notation ("630×", "1.05×", "0.0123×"), "—" if not finite."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if not np.isfinite(x):
        return "—"
    r = float(f"{x:.3g}")
    return (f"{r:,.0f}" if abs(r) >= 100 else f"{r:.3g}") + "×"


def relative_text(ratio, what: str) -> str:
    """"unchanged from <what> (ratio 1.00)" when ``ratio`` lies in AGREEMENT_BAND, else "<ratio>× <what>"."""
    if np.isfinite(ratio) and bool(in_band(np.array([ratio]))[0]):
        return f"unchanged from {what} (ratio {ratio:.3g})"
    return f"{factor(ratio)} {what}"


def outcome_of_flags(flags) -> str:
    """Cases with True (met), False (not met) or None (undecided): partial if some decided case is
    met and another is not; otherwise unresolved if any case is undecided (or there is none);
    otherwise holds (all met) or fails (none met)."""
    flags = list(flags)
    decided = [bool(f) for f in flags if f is not None]
    if any(decided) and not all(decided):
        return "partial"
    if not flags or len(decided) < len(flags):
        return "unresolved"
    return outcome_of_cases(decided)


def stable_slopes(scan: pd.DataFrame, n_smallest: int = SLOPE_WINDOW) -> pd.DataFrame:
    """Per setting: slope (± se) of log S on log γ over the ``n_smallest`` step sizes (all seeds,
    diverged runs excluded), the geometric mean of S at the smallest γ, the diverged runs there, and
    whether the runs at the smallest γ have settled (:func:`is_settled` of their ``drift``; True
    when the scan has no ``drift`` column), and the setting's ``mechanism`` label ("" if none)."""
    rows = []
    for key, g in scan.groupby(SETTING, sort=False):
        gam = np.sort(g.gamma.unique())[:n_smallest]
        win = g[g.gamma.isin(gam)]
        ok = win[~win.diverged]
        fit = fit_line(np.log(ok.gamma), np.log(ok.stable_grad_norm)) if ok.gamma.nunique() >= 2 else None
        rows.append({**dict(zip(SETTING, key)), "mechanism": str(g.mechanism.iloc[0]) if "mechanism" in g else "",
                     "slope": fit.slope if fit else np.nan,
                     "slope_se": fit.slope_se if fit else np.nan, "gamma_min": float(gam.min()),
                     "floor": geometric_mean(win[win.gamma == gam.min()].stable_grad_norm),
                     "diverged_runs": int(win.diverged.sum()), "runs": len(win),
                     "settled": is_settled(ok[ok.gamma == gam.min()].drift) if "drift" in ok else True})
    return pd.DataFrame(rows)


def rate_exponents(rates: pd.DataFrame) -> pd.DataFrame:
    """Per setting: exponent p (± jackknife se over seeds) of (1/T) Σ ‖∇f‖² ≈ A·T^p (NaN if < 2 horizons finite)."""
    rows = []
    for key, g in rates.groupby(SETTING, sort=False):
        try:
            f = fit_power_law(g["T"], g.mean_sq_grad_norm, g.seed)
            p, se = f.exponent, f.se
        except ValueError:
            p = se = np.nan
        rows.append({**dict(zip(SETTING, key)), "rate_exponent": p, "rate_se": se})
    return pd.DataFrame(rows)


def classify(slope: float, ratio: float, over_sgd: float, plain_has_floor, diverged: bool,
             settled: bool = True) -> str:
    """What a corrector does, from its small-step slope, its floor ratio to the plain setting,
    its floor relative to standard SGD, whether the plain setting has a floor, and whether the
    corrected runs and standard SGD have settled at γ_min: the corrected curve's floor is decided by
    :func:`fbsgd.studies.section7.verdicts.floor_found`, as the plain one's."""
    if diverged or not np.isfinite(slope):
        return "diverges"
    found = floor_found(slope, over_sgd, settled)
    if found is False:
        return "restores the rate" if plain_has_floor is not False else "no floor to remove"
    if found is None:
        return UNSETTLED if not settled else BETWEEN
    if ratio < LOWER_RATIO:
        return "lowers the floor"
    if ratio > 1 / LOWER_RATIO:
        return "raises the floor"
    return "no effect"


def summary(slopes: pd.DataFrame, rates: pd.DataFrame | None = None, predicted: dict | None = None) -> pd.DataFrame:
    """The chapter's table: one row per setting with floor (measured, predicted), floor ratio to the
    plain setting and to standard SGD, slope, rate exponent, effect (:func:`classify`) and costs.
    ``predicted`` maps (place, perturbation, corrector) to a γ → 0 floor (missing: NaN)."""
    t = slopes.copy()
    base = t[t.part == "baseline"]
    sgd_floor = float(base.floor.iloc[0]) if len(base) else np.nan
    sgd_settled = bool(base.settled.iloc[0]) if len(base) else True
    plain = t[t.corrector == "plain"].set_index(["place", "perturbation"])
    ratios, effects = [], []
    for r in t.itertuples():
        if r.corrector in ("plain", "none") or (r.place, r.perturbation) not in plain.index:
            ratios.append(np.nan)
            effects.append("—")
            continue
        p = plain.loc[(r.place, r.perturbation)]
        ratio = r.floor / p.floor if p.floor > 0 else np.nan
        ratios.append(ratio)
        effects.append(classify(r.slope, ratio, r.floor / sgd_floor,
                                floor_found(p.slope, p.floor / sgd_floor, bool(p.settled) and sgd_settled),
                                r.diverged_runs > 0, bool(r.settled) and sgd_settled))
    t["floor_ratio"] = ratios
    t["floor_over_sgd"] = t.floor / sgd_floor
    # every curve's floor by the shared rule (None: undecided; standard SGD's own row: none)
    t["has_floor"] = pd.Series([floor_found(r.slope, r.floor_over_sgd, bool(r.settled) and sgd_settled)
                                if r.part != "baseline" else None for r in t.itertuples()], index=t.index, dtype=object)
    t["effect"] = effects
    predicted = predicted or {}
    t["predicted_floor"] = [predicted.get((r.place, r.perturbation, r.corrector), np.nan) for r in t.itertuples()]
    if rates is not None:
        t = t.merge(rate_exponents(rates), on=SETTING, how="left")
    t["extra_memory"] = [COSTS[c][0] for c in t.corrector]
    t["extra_work"] = [COSTS[c][1] for c in t.corrector]
    return t


# -- the γ → 0 prediction for a de-biased message ---------------------------------------------

def expected_message_limit(problem, a: float, message=None, nodes: int = 64) -> dict:
    """γ → 0 limit of the stable gradient norm with forward noise δ ~ U(−a, a) and the backward
    message g(σ(z + δ)) (``message`` = g, None for the plain σ(z̃)).

    E g(σ(z + δ)) is computed by Gauss–Legendre quadrature on (−a, a); the limit point w∞ is the
    zero of the averaged direction D(w) = −(1/M) Σ_l a_l E g(σ(z_l + δ)) + ρ∇R(w) (z = −a_lᵀw), as in
    :mod:`fbsgd.theory.small_step_limits`; returns dict(w, plateau = ‖∇f(w∞)‖, residual = ‖D(w∞)‖)."""
    g = message or (lambda v: v)
    x, wts = np.polynomial.legendre.leggauss(nodes)
    A = problem.signed_features

    def D(w):
        z = -A @ w
        m = sum(wi / 2 * g(expit(z + a * xi)) for xi, wi in zip(x, wts))
        return -(A.T @ m) / problem.M + problem.rho * problem.regularizer.gradient(w)

    sol = optimize.root(D, problem.minimize(), method="hybr", tol=1e-14)
    return dict(w=sol.x, plateau=float(np.linalg.norm(problem.gradient(sol.x))),
                residual=float(np.linalg.norm(D(sol.x))))


# -- verdicts ------------------------------------------------------------------------------------

def _case_text(rows) -> str:
    def settled(r):
        return "" if r.settled or r.effect == "diverges" else ", not settled at γ_min"

    def undecided(r):  # why a plain floor is undecided
        if r.plain_floor is not None:
            return ""
        return " (plain not settled)" if not r.plain_settled else " (plain floor undecided)"

    def plain(r):
        return f"plain: slope {num(r.plain_slope, '.2f')}, S(γ_min) {num(r.plain_over_sgd)} × SGD's{undecided(r)}"

    def one(r):
        if r.effect == "diverges":
            return f"{r.perturbation} ({r.place}): diverges ({plain(r)})"
        return (f"{r.perturbation} ({r.place}): {r.effect} (slope {num(r.slope, '.2f')} vs plain "
                f"{num(r.plain_slope, '.2f')}{undecided(r)}; "
                f"S(γ_min) {num(r.floor_over_sgd)} × SGD's vs plain {num(r.plain_over_sgd)} ×; floor ratio "
                f"{num(r.floor_ratio, '.2g')}{settled(r)})")
    return "; ".join(one(r) for r in rows.itertuples())


def _tri(x):
    """True / False / None (undecided; pandas may have stored None as NaN)."""
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else bool(x)


def _flag(effect: str, plain_floor):
    """A case's flag: None (undecided) if the plain floor or the corrected curve's is undecided."""
    if plain_floor is None or effect in (UNSETTLED, BETWEEN):
        return None
    return effect == "restores the rate"


def floor_finds(rows: pd.DataFrame) -> dict:
    """The facts ``fact("floor", mechanism, place, SETTING_S7)`` of every row of the summary table with a
    plain mechanism (``mechanism`` not empty) whose floor is decided (``has_floor`` True or False)."""
    out = {}
    for r in rows.itertuples():
        found = _tri(getattr(r, "has_floor", None))
        if getattr(r, "mechanism", "") and found is not None:
            out[fact("floor", r.mechanism, r.place, SETTING_S7)] = found
    return out


def _finds_text(finds: dict) -> str:
    """" Floors found: float8_e4m3fn nearest (forward) yes; …" (empty without facts)."""
    if not finds:
        return ""
    parts = [f"{k.split(' | ')[1]} ({k.split(' | ')[2]}) {'yes' if v else 'no'}" for k, v in finds.items()]
    return " Floors found (plain mechanisms): " + "; ".join(parts) + "."


def corrector_verdict(claim, name: str, table: pd.DataFrame, place, corrector: str) -> Verdict:
    """Does ``corrector`` restore the rate at ``place`` ("forward", "backward" or None: both)?
    Cases: the perturbations that leave a floor when plain (:func:`has_floor` True) or may leave one
    (None: flat and above SGD but not settled, an undecided case); a decided case holds when its
    effect (:func:`classify`) is 'restores the rate'; the outcome is :func:`outcome_of_flags`."""
    plain = table[table.corrector == "plain"].set_index(["place", "perturbation"])
    rows = table[((table.place == place) if place else table.place.isin(["forward", "backward"]))
                 & (table.corrector == corrector)].copy()
    keys = list(zip(rows.place, rows.perturbation))
    rows["plain_slope"] = [plain.slope.get(k, np.nan) for k in keys]
    rows["plain_over_sgd"] = [plain.floor_over_sgd.get(k, np.nan) for k in keys]
    rows["plain_floor"] = pd.Series([_tri(plain.has_floor.get(k, False)) for k in keys], index=rows.index, dtype=object)
    rows["plain_settled"] = [bool(plain.settled.get(k, True)) and _sgd_settled(table) for k in keys]
    cases = rows[[f is not False for f in rows.plain_floor]]
    # a compressor that converged without a floor when plain and diverges with the corrector: the corrector broke it
    breaks = rows[[f is False and e == "diverges" for f, e in zip(rows.plain_floor, rows.effect)]]
    flags = [_flag(e, f) for e, f in zip(cases.effect, cases.plain_floor)] + [False] * len(breaks)
    others = rows[~rows.index.isin(cases.index) & ~rows.index.isin(breaks.index)]
    scope = table[(table.place.isin([place] if place else ["forward", "backward"]))
                  & table.corrector.isin(["plain", corrector])]
    finds = floor_finds(scope)
    place = place or "forward and backward"
    extra = (f" Failed cases, because the corrector makes diverge what converged without a floor when plain: "
             f"{_case_text(breaks)}." if len(breaks) else "")
    extra += (f" Not counted (no floor to remove when plain): {_case_text(others)}."
              if len(others) else "")
    decided = [f for f in flags if f is not None]
    return Verdict(
        claim(name), outcome_of_flags(flags),
        rule=f"cases: the perturbations of the {place} message that leave a floor when plain, and those that converge "
             f"without one when plain but diverge with the corrector (a failed case: it breaks what worked); "
             f"holds if every case is 'restores the rate', fails if none is, partial if some are and others are "
             f"decided otherwise; unresolved if there is no case, or if the decided cases agree but some case is "
             f"undecided (its corrected curve is '{UNSETTLED}' or '{BETWEEN}', or its plain floor is undecided); "
             f"{_RULE_CLASSES}",
        evidence=(f"{place} message, {corrector}: {_case_text(cases)}." if len(cases) else
                  f"{place} message: no perturbation leaves a floor when plain.") + extra + _finds_text(finds),
        key_number=(sum(decided) / len(decided)) if decided else None,
        key_label=f"share of the decided cases restored with {corrector} ({place})", finds=finds)


def _sgd_settled(table: pd.DataFrame) -> bool:
    """Whether standard SGD's runs at γ_min have settled (True when the table has no baseline row)."""
    base = table[table.part == "baseline"] if "part" in table else table.iloc[:0]
    return bool(base.settled.iloc[0]) if len(base) and "settled" in base else True


def debias_verdict(claim, name: str, table: pd.DataFrame, corrector: str) -> Verdict:
    """Does the de-biasing ``corrector`` remove the floor of zero-mean uniform forward noise?
    A case (σ_f level) holds when its effect is 'restores the rate'.  The evidence adds the
    corrector's predicted γ → 0 floor next to standard SGD's S(γ_min): a predicted residual below
    that level cannot show in the scan."""
    v = corrector_verdict(claim, name, table[table.part.isin(["debias", "baseline"])], "forward", corrector)
    rows = table[(table.part == "debias") & (table.corrector == corrector)]
    if not len(rows) or "predicted_floor" not in rows:
        return v
    sgd = rows.floor / rows.floor_over_sgd
    note = "; ".join(f"{r.perturbation}: predicted γ → 0 floor with {corrector} {r.predicted_floor:.3g} = "
                     f"{num(r.predicted_floor / q, '.2g')} × standard SGD's S(γ_min) {num(q)}" for r, q in zip(rows.itertuples(), sgd))
    return Verdict(v.claim, v.outcome, rule=v.rule, evidence=f"{v.evidence} {note} (a residual below SGD's level cannot "
                   f"show at this γ_min).", key_number=v.key_number, key_label=v.key_label, finds=v.finds)


def prediction_verdict(claim, name: str, table: pd.DataFrame) -> Verdict:
    """Measured floor / predicted floor of the plain uniform forward noise inside AGREEMENT_BAND."""
    rows = table[(table.part == "debias") & (table.corrector == "plain")]
    ratio = rows.floor / rows.predicted_floor
    flags = [bool(ok) if s else None for ok, s in zip(in_band(ratio), rows.settled)]
    band = f"{AGREEMENT_BAND[0]:g}–{AGREEMENT_BAND[1]:g}"
    return Verdict(
        claim(name), outcome_of_flags(flags),
        rule=f"measured S(γ_min) / predicted γ → 0 floor inside {band} for every σ_f (partial: some); a level whose "
             f"runs at γ_min are not settled (drift outside {band}) is undecided (unresolved unless the decided "
             f"levels disagree)",
        evidence="; ".join(f"{r.perturbation}: measured {r.floor:.4g} at γ = {r.gamma_min:g}"
                           f"{'' if r.settled else ' (not settled)'}, predicted {r.predicted_floor:.4g}"
                           f" (ratio {q:.3f})" for r, q in zip(rows.itertuples(), ratio)) + ".",
        key_number=float(ratio.iloc[0]) if len(ratio) else None, key_label="measured / predicted floor")


def a3_verdict(claim, name: str, scan: pd.DataFrame, variant: str) -> Verdict:
    """Appendix A.3: does ``variant`` converge at every step size where the uncompressed iteration
    is stable (spectral radius < 1)?  Cases: (setting, γ) with radius < 1."""
    cases = scan[scan.stable_uncompressed & (scan.variant == variant)]
    flags = cases.fate == "converges"
    unc = scan[scan.stable_uncompressed & (scan.variant == "uncompressed")]

    def tally(d):
        return ", ".join(f"{s}: {int((g.fate == 'converges').sum())} of {len(g)} converge "
                         f"({int((g.fate == 'diverges').sum())} diverge)" for s, g in d.groupby("setting", sort=False))

    return Verdict(
        claim(name), outcome_of_cases(flags),
        rule="cases: the step sizes of the scan at which the uncompressed iteration has spectral radius < 1, "
             "both settings of Figure 9; a case holds if ‖w₁‖ falls by 10³ within the run ('converges'); "
             "holds: all, partial: some, fails: none",
        evidence=f"{variant}: {tally(cases)}; uncompressed at the same step sizes: {tally(unc)}.",
        key_number=float(flags.mean()) if len(flags) else None, key_label="fraction of stable step sizes that converge")


def debias_predictions(problem, settings) -> dict:
    """γ → 0 floors of the de-biasing settings (:func:`fbsgd.studies.correctors.study.debias_settings`):
    plain by :func:`fbsgd.theory.small_step_limits.small_step_limit`, corrected by :func:`expected_message_limit`
    with the corrector's own transformation.  Keys (place, perturbation, corrector)."""

    out = {}
    for s in settings:
        plan = run_config(s, 1.0, 0, 20).plan()
        noise = plan.forward[1]
        fix = plan.backward.get(2)
        key = (s["place"], s["perturbation"], s["corrector"])
        out[key] = (small_step_limit(problem, plan)["plateau"] if fix is None else
                    expected_message_limit(problem, noise.high, lambda v, f=fix: f.apply(v, 0, 0))["plateau"])
    return out


PREDICT_DRAWS = 64  # steps of a kind with memory averaged at a frozen input (fbsgd.laws.stationary)
PREDICT_FLOW_STEPS = 500  # flow steps of small_step_limit where Newton finds no zero (the escaping forward Top-K)


def compression_predictions(problem, settings, draws: int = PREDICT_DRAWS, flow_steps: int = PREDICT_FLOW_STEPS) -> dict:
    """γ → 0 floors of the compression settings (:func:`fbsgd.studies.correctors.study.compression_settings`)
    by :func:`fbsgd.theory.small_step_limits.small_step_limit` from each kind's conditional law given its
    input: exact for the plain compressors and the roundings; for error feedback and delta compression
    their settled law at a frozen input (:func:`fbsgd.laws.stationary`, ``draws`` steps after as many of
    burn-in), which is what small steps average over.  inf where the memory blows up at a frozen input
    (divergence predicted).  Keys (place, perturbation, corrector)."""
    out = {}
    for s in settings:
        lim = small_step_limit(problem, run_config(s, 1.0, 0, 20).plan(), draws=draws, flow_steps=flow_steps)
        out[(s["place"], s["perturbation"], s["corrector"])] = float(lim["plateau"])
    return out


def compression_prediction_cases(table: pd.DataFrame, scan: pd.DataFrame) -> pd.DataFrame:
    """One row per compression setting: predicted γ → 0 floor, measured S(γ_min) (geometric mean over
    seeds), standard SGD's seed range at γ_min (the smallest and largest seed), ``visible`` (the
    prediction lies above that range, so the measurement can show it), and ``agrees``:

    * predicted divergence (inf): every run at γ_min diverged;
    * a visible prediction: measured / predicted inside AGREEMENT_BAND (None when the runs at γ_min
      have not settled);
    * a prediction inside or below SGD's range: the measured curve has no floor by the shared rule
      (``has_floor`` False; None when that rule is undecided)."""
    g0 = scan.gamma.min()
    sgd = scan[(scan.part == "baseline") & (scan.gamma == g0)].stable_grad_norm
    lo, hi = (float(sgd.min()), float(sgd.max())) if len(sgd) else (np.nan, np.nan)
    rows = []
    for r in table[table.part == "compression"].itertuples():
        runs = scan[(scan.place == r.place) & (scan.perturbation == r.perturbation) & (scan.corrector == r.corrector)
                    & (scan.gamma == g0)]
        pred, meas = float(r.predicted_floor), float(r.floor)
        all_div = bool(len(runs)) and bool(runs.diverged.all())
        if not np.isfinite(pred):
            visible, agrees, ratio = True, all_div, np.nan
        elif pred > hi:
            visible, ratio = True, (meas / pred if np.isfinite(meas) else np.nan)
            agrees = (bool(in_band(np.array([ratio]))[0]) if np.isfinite(ratio) else False) if r.settled else None
        else:
            visible, ratio = False, np.nan
            agrees = None if r.has_floor is None else (not bool(r.has_floor) and not all_div)
        rows.append(dict(place=r.place, perturbation=r.perturbation, corrector=r.corrector, gamma_min=float(g0),
                         predicted=pred, measured=meas, diverged_runs=int(runs.diverged.sum()), runs=len(runs),
                         sgd_low=lo, sgd_high=hi, visible=visible, ratio=ratio, settled=bool(r.settled), agrees=agrees))
    return pd.DataFrame(rows)


def _predicted_text(r) -> str:
    where = f"{r.place} {r.perturbation} {r.corrector}"
    if not np.isfinite(r.predicted):
        return f"{where}: predicted to diverge, {r.diverged_runs} of {r.runs} runs diverged"
    meas = "diverged" if not np.isfinite(r.measured) else f"{r.measured:.3g}"
    if r.visible:
        return f"{where}: predicted {r.predicted:.3g}, measured {meas} (ratio {num(r.ratio, '.3f')})"
    return (f"{where}: predicted {r.predicted:.2g}, within standard SGD's seed range or below, measured {meas}"
            f" ({'no floor' if r.agrees else 'undecided' if r.agrees is None else 'a floor or divergence'})")


def compression_prediction_verdict(claim, name: str, cases: pd.DataFrame) -> Verdict:
    """Does the γ → 0 prediction from each kind's conditional law (settled law at a frozen input for
    the kinds with memory) tell the measured floors of the compressors and correctors?"""
    flags = list(cases.agrees)
    decided = [f for f in flags if f is not None]
    band = f"{AGREEMENT_BAND[0]:g}–{AGREEMENT_BAND[1]:g}"
    return Verdict(
        claim(name), outcome_of_flags(flags),
        rule=(f"one case per compressor, corrector and message at the smallest step size: a prediction above standard "
              f"SGD's seed range holds if measured / predicted lies in {band}; a predicted divergence (a memory that "
              f"blows up at a frozen input) if every run diverged; a prediction inside or below SGD's range if the "
              f"measured curve has no floor by the shared floor rule. Holds: every decided case; partial: some; "
              f"a case whose runs have not settled is undecided"),
        evidence="; ".join(_predicted_text(r) for r in cases.itertuples()) + ".",
        key_number=(sum(decided) / len(decided)) if decided else None,
        key_label="share of decided cases where the prediction holds")


# -- the chapter's prose, computed from the summary table and the verdicts ------------------------

_EFFECT_WORDS = {  # what a corrector does, as a template for the perturbations it does it with ({p})
    "restores the rate": "restores the error-free small-step behaviour with {p}",
    "lowers the floor": "lowers the floor without removing it with {p}",
    "no effect": "leaves the floor where it was with {p}",
    "raises the floor": "raises the floor with {p}",
    "diverges": "diverges with {p}",
    UNSETTLED: "has a flat curve that has not settled by the end of the runs (undecided) with {p}",
    BETWEEN: ("has a flat curve between the thresholds, above standard SGD's level but below a floor's "
              "(undecided) with {p}"),
    "no floor to remove": "has no floor to remove with {p} (the uncorrected setting leaves none)",
}
ANSWERS = {"holds": "yes", "fails": "no", "partial": "in part", "unresolved": "not decided by these runs"}


def names_text(items) -> str:
    """"A", "A and B", "A, B and C" (order kept, duplicates dropped)."""
    items = list(dict.fromkeys(items))
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else "none"


def perturbation_words(name: str) -> str:
    """A compressor as words: Top-K and Rand-K as they are, a float format as "rounding to <format>"."""
    return name if name in ("Top-K", "Rand-K") or name.startswith("uniform") else f"rounding to {name}"


def count_text(n: int, noun: str) -> str:
    """"one seed", "2 seeds"."""
    n = int(n)
    return f"one {noun}" if n == 1 else f"{n} {noun}s"


def effect_sentence(table: pd.DataFrame, place: str, corrector: str) -> str:
    """What ``corrector`` does on the ``place`` message, grouped by effect (:func:`classify`), e.g.
    "restores the error-free small-step behaviour with Top-K; diverges with Rand-K"; a perturbation
    whose plain curve is flat and has not settled is marked.  "—" when the table has no such row."""
    rows = table[(table.place == place) & (table.corrector == corrector)]
    if not len(rows):
        return "—"
    plain = table[table.corrector == "plain"].set_index(["place", "perturbation"])
    groups: dict[str, list[str]] = {}
    for r in rows.itertuples():
        words = perturbation_words(r.perturbation)
        key = (place, r.perturbation)
        if ("settled" in plain and key in plain.index and not bool(plain.settled.get(key))
                and "has_floor" in plain and _tri(plain.has_floor.get(key, False)) is None):
            words += " (whose plain floor has not settled)"
        groups.setdefault(r.effect, []).append(words)
    return "; ".join(_EFFECT_WORDS.get(e, e + " with {p}").format(p=names_text(p)) for e, p in groups.items())


def plain_rates_text(table: pd.DataFrame) -> str:
    """The rate exponents of the plain compressors, e.g. "forward Top-K −0.02, backward Top-K 0.01"."""
    rows = table[(table.part == "compression") & (table.corrector == "plain")]
    if "rate_exponent" not in rows:
        return "—"
    return ", ".join(f"{r.place} {r.perturbation} {num(r.rate_exponent, '.2g')}" for r in rows.itertuples()) or "—"


def sgd_settled_text(table: pd.DataFrame) -> str:
    """Whether standard SGD's runs have settled at the smallest step size of the scan."""
    base = table[table.part == "baseline"]
    if not len(base):
        return "the scan has no standard-SGD run"
    r = base.iloc[0]
    return (f"at γ = {r.gamma_min:g} standard SGD's runs "
            + ("have settled" if bool(r.settled) else "have not settled (which leaves every comparison with it undecided)"))


def floor_text(over_sgd: float) -> str:
    """The plain stable norm at γ_min against standard SGD's, in words that do not presume a floor."""
    if not np.isfinite(over_sgd):
        return "a run that diverged"
    if over_sgd > FLOOR_OVER_SGD:
        return f"a floor {factor(over_sgd)} standard SGD's stable norm"
    return f"a stable norm {factor(over_sgd)} standard SGD's, no floor above it"


def residual_text(residual_over_sgd: float) -> str:
    """A predicted residual floor against standard SGD's measured S(γ_min): below it, it cannot show."""
    if not np.isfinite(residual_over_sgd):
        return "not available"
    where = ("below standard SGD's norm there, so the scan cannot show it and cannot tell the two corrections apart"
             if residual_over_sgd < 1 else "above standard SGD's norm there, so the scan could show it")
    return f"{factor(residual_over_sgd)} standard SGD's norm at the smallest step size: {where}"


def debias_remainder_text(table: pd.DataFrame, corrector: str = "exact") -> str:
    """What the de-biased curve leaves above standard SGD at γ_min, and whether it still falls with γ."""
    rows = table[(table.part == "debias") & (table.corrector == corrector)]
    if not len(rows):
        return "—"
    r = rows.iloc[0]
    if not np.isfinite(r.slope):
        return f"with the {corrector} correction the runs diverged"
    if r.floor_over_sgd <= RECOVERY_FACTOR:
        return (f"with the {corrector} correction the stable norm at the smallest step size is "
                f"{factor(r.floor_over_sgd)} standard SGD's, within the recovery factor {RECOVERY_FACTOR:g}")
    falls = r.slope > DECREASE_SLOPE
    return (f"with the {corrector} correction {factor(r.floor_over_sgd)} standard SGD's norm remains at the smallest "
            f"step size, and the curve " + ("still falls with γ (slope " if falls else "is flat (slope ")
            + f"{num(r.slope, '.2f')}): " + ("extra variance from the noise, not a floor" if falls else "a floor"))


def a3_sentence(a3: pd.DataFrame, variant: str) -> str:
    """Per setting of Figure 9: at how many of the step sizes where the uncompressed iteration is
    stable ``variant`` converges, and what plain Top-1 does where it does not."""
    names = {"plain": "without momentum", "momentum": "with momentum"}
    parts = []
    for setting, g in a3[a3.stable_uncompressed].groupby("setting", sort=False):
        mine = g[g.variant == variant].set_index("gamma").fate
        top1 = g[g.variant == "Top-1"].set_index("gamma").fate
        bad = [gm for gm, f in mine.items() if f != "converges"]
        text = f"{names.get(setting, setting)}, {int((mine == 'converges').sum())} of {len(mine)}"
        if bad:
            plain = [top1.get(gm, "—") for gm in bad]
            text += (f" (not at γ ∈ {{{', '.join(f'{gm:g}' for gm in bad)}}}, where plain Top-1 "
                     + names_text([f"{p}" for p in plain]) + ")")
        parts.append(text)
    return "; ".join(parts) if parts else "no step size of the scan is stable"


def prose(table: pd.DataFrame, outcomes: dict) -> dict:
    """The chapter's computed sentences (keys are glue names without the ``co-`` prefix)."""
    out = {}
    for place in ("forward", "backward"):
        for key, corr in (("ef", "error feedback"), ("delta", "delta")):
            out[f"eff-{place}-{key}"] = effect_sentence(table, place, corr)
    sr = [f"{effect_sentence(table, p, 'stochastic rounding')} on the {p} message" for p in ("forward", "backward")]
    out["eff-sr"] = "; ".join(sr)
    for corr in ("second-order", "exact"):
        out[f"eff-{corr}"] = effect_sentence(table[table.part == "debias"], "forward", corr)
    out["plain-rates"] = plain_rates_text(table)
    out["sgd-settled"] = sgd_settled_text(table)
    out["remainder"] = debias_remainder_text(table, "exact")
    plain_debias = table[(table.part == "debias") & (table.corrector == "plain")]
    out["plain-uniform"] = floor_text(float(plain_debias.floor_over_sgd.iloc[0])) if len(plain_debias) else "—"
    topk = table[(table.place == "forward") & (table.perturbation == "Top-K") & (table.corrector == "plain")]
    out["topk-fwd-plain"] = floor_text(float(topk.floor_over_sgd.iloc[0])) if len(topk) else "—"
    for name, outcome in outcomes.items():
        out[f"answer-{name}"] = ANSWERS.get(outcome, outcome)
    return out


def summary_values(verdicts: pd.DataFrame, table: pd.DataFrame, a3: pd.DataFrame, fig9: pd.DataFrame, T: int,
                   seeds, gammas, predict_draws: int = PREDICT_DRAWS) -> dict:
    """Every number and sentence the chapter's prose glues (name → value): the verdicts' outcomes
    and key numbers (``verdicts``: the ledger's table), the summary ``table`` (:func:`summary`), the
    Appendix A.3 scan ``a3`` and Figure 9's step sizes ``fig9`` (indexed by setting), the
    run's horizon, seeds and step sizes, and the steps averaged for a corrector's prediction."""
    out = {"co-predict-draws": f"{int(predict_draws):,}"}
    for s in ("plain", "momentum"):
        out[f"co-fig9-{s}-gamma"] = f"{fig9.loc[s, 'gamma']:g}"
        out[f"co-fig9-{s}-radius"] = f"{fig9.loc[s, 'radius']:.3g}"
    verdict_table = verdicts.assign(name=verdicts.claim_id.str.split(".").str[1]).set_index("name")
    for name, v in verdict_table.iterrows():
        out[f"co-{name}"] = v.outcome
        spec = ".4g" if name == "uncorrected_floor_predicted" else ".3g"
        out[f"co-{name}-key"] = num(v.key_number, spec)
    rows = table.set_index(["place", "perturbation", "corrector"])
    out["co-sgd-rate"] = num(rows.loc[("none", "none", "none"), "rate_exponent"], ".2f")
    out["co-unsettled"] = int(table.effect.isin([UNSETTLED, BETWEEN]).sum())
    sgd_min = rows.loc[("none", "none", "none"), "floor"]
    fwd_topk = {c: rows.loc[("forward", "Top-K", c)] for c in ("plain", "error feedback", "delta")}
    out["co-topk-fwd-plain-over"] = factor(fwd_topk["plain"].floor_over_sgd)
    out["co-topk-fwd-ef-ratio"] = relative_text(fwd_topk["error feedback"].floor_ratio, "the plain one")
    out["co-topk-fwd-delta-over"] = factor(fwd_topk["delta"].floor_over_sgd)
    for key, c in [("ef", "error feedback"), ("delta", "delta")]:
        out[f"co-topk-fwd-{key}-rate"] = num(fwd_topk[c].rate_exponent, ".2g")
    debias = table[table.part == "debias"].set_index("corrector")
    for corr in ("second-order", "exact"):
        out[f"co-{corr}-ratio"] = factor(debias.loc[corr, "floor_ratio"])
        out[f"co-{corr}-over"] = factor(debias.loc[corr, "floor_over_sgd"])
    out["co-second-order-residual"] = residual_text(debias.loc["second-order", "predicted_floor"] / sgd_min)
    for key, text in prose(table, verdict_table.outcome.to_dict()).items():
        out[f"co-{key}"] = text
    for key, variant in [("ef", "Top-1 + error feedback"), ("delta", "Top-1 + delta")]:
        out[f"co-a3-{key}"] = a3_sentence(a3, variant)
    for s in ("plain", "momentum"):
        out[f"co-fig9-{s}-where"] = "inside" if fig9.loc[s, "stable"] else "outside"
    out["co-T"] = f"{T:,}"
    out["co-seeds"] = count_text(len(seeds), "seed")
    out["co-n-gammas"] = len(gammas)
    out["co-slope-window"] = SLOPE_WINDOW
    out["co-plain-uniform-over"] = factor(debias.loc["plain", "floor_over_sgd"])
    return out


# -- the chapter's verdict calls and displayed tables -----------------------------------------------

_COMPRESSION_VERDICTS = [("ef_forward", "forward", "error feedback"), ("ef_backward", "backward", "error feedback"),
                         ("delta_forward", "forward", "delta"), ("delta_backward", "backward", "delta"),
                         ("stochastic_rounding", None, "stochastic rounding")]


def compression_verdicts(claim, table: pd.DataFrame) -> list[Verdict]:
    """The verdicts on compression, in the chapter's order: error feedback and delta compression on
    the forward and on the backward message, and stochastic rounding on both
    (:func:`corrector_verdict` on the rows of part "compression")."""
    compression = table[table.part == "compression"]
    return [corrector_verdict(claim, name, compression, place, corr) for name, place, corr in _COMPRESSION_VERDICTS]


def a3_verdicts(claim, a3: pd.DataFrame) -> list[Verdict]:
    """The Appendix A.3 verdicts (:func:`a3_verdict`): Top-1 with error feedback, then with delta compression."""
    return [a3_verdict(claim, name, a3, variant)
            for name, variant in [("a3_error_feedback", "Top-1 + error feedback"), ("a3_delta", "Top-1 + delta")]]


def debias_verdicts(claim, table: pd.DataFrame) -> list[Verdict]:
    """The de-biasing verdicts, in the chapter's order: the uncorrected floor against its prediction
    (:func:`prediction_verdict`), then the second-order and the exact correction (:func:`debias_verdict`)."""
    out = [prediction_verdict(claim, "uncorrected_floor_predicted", table)]
    for corr in ("second-order", "exact"):
        out.append(debias_verdict(claim, "debias_" + corr.replace("-", "_"), table, corr))
    return out


def a3_fates(a3: pd.DataFrame) -> pd.DataFrame:
    """The A.3 scan as one row per (setting, γ, uncompressed spectral radius) and one fate column per variant."""
    fates = a3.pivot_table(index=["setting", "gamma", "radius_uncompressed"], columns="variant", values="fate",
                           aggfunc="first")
    return fates.reset_index()


def a3_fate_table(a3: pd.DataFrame):
    """The displayed table of :func:`a3_fates` (the variants of :data:`fbsgd.studies.correctors.study.A3_VARIANTS` in order)."""

    return show(a3_fates(a3), "Appendix A.3 with correctors: fate of ‖w₁‖ per step size",
                columns=["setting", "gamma", "radius_uncompressed", *A3_VARIANTS],
                rename={"radius_uncompressed": "spectral radius (uncompressed)",
                        "Top-1 + error feedback": "Top-1 + EF"})


def debias_table(table: pd.DataFrame):
    """The displayed de-biasing table: measured S(γ_min) and the predicted γ → 0 floor, with standard SGD."""

    return show(table[table.part.isin(["debias", "baseline"])],
                "Forward de-biasing: measured S(γ_min) and predicted γ → 0 floor",
                columns=["perturbation", "corrector", "floor", "predicted_floor", "floor_over_sgd", "slope", "effect"],
                rename={"floor": "S(γ_min)", "predicted_floor": "predicted γ → 0 floor",
                        "floor_over_sgd": "S(γ_min) / SGD's"})


# the columns of the downloadable summary (correctors_summary.csv)
SUMMARY_COLUMNS = ["place", "perturbation", "corrector", "floor", "predicted_floor", "floor_ratio", "floor_over_sgd",
                   "slope", "slope_se", "rate_exponent", "rate_se", "effect", "extra_memory", "extra_work",
                   "diverged_runs"]


def summary_shown(table: pd.DataFrame) -> pd.DataFrame:
    """The summary table with a "message" column ("<place> <perturbation>", "standard SGD" for the baseline)."""
    return table.assign(message=(table.place + " " + table.perturbation).replace({"none none": "standard SGD"}))


def summary_table(table: pd.DataFrame):
    """The displayed summary: per message, perturbation and corrector (:func:`summary_shown`)."""

    return show(summary_shown(table), "Summary: per message, perturbation and corrector",
                columns=["message", "corrector", "floor_over_sgd", "floor_ratio", "slope", "rate_exponent", "effect"],
                rename={"floor_over_sgd": "S(γ_min) / SGD's", "floor_ratio": "/ plain",
                        "rate_exponent": "rate exponent p"})
