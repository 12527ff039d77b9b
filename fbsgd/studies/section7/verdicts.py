"""The verdicts of Section 7: rules, thresholds and the :class:`~fbsgd.book.verdicts.Verdict` records
of Figures 3–8 {cite}`kong2026perturbed`.

Every rule is a question about the stable gradient norm S(γ) as the step size shrinks, read off
the table of :func:`fbsgd.studies.section7.design.small_step_slopes` (one row per perturbation setting:
``slope`` of log S against log γ over the smallest step sizes, ``norm_at_gamma_min``, and, after
:func:`fbsgd.studies.section7.design.add_predictions`, the γ → 0 prediction ``predicted_limit`` and ``escapes``):

* a **plateau** (the norm is pinned at a floor) is a slope below :data:`PLATEAU_SLOPE`: dividing γ by 10 then
  lowers S by less than a factor 10^0.1 ≈ 1.26, where standard SGD's slope of about 1/2 lowers it by ≈ 3.2;
* **keeps decreasing** is a slope above :data:`DECREASE_SLOPE`, half of standard SGD's 1/2; a slope in between
  is neither (it "decreases slowly");
* **agrees with the prediction** is a measured / predicted ratio inside :data:`AGREEMENT_BAND`.

Each rule is one threshold, the same in every figure and chapter, stated before the runs; no threshold
changes from one figure to another.  A floor is decided by the slope alone; the γ → 0 prediction is
evidence, not a second way to pass (earlier versions of the book also counted a level as pinned when it
sat on its predicted floor, which let a slope of 0.11 pass the plateau rule of 0.1).  A claim about
several levels or panels follows :func:`fbsgd.book.verdicts.outcome_of_cases` (partial: at least half).

Each function takes ``claim``, a function from a claim name to its :class:`~fbsgd.book.verdicts.Claim`
(``ledger.claim``), and returns the Verdict; it judges, it does not display.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fbsgd.metrics import drift_ratio, geometric_mean
from fbsgd.book.verdicts import Verdict, outcome_of_cases, share_text

__all__ = ["PLATEAU_SLOPE", "DECREASE_SLOPE", "AGREEMENT_BAND", "FLOOR_OVER_SGD", "MONOTONE_TOLERANCE",
           "RECOVERY_FACTOR", "FIG3_GAIN_RATIO", "SETTING_S7", "trace_drift", "is_settled", "floor_found", "geometric_mean", "in_band", "trend", "falls_with_interval",
           "recovery_interval", "forward_pinned", "pinned", "estimate", "panel_name", "level_name",
           "pinned_label", "frequent_display", "nonzero_display", "interval_display", "figure3_verdict", "backward_verdict", "forward_verdict",
           "frequent_verdicts", "nonzero_plateau_verdict", "nonzero_growth_verdict", "nonzero_prediction_verdict",
           "nonzero_baseline_verdict", "nonzero_escape_verdict", "nonzero_verdicts", "interval_verdicts",
           "asymmetry_text", "decided_by_text", "escape_text", "budget_text"]

PLATEAU_SLOPE = 0.1  # a log-log slope below this over the smallest γ: the norm levels off
DECREASE_SLOPE = 0.25  # above this: the norm keeps decreasing (standard SGD: about 1/2)
AGREEMENT_BAND = (0.8, 1.25)  # measured / predicted inside this band: they agree
FLOOR_OVER_SGD = 2.0  # a predicted floor counts as visible when it exceeds this × standard SGD's norm
MONOTONE_TOLERANCE = 0.05  # seed means at one level fluctuate by a few per cent
RECOVERY_FACTOR = 1.5  # "recovered": stable norm within this factor of standard SGD's
FIG3_GAIN_RATIO = 0.5  # Figure 3: the forward gain must be below this × the backward gain

_BAND = f"{AGREEMENT_BAND[0]:g}–{AGREEMENT_BAND[1]:g}"


def in_band(ratio, band=AGREEMENT_BAND):
    """Whether measured / predicted lies in the agreement band (elementwise for arrays and Series)."""
    if isinstance(ratio, pd.Series):
        return ratio.between(*band)
    r = np.asarray(ratio, dtype=float)
    out = (r >= band[0]) & (r <= band[1])
    return bool(out) if out.ndim == 0 else out


SETTING_S7 = "Section 7 logistic regression"  # the setting of every fact found on Section 7's problem


def trace_drift(t, ewma, T: int, metric_every: int) -> float:
    """The drift of a run (:func:`fbsgd.metrics.drift_ratio`: mean EWMA over the last quarter of the
    run / over the quarter before) from its stored trace: the EWMA at the trace's iterations ``t``,
    interpolated linearly onto every recorded iterate 0, k, 2k, … < T (run_sweep's default trace keeps
    600 points; the full trace gives the same drift to ~1e-4, tested)."""
    grid = np.arange(0, int(T), int(metric_every))
    return drift_ratio(np.interp(grid, np.asarray(t, dtype=float), np.asarray(ewma, dtype=float)))


def is_settled(drifts) -> bool:
    """The drift test: every drift ratio (:func:`fbsgd.metrics.drift_ratio`, the mean EWMA over a run's
    last quarter / over the quarter before; finite ones, at least one) inside AGREEMENT_BAND."""
    d = np.asarray(drifts, dtype=float)
    d = d[np.isfinite(d)]
    return bool(d.size and np.all(in_band(d)))


def floor_found(slope: float, over_sgd: float, settled: bool = True):
    """The one rule by which every chapter finds whether a perturbation leaves a floor at small step sizes
    (the fact ``fact("floor", mechanism, place, SETTING_S7)`` of :mod:`fbsgd.book.verdicts`), from the
    log-log slope of S over the smallest step sizes, S at the smallest γ over standard SGD's there
    (``over_sgd``), and the drift test of those runs (``settled``, :func:`is_settled`):

    * True (a floor): slope ≤ DECREASE_SLOPE, S above FLOOR_OVER_SGD × SGD's, and settled;
    * False (no floor): slope > DECREASE_SLOPE, or S within RECOVERY_FACTOR × SGD's;
    * None (undecided): flat and between RECOVERY_FACTOR and FLOOR_OVER_SGD × SGD's, flat and above
      but not settled, or a slope that is not finite."""
    if not np.isfinite(slope) or not np.isfinite(over_sgd):
        return None
    if slope > DECREASE_SLOPE or over_sgd <= RECOVERY_FACTOR:
        return False
    if over_sgd > FLOOR_OVER_SGD and settled:
        return True
    return None


def trend(slope: float) -> str:
    """How S behaves as γ shrinks, from its small-step log-log slope."""
    if not np.isfinite(slope):
        return "undetermined"
    if slope < PLATEAU_SLOPE:
        return "levels off"
    if slope > DECREASE_SLOPE:
        return "keeps decreasing"
    return "decreases slowly"


def estimate(value: float, se: float) -> str:
    """"value ± se" with significant figures: 0.507 ± 0.004, but 2.1e-04 ± 3e-05 for a slope
    so small that three decimals would print it (or its error) as 0.000."""
    if not (np.isfinite(value) and np.isfinite(se)):
        return "—"
    if se < 5e-4 or abs(value) < 5e-3:
        return f"{value:.1e} ± {se:.0e}"
    return f"{value:.3f} ± {se:.3f}"


def panel_name(panel: str) -> str:
    """The printed name of a panel label: "sigma_f=1" → "σ_f = 1" (the labels stay as the figures select them)."""
    return str(panel).replace("sigma_f=", "σ_f = ")


def level_name(level: str) -> str:
    """The printed name of a level: "σ_f=1, Δt=10" → "σ_f = 1, Δt = 10"."""
    return str(level).replace("=", " = ")


def _slopes(rows) -> str:
    return ", ".join(f"{level_name(r.level)}: {estimate(r.slope, r.slope_se)}" for r in rows.itertuples())


def _base(slopes: pd.DataFrame):
    return slopes[slopes.perturbation == "none"].iloc[0]


# -- Section 7.2.1, Figures 3-5 --------------------------------------------------------------------


def figure3_verdict(claim, left, right, baseline, lo_gamma: float, hi_gamma: float) -> Verdict:
    """Figure 3: the gain S(γ_hi)/S(γ_lo) (geometric means over seeds) of the forward runs ``left``
    is below :data:`FIG3_GAIN_RATIO` × that of the backward runs ``right``."""
    def gain(sub):
        at = lambda g: geometric_mean(sub[sub.gamma == g].stable_grad_norm)
        return at(hi_gamma) / at(lo_gamma)

    gf, gb, g0 = gain(left), gain(right), gain(baseline) if len(baseline) else float("nan")
    sf, sb = left.sigma_f.iloc[0], right.sigma_b.iloc[0]
    ok = gf < FIG3_GAIN_RATIO * gb
    return Verdict(
        claim("fig3_step_size_gain"), "holds" if ok else "fails",
        rule=f"gain = S(γ = {hi_gamma:g}) / S(γ = {lo_gamma:g}) (geometric means over seeds); "
             f"holds if the forward gain < {FIG3_GAIN_RATIO:g} × the backward gain",
        evidence=f"going from γ = {hi_gamma:g} to γ = {lo_gamma:g} lowers the stable gradient norm by a factor {gf:.2f} with "
                 f"forward σ_f = {sf:g}, {gb:.2f} with backward σ_b = {sb:g}"
                 + (f", and {g0:.2f} for standard SGD." if np.isfinite(g0) else "."),
        key_number=gf / gb, key_label="forward gain / backward gain", threshold=f"< {FIG3_GAIN_RATIO:g}")


def backward_verdict(claim, name: str, slopes: pd.DataFrame, figure: str) -> Verdict:
    """Zero-mean backward noise: every σ_b keeps decreasing (slope > :data:`DECREASE_SLOPE`)."""
    bwd = slopes[slopes.perturbation == "backward"]
    flags = bwd.slope > DECREASE_SLOPE
    return Verdict(
        claim(name), outcome_of_cases(flags),
        rule=f"log-log slope of S against γ over the smallest step sizes > {DECREASE_SLOPE} for every σ_b",
        threshold=f"> {DECREASE_SLOPE:g} for every σ_b",
        evidence=f"{figure}: slopes {_slopes(bwd)} (standard SGD {_base(slopes).slope:.2f}); "
                 f"{int(flags.sum())} of {len(bwd)} above {DECREASE_SLOPE}.",
        key_number=float(bwd.slope.min()), key_label="smallest backward slope")


def forward_pinned(slopes: pd.DataFrame, big_sigma: float) -> pd.DataFrame:
    """For each forward level with σ_f ≥ ``big_sigma``: ``flat`` (slope < PLATEAU_SLOPE), ``ratio``
    (measured / predicted floor at the smallest γ), ``on_floor`` (ratio in the agreement band and the
    predicted floor > FLOOR_OVER_SGD × standard SGD's norm there: evidence only), ``pinned`` = flat, and
    ``decided_by`` naming what decided (the slope)."""
    big = slopes[(slopes.perturbation == "forward") & (slopes.sigma_f >= big_sigma)]
    return pinned(big, _base(slopes))


def pinned(rows: pd.DataFrame, base) -> pd.DataFrame:
    """The rule "pinned at a floor" (small-step slope < :data:`PLATEAU_SLOPE`) on the slope-table ``rows``
    against standard SGD's row ``base``, with the prediction beside it as evidence; the columns of
    :func:`forward_pinned`.  One rule for the frequent forward levels and for the smallest interval of
    the intermittent figures (Δt = 1 is the frequent case)."""
    big = rows.copy()
    big["ratio"] = big.norm_at_gamma_min / big.predicted_limit
    big["floor_over_sgd"] = big.predicted_limit / base.norm_at_gamma_min
    big["flat"] = big.slope < PLATEAU_SLOPE
    big["on_floor"] = in_band(big.ratio) & (big.floor_over_sgd > FLOOR_OVER_SGD)
    big["pinned"] = big.flat
    big["decided_by"] = np.where(big.flat, "the slope", "the slope (not pinned)")
    return big


def forward_verdict(claim, name: str, slopes: pd.DataFrame, figure: str, big_sigma: float = 0.5) -> Verdict:
    """Zero-mean forward noise with σ_f ≥ ``big_sigma`` is pinned at a non-zero floor (:func:`forward_pinned`)."""
    big = forward_pinned(slopes, big_sigma)
    small = slopes[(slopes.perturbation == "forward") & (slopes.sigma_f < big_sigma)]
    per_level = "; ".join(
        f"{level_name(r.level)}: slope {estimate(r.slope, r.slope_se)} → {'pinned' if r.pinned else 'not pinned'} "
        f"(measured / predicted floor {r.ratio:.2f}, predicted floor {r.floor_over_sgd:.3g}× standard SGD)"
        for r in big.itertuples())
    small_txt = ("; smaller forward sizes (not covered): " + ", ".join(
        f"{level_name(r.level)} slope {r.slope:.2f} ({trend(r.slope)})" for r in small.itertuples())) if len(small) else ""
    return Verdict(
        claim(name), outcome_of_cases(big.pinned),
        rule=f"a level σ_f ≥ {big_sigma:g} is pinned if its log-log slope over the smallest step sizes is < {PLATEAU_SLOPE} "
             f"(the γ → 0 prediction is shown beside it, not used to decide)",
        threshold=f"< {PLATEAU_SLOPE:g} for every σ_f ≥ {big_sigma:g}",
        evidence=f"{figure}, at γ = {big.gamma_min.min():g} (standard SGD {_base(slopes).norm_at_gamma_min:.2g}): {per_level}"
                 f"; pinned: {share_text(big.pinned)}{small_txt}.",
        key_number=float(big.slope.max()), key_label=f"largest slope for σ_f ≥ {big_sigma:g}")


def frequent_verdicts(claim, slopes: pd.DataFrame, figure: str, prefix: str, big_sigma: float = 0.5) -> list[Verdict]:
    """The two Section 7.2.1 verdicts of one figure: ``<prefix>_backward_decreases``, ``<prefix>_forward_plateau``."""
    return [backward_verdict(claim, f"{prefix}_backward_decreases", slopes, figure),
            forward_verdict(claim, f"{prefix}_forward_plateau", slopes, figure, big_sigma)]


# -- Section 7.2.2, Figure 6 ----------------------------------------------------------------------


def _biased(slopes):
    return slopes[slopes.perturbation != "none"].sort_values("sigma_b")


def nonzero_plateau_verdict(claim, slopes: pd.DataFrame) -> Verdict:
    """Every σ_b > 0 levels off (slope < :data:`PLATEAU_SLOPE`)."""
    pert = _biased(slopes)
    base = slopes[slopes.perturbation == "none"]
    return Verdict(
        claim("plateau_every_sigma_b"), outcome_of_cases(pert.slope < PLATEAU_SLOPE),
        rule=f"log-log slope over the smallest step sizes < {PLATEAU_SLOPE} for every σ_b > 0",
        threshold=f"< {PLATEAU_SLOPE:g} for every σ_b > 0",
        evidence=f"slopes {_slopes(pert)}" + (f"; standard SGD {base.slope.iloc[0]:.2f}" if len(base) else "") + ".",
        key_number=float(pert.slope.max()), key_label="largest slope for σ_b > 0")


def nonzero_growth_verdict(claim, slopes: pd.DataFrame) -> Verdict:
    """The plateau rises with σ_b: each step of the σ_b grid raises S at the smallest γ by more than
    :data:`MONOTONE_TOLERANCE`; the evidence says where it rises, where it saturates, and which σ_b escape."""
    pert = _biased(slopes)
    v, sb = pert.norm_at_gamma_min.to_numpy(), pert.sigma_b.to_numpy()
    rises = v[1:] > v[:-1] * (1 + MONOTONE_TOLERANCE)
    steps = ", ".join(f"σ_b {a:g} → {b:g}: {x:.3g} → {y:.3g} ({y / x - 1:+.0%})"
                      for a, b, x, y in zip(sb[:-1], sb[1:], v[:-1], v[1:]))
    esc = pert[pert.escapes.astype(bool)] if "escapes" in pert else pert.iloc[:0]
    if rises.all():
        words = "it rises at every step"
    elif not rises.any():
        words = "it rises at no step"
    elif not rises[int(np.argmin(rises)):].any():  # rises, then stops rising
        k = int(np.argmin(rises))
        words = (f"it rises up to σ_b = {sb[k]:g} and saturates beyond (no rise of more than "
                 f"{MONOTONE_TOLERANCE:.0%} from σ_b = {sb[k]:g} on)")
    else:
        words = "it rises at the steps to σ_b = " + ", ".join(f"{b:g}" for b, r in zip(sb[1:], rises) if r) + " only"
    if len(esc):
        settled = esc.naive_plateau if "naive_plateau" in esc else None
        words += (f"; for σ_b = {', '.join(f'{s:g}' for s in esc.sigma_b)} the iterates escape, and the plateau "
                  f"({', '.join(f'{x:.3g}' for x in esc.norm_at_gamma_min)}) is the gradient norm along the escape path"
                  + (f", below the settled value m‖ā‖ = {', '.join(f'{x:.3g}' for x in settled)}" if settled is not None else ""))
    return Verdict(
        claim("plateau_grows"), outcome_of_cases(rises),
        rule=f"each step up the σ_b grid raises the stable norm at the smallest γ by more than {MONOTONE_TOLERANCE:.0%} "
             f"(the seed-to-seed tolerance)",
        threshold=f"every step of the grid rises by > {MONOTONE_TOLERANCE:.0%} (share 1)",
        evidence=f"stable norm at the smallest step size: {steps}; {words}.",
        key_number=float(rises.mean()) if len(rises) else 0.0, key_label="share of grid steps that raise the plateau")


def nonzero_prediction_verdict(claim, slopes: pd.DataFrame, naive: pd.Series | None = None) -> Verdict:
    """The plateau equals the γ → 0 limit (ratio in :data:`AGREEMENT_BAND`), escaping or not."""
    pert = _biased(slopes)
    ratio = pert.norm_at_gamma_min / pert.predicted_limit
    esc = pert[pert.escapes]
    tail = (f". For {', '.join(esc.level)} the expected gradient has no zero: the iterates drift off and the limit is the "
            f"gradient norm along the escape path" + (", below the settled m‖ā‖ = " + ", ".join(
                f"{naive[i]:.3g}" for i in esc.index) if naive is not None else "") + "."
            if len(esc) else "; in every case a limit point exists and the plateau is m‖ā‖.")
    return Verdict(
        claim("matches_prediction"), outcome_of_cases(in_band(ratio)),
        rule=f"measured S at the smallest γ / γ → 0 prediction within {_BAND} for every σ_b > 0",
        threshold=f"within {_BAND} for every σ_b > 0",
        evidence="measured / predicted: " + ", ".join(f"{r.level}: {x:.3f}" for r, x in zip(pert.itertuples(), ratio)) + tail,
        key_number=float(ratio.iloc[np.argmax(np.abs(np.log(ratio.to_numpy())))]), key_label="ratio farthest from 1")


def nonzero_baseline_verdict(claim, slopes: pd.DataFrame) -> Verdict:
    """σ_b = 0 (standard SGD) keeps decreasing (slope > :data:`DECREASE_SLOPE`)."""
    b = _base(slopes)
    return Verdict(
        claim("baseline_decreases"), "holds" if b.slope > DECREASE_SLOPE else "fails",
        rule=f"log-log slope over the smallest step sizes > {DECREASE_SLOPE}",
        evidence=f"standard SGD: slope {b.slope:.3f} ± {b.slope_se:.3f}.", key_number=b.slope, key_label="slope",
        threshold=f"> {DECREASE_SLOPE:g}")


def nonzero_escape_verdict(claim, slopes: pd.DataFrame, weight_norms: pd.DataFrame) -> Verdict:
    """For the largest σ_b predicted to escape, mean ‖w_T‖ rises with γ (rows of ``weight_norms``:
    levels, columns: γ); unresolved when no σ_b is predicted to escape."""
    esc = _biased(slopes)
    esc = esc[esc.escapes]
    if not len(esc):
        return Verdict(claim("escape"), "unresolved", rule="mean ‖w_T‖ rises strictly with γ for the largest escaping σ_b",
                       evidence="no σ_b of the grid is predicted to escape, so there is nothing to test.",
                       key_number=0, key_label="σ_b predicted to escape", threshold="at least 1")
    top = esc.iloc[-1]
    row = weight_norms.loc[top.level]
    steps = row.to_numpy()[1:] / row.to_numpy()[:-1]
    ok = bool(np.all(steps > 1))
    return Verdict(
        claim("escape"), "holds" if ok else "fails",
        rule="for the largest σ_b predicted to escape, the mean ‖w_T‖ rises strictly with γ (the drift γT grows)",
        evidence=f"{top.level}: ‖w_T‖ at γ = " + ", ".join(f"{g:g}: {v:.3g}" for g, v in row.items()) + ".",
        key_number=float(steps.min()) if len(steps) else 0.0,
        key_label="smallest ratio of ‖w_T‖ from one γ to the next larger", threshold="> 1 at every step of γ")


def nonzero_verdicts(claim, slopes: pd.DataFrame) -> list[Verdict]:
    """The three verdicts the reproducibility notes also rerun (plateau, growth, baseline)."""
    out = [nonzero_plateau_verdict(claim, slopes), nonzero_growth_verdict(claim, slopes)]
    if (slopes.perturbation == "none").any():
        out.append(nonzero_baseline_verdict(claim, slopes))
    return out


# -- Section 7.2.3, Figures 7-8 -------------------------------------------------------------------


def falls_with_interval(norms, tolerance: float = MONOTONE_TOLERANCE) -> bool:
    """True when each stable norm is at most (1 + tolerance) × the one at the previous, smaller Δt."""
    v = np.asarray(norms, dtype=float)
    return bool(np.all(v[1:] <= v[:-1] * (1.0 + tolerance)))


def recovery_interval(slopes: pd.DataFrame, panel: str, factor: float = RECOVERY_FACTOR) -> float:
    """Smallest Δt whose stable norm at the smallest γ is within ``factor`` × standard SGD's (NaN if none)."""
    base = _base(slopes).norm_at_gamma_min
    part = slopes[slopes.panel == panel].sort_values("interval")
    ok = part[part.norm_at_gamma_min <= factor * base]
    return float(ok.interval.min()) if len(ok) else float("nan")


def _largest_rise(norms) -> float:
    """The largest ratio of a stable norm to the one at the previous, smaller Δt (≤ 1 + tolerance: falls)."""
    v = np.asarray(norms, dtype=float)
    return float(np.max(v[1:] / v[:-1])) if v.size > 1 else 1.0


def _recovery_ratio(rec_lo: float, rec_hi: float) -> float:
    """Recovery Δt of the stronger panel over the weaker's, a panel that never recovers counting as ∞
    (∞ if only the weaker recovers, 0 if only the stronger does, NaN if neither does)."""
    lo, hi = (x if math.isfinite(x) else math.inf for x in (rec_lo, rec_hi))
    return float("nan") if math.isinf(lo) and math.isinf(hi) else (math.inf if math.isinf(hi) else hi / lo)


def _stronger_outcome(rec_lo: float, rec_hi: float) -> str:
    """Recovery Δt of the weaker (lo) and stronger (hi) panel → outcome (NaN: never recovers)."""
    lo, hi = math.isfinite(rec_lo), math.isfinite(rec_hi)
    if lo and (not hi or rec_hi > rec_lo):
        return "holds"
    if hi and (not lo or rec_hi < rec_lo):
        return "fails"
    return "unresolved"  # a tie on the Δt grid, or neither recovers


def interval_verdicts(claim, slopes: pd.DataFrame, figure: str, prefix: str, T: int) -> list[Verdict]:
    """The four Section 7.2.3 verdicts of one figure, each over its panels (one panel per σ_f):
    ``<prefix>_small_interval_plateau``, ``<prefix>_plateau_falls``, ``<prefix>_recovers``,
    ``<prefix>_stronger_needs_larger``."""
    base = _base(slopes)
    panels = [p for p in slopes.panel.unique() if p != "baseline"]
    parts = {p: slopes[slopes.panel == p].sort_values("interval") for p in panels}
    first = {p: parts[p].iloc[0] for p in panels}
    last = {p: parts[p].iloc[-1] for p in panels}
    floor = pinned(pd.DataFrame([first[p] for p in panels]), base)
    floor.index = panels
    plateau = {p: bool(floor.pinned[p]) for p in panels}
    falls = {p: falls_with_interval(parts[p].norm_at_gamma_min) for p in panels}
    rise = {p: _largest_rise(parts[p].norm_at_gamma_min) for p in panels}
    recovers = {p: bool(last[p].norm_at_gamma_min <= RECOVERY_FACTOR * base.norm_at_gamma_min
                        and last[p].slope > DECREASE_SLOPE) for p in panels}
    floored = [p for p in panels if plateau[p]]  # "recovers" needs something to recover from: a floor at the smallest Δt
    name = panel_name
    out = [Verdict(
        claim(f"{prefix}_small_interval_plateau"), outcome_of_cases(plateau.values()),
        rule=f"at the smallest Δt the curve is pinned at a floor by the rule of the frequent forward verdicts: its "
             f"log-log slope over the smallest step sizes is < {PLATEAU_SLOPE} (the γ → 0 prediction is shown, not used "
             f"to decide)",
        threshold=f"< {PLATEAU_SLOPE:g} in every panel",
        evidence=f"{figure}: " + "; ".join(
            f"{name(p)}, Δt = {first[p].interval}: slope {first[p].slope:.2g} → "
            + ("pinned" if plateau[p] else "not pinned")
            + f" (measured / predicted floor {floor.ratio[p]:.2f}, predicted floor {floor.floor_over_sgd[p]:.3g}× "
              f"standard SGD)" for p in panels) + ".",
        key_number=max(first[p].slope for p in panels), key_label="largest slope at the smallest Δt"),
        Verdict(
        claim(f"{prefix}_plateau_falls"), outcome_of_cases(falls.values()),
        rule=f"the stable norm at the smallest γ is non-increasing in Δt up to a {MONOTONE_TOLERANCE:.0%} seed-to-seed tolerance",
        threshold=f"≤ {1 + MONOTONE_TOLERANCE:g} at every step of Δt, in every panel",
        evidence=f"{figure}, at γ = {base.gamma_min:g}: " + "; ".join(
            f"{name(p)}: Δt = " + ", ".join(f"{r.interval}: {r.norm_at_gamma_min:.3g}" for r in parts[p].itertuples())
            + ("" if falls[p] else " (rises by more than the tolerance)") for p in panels)
        + f"; standard SGD {base.norm_at_gamma_min:.3g}.",
        key_number=max(rise.values()), key_label="largest ratio of stable norms from one Δt to the next larger")]
    recover_rule = (f"in every panel whose curve is pinned at the smallest Δt (there is something to recover from), at the "
                    f"largest Δt the stable norm at the smallest γ is ≤ {RECOVERY_FACTOR:g}× standard SGD's and the slope is "
                    f"> {DECREASE_SLOPE}; unresolved if no panel is pinned at the smallest Δt")
    recover_ev = (f"{figure}: " + "; ".join(
        f"{name(p)}, Δt = {last[p].interval} (Q_δ = ⌈T/Δt⌉ = {-(-T // int(last[p].interval))} perturbed iterations): "
        f"stable norm {last[p].norm_at_gamma_min:.3g}, slope {last[p].slope:.2f}"
        + ("" if plateau[p] else " (no floor at the smallest Δt: nothing to recover from)") for p in panels)
        + f"; standard SGD {base.norm_at_gamma_min:.3g}, slope {base.slope:.2f}.")
    out.append(Verdict(
        claim(f"{prefix}_recovers"), outcome_of_cases(recovers[p] for p in floored), rule=recover_rule,
        threshold=f"≤ {RECOVERY_FACTOR:g} with a slope > {DECREASE_SLOPE:g}, in every panel with a floor at the smallest Δt",
        evidence=recover_ev,
        key_number=(max(last[p].norm_at_gamma_min for p in floored) / base.norm_at_gamma_min) if floored else 0,
        key_label="largest Δt: stable norm / standard SGD's" if floored else "panels with a floor at the smallest Δt"))
    claim_name = f"{prefix}_stronger_needs_larger"
    rule = (f"the smallest Δt whose stable norm at the smallest γ is within {RECOVERY_FACTOR:g}× standard SGD's is larger "
            f"for the largest σ_f than for the smallest (never recovering counts as larger); a tie on the Δt grid, or "
            f"neither recovering, is unresolved")
    if len(panels) < 2:
        out.append(Verdict(claim(claim_name), "unresolved", rule=rule,
                           evidence=f"{figure}: only one σ_f panel, nothing to compare.", key_number=len(panels),
                           key_label="σ_f panels", threshold="at least 2"))
        return out
    rec = {p: recovery_interval(slopes, p) for p in panels}
    sig = {p: float(parts[p].sigma_f.iloc[0]) for p in panels}
    lo, hi = min(panels, key=sig.get), max(panels, key=sig.get)
    outcome = _stronger_outcome(rec[lo], rec[hi])
    out.append(Verdict(
        claim(claim_name), outcome, rule=rule,
        evidence=f"{figure}: recovery Δt " + ", ".join(f"{name(p)}: {rec[p]:g}" for p in panels)
        + (" (equal on this grid of Δt)" if outcome == "unresolved" and rec[lo] == rec[hi] else "") + ".",
        key_number=_recovery_ratio(rec[lo], rec[hi]), key_label="recovery Δt, strongest / weakest σ_f (∞: never recovers)",
        threshold="> 1"))
    return out


# -- the slope tables as the chapters show them (every column stays in the CSV) --------------------

_PANEL = {"left": "top: forward", "right": "bottom: backward", "baseline": "standard SGD", "main": "Figure 6"}


def pinned_label(row, base, big_sigma: float | None = None) -> str:
    """The trend word of a slope-table row by the rule its verdict uses (:func:`trend` of the slope:
    "levels off" is the plateau rule of :func:`pinned`); for a forward level the verdict judges
    (σ_f ≥ ``big_sigma``, or any intermittent row) that is not flat but already sits at its
    predicted floor, the trend word says so ("decreases slowly, at its predicted floor")."""
    judged = row["perturbation"] == "forward" and (big_sigma is None or row["sigma_f"] >= big_sigma)
    if not judged:
        return trend(row["slope"])
    r = pinned(pd.DataFrame([row]), base).iloc[0]
    if not r.flat and r.on_floor:
        return f"{trend(r.slope)}, at its predicted floor"
    return trend(r.slope)


def _limit(x) -> float:
    """A γ → 0 prediction as displayed: missing (—) when it is zero up to rounding."""
    return float("nan") if not np.isfinite(x) or abs(x) < 1e-12 else float(x)


def _display(slopes: pd.DataFrame, labels) -> pd.DataFrame:
    return pd.DataFrame({
        "level": [level_name(lv) for lv in slopes.level],
        "slope": [estimate(v, e) for v, e in zip(slopes.slope, slopes.slope_se)],
        "norm_at_gamma_min": slopes.norm_at_gamma_min.to_numpy(),
        "predicted_limit": [_limit(x) for x in slopes.predicted_limit],
        "trend": list(labels)}, index=slopes.index)


DISPLAY_NAMES = {"panel": "panel", "level": "level", "slope": "slope ± s.e.", "norm_at_gamma_min": "S at smallest γ",
                 "predicted_limit": "predicted γ → 0", "trend": "as γ shrinks", "naive_plateau": "settled m‖ā‖",
                 "escapes": "escapes", "Q_delta": "Q_δ"}


def frequent_display(slopes: pd.DataFrame, big_sigma: float = 0.5) -> pd.DataFrame:
    """Figures 4–5: panel (top/bottom, as in the figures), level, slope, S at the smallest γ, the
    prediction (— when zero) and the trend by the verdicts' rule."""
    base = _base(slopes)
    out = _display(slopes, [pinned_label(r, base, big_sigma) for _, r in slopes.iterrows()])
    out.insert(0, "panel", [_PANEL.get(p, p) for p in slopes.panel])
    return out.reset_index(drop=True)


def nonzero_display(slopes: pd.DataFrame, settled: pd.Series) -> pd.DataFrame:
    """Figure 6: level, slope, S at the smallest γ, the prediction, the settled value m‖ā‖, escapes, trend."""
    out = _display(slopes, [trend(s) for s in slopes.slope])
    out.insert(4, "naive_plateau", [_limit(x) for x in settled])
    out.insert(5, "escapes", slopes.escapes.astype(bool).to_numpy())
    return out.reset_index(drop=True)


def interval_display(slopes: pd.DataFrame, q_delta: pd.Series) -> pd.DataFrame:
    """Figures 7–8: level (σ_f and Δt), Q_δ, slope, S at the smallest γ, prediction, trend (the
    smallest Δt of each panel by the two-part rule of its verdict)."""
    base = _base(slopes)
    smallest = slopes[slopes.perturbation == "forward"].groupby("panel").interval.transform("min")
    labels = [pinned_label(r, base) if r["perturbation"] == "forward" and r["interval"] == smallest.get(i)
              else trend(r["slope"]) for i, r in slopes.iterrows()]
    out = _display(slopes, labels)
    out.insert(1, "Q_delta", [int(q) for q in q_delta])
    return out.reset_index(drop=True)


# -- the chapters' computed sentences (nothing measured is typed in their prose) -------------------


def _levels(rows) -> str:
    return ", ".join(f"{level_name(lv)}" for lv in rows.level) if len(rows) else "none"


def asymmetry_text(slopes: pd.DataFrame, figure: str, big_sigma: float = 0.5) -> str:
    """"in Figure 4, 4 of 4 backward levels keep decreasing and 3 of 3 forward levels with σ_f ≥ 0.5
    are pinned": the two halves of the asymmetry, by the verdicts' rules."""
    bwd = slopes[slopes.perturbation == "backward"]
    big = forward_pinned(slopes, big_sigma)
    return (f"in {figure}, {int((bwd.slope > DECREASE_SLOPE).sum())} of {len(bwd)} backward levels keep decreasing "
            f"(slope > {DECREASE_SLOPE:g}) and {int(big.pinned.sum())} of {len(big)} forward levels with "
            f"σ_f ≥ {big_sigma:g} are pinned")


def decided_by_text(slopes: pd.DataFrame, figure: str, big_sigma: float = 0.5) -> str:
    """Which forward levels σ_f ≥ ``big_sigma`` of one figure the slope rule leaves unpinned, and whether
    they already sit at their predicted floor (which the rule does not count)."""
    big = forward_pinned(slopes, big_sigma)
    loose = big[~big.flat]
    if not len(loose):
        return f"in {figure} every level with σ_f ≥ {big_sigma:g} has a slope below {PLATEAU_SLOPE:g}"
    at_floor = loose[loose.on_floor]
    one = len(loose) == 1
    return (f"in {figure} the slope{'' if one else 's'} of {_levels(loose)} {'is' if one else 'are'} above "
            f"{PLATEAU_SLOPE:g} (" + ", ".join(f"{s:.2g}" for s in loose.slope) + "), so "
            + ("it is" if len(loose) == 1 else "they are") + " not pinned"
            + (f", although {_levels(at_floor)} already "
               + ("sits" if len(at_floor) == 1 else "sit") + " at the predicted floor" if len(at_floor) else ""))


def escape_text(slopes: pd.DataFrame) -> str:
    """Figure 6: for which σ_b of the grid the biased field has a zero (the iterates settle) and for
    which it has none (they escape), by :mod:`fbsgd.theory.small_step_limits`."""
    pert = _biased(slopes)
    esc = pert.escapes.astype(bool)
    settle, away = pert[~esc], pert[esc]
    if not len(away):
        return f"the biased field has a zero for every σ_b of the grid ({_levels(settle)}), so the iterates settle"
    if not len(settle):
        return f"the biased field has no zero for any σ_b of the grid ({_levels(away)}): the iterates escape"
    return (f"the biased field has a zero, and the iterates settle, for {_levels(settle)}; it has none, and the "
            f"iterates escape, for {_levels(away)}")


def budget_text(T: int) -> str:
    """Corollary 2's Q_δ ≲ T^{1/2} at one horizon: the number of perturbed iterations and the interval."""
    q = math.sqrt(T)
    return (f"with T = {T:,} the non-convex budget Q_δ ≲ T^(1/2) of Corollary 2 is about {q:,.0f} perturbed "
            f"iterations, i.e. Δt ≈ T/Q_δ = √T ≈ {q:,.0f}")
