"""Section 6 judged: exponents with kept/lost status (Corollary 1, Table 1), the orderings of
Remark 5 and Corollary 4, the levels of the Figure 2 scenarios, and their verdicts.

Status of a setting (:func:`with_status`): the excess exponent over the rate's, against the
tolerance by one-sided 95 % bounds (:func:`fbsgd.studies.rates.statistics.compare_exponents`):
kept / lost / unresolved.  A straddling interval is an *unresolved* verdict, never a partial one.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fbsgd.book import verdicts as V
from fbsgd.metrics import geometric_mean
from fbsgd.studies.budgets.study import BIASED, GEOS, SPIKE, STANDARD, ZERO_BACKWARD, ZERO_FORWARD, case_label
from fbsgd.studies.rates.schedules import GEOMETRIES
from fbsgd.studies.rates.statistics import compare_exponents, fit_groups, format_estimate
from fbsgd.engine.sweeps import cost_text
from fbsgd.studies.rates.table1 import table1_comparison
from fbsgd.theory.small_step_limits import small_step_limit
from fbsgd.engine.sweeps import RunConfig

__all__ = ["geometric_mean", "spike_traces", "with_status", "promise", "corollary1_fits", "table1_fits", "table1_display",
           "COROLLARY1_CHECKS", "corollary1_verdicts", "section53_verdict", "SECTION53_ERRATUM", "tolerance_reason", "table1_verdicts", "conservative_verdict", "ordering_verdicts",
           "spike_level", "spike_peak", "spike_table", "RECOVERY_FACTOR", "OFF_COURSE_FACTOR", "SHRINK_RATIO",
           "spike_verdicts", "STEEP_FACTOR", "times", "forward_allowed_text", "replication_text", "steep_kept",
           "steep_text", "corollary1_display", "table1_status_display", "spike_display", "statuses_text",
           "status_tally", "half_as_fast_text", "table1_within_text", "table1_larger_text", "zero_backward_text",
           "forward_like_biased_text", "above_threshold_text", "spike_text", "biased_settles_text", "horizon_span_text",
           "setup_values", "STATUS_SETTINGS", "summary_values", "raw_curves", "run_count_text", "setup_text"]

_GEO_NAME = {"nonconvex": "non-convex", "pl": "PL"}
_EQ = {"nonconvex": "(43)", "pl": "(44)"}


# -------------------------------------------------------------------------------------------------
# exponents and their status
# -------------------------------------------------------------------------------------------------


def with_status(fits: pd.DataFrame, reference: dict, tol: float) -> pd.DataFrame:
    """``fits`` (of :func:`fbsgd.studies.rates.statistics.fit_groups`) with the excess over the rate's
    exponent ``reference[geometry]``, its one-sided bounds and the status kept/lost/unresolved."""
    out = [compare_exponents(r["fit"], reference[r.geometry], tol) for _, r in fits.iterrows()]
    return pd.concat([fits.reset_index(drop=True), pd.DataFrame(out)], axis=1).assign(
        reference=[reference[g] for g in fits.geometry])


def promise(geometry: str, setting: str) -> str:
    """What the paper says about a Corollary 1 setting."""
    if setting == STANDARD:
        return "—"
    if "as allowed" in setting:
        return f"kept ({_EQ[geometry]})"
    if setting == "backward, zero-mean, constant":
        return "kept (‖ε‖ ≲ 1)"
    if setting == "forward, zero-mean, constant":
        return "generally lost (Remark 3)"
    return "no guarantee"


def corollary1_fits(runs: pd.DataFrame, reference: dict, tol: float) -> pd.DataFrame:
    fits = with_status(fit_groups(runs, ["geometry", "setting", "size_rule"]), reference, tol)
    fits["paper"] = [promise(g, s) for g, s in zip(fits.geometry, fits.setting)]
    return fits


def table1_fits(runs: pd.DataFrame, reference: dict, tol: float) -> pd.DataFrame:
    """One fit per (geometry, pass, mean, a) with its status and the range of Q over the horizons."""
    fits = with_status(fit_groups(runs, ["geometry", "setting", "pass", "mean", "a"]), reference, tol)
    q = runs.groupby(["geometry", "pass", "mean", "a"]).Q.agg(["min", "max"]).reset_index()
    q["Q_range"] = [f"{int(lo):,}…{int(hi):,}" for lo, hi in zip(q["min"], q["max"])]
    return fits.merge(q[["geometry", "pass", "mean", "a", "Q_range"]], on=["geometry", "pass", "mean", "a"], how="left")


def table1_display(table1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as the chapter shows it: the paper's exponent next to the measured thresholds."""
    return pd.DataFrame({
        "assumption": [_GEO_NAME[g] for g in table1.geometry],
        "rate": [GEOMETRIES[g]["rate"] for g in table1.geometry],
        "zero mean": [{"zero": "✓", "nonzero": "✗"}[m] for m in table1["mean"]],
        "pass": table1["pass"],
        "paper: Q ≲ Tᵃ with a =": table1.paper_a,
        "measured: kept up to a =": table1.kept_up_to,
        "measured: lost from a =": table1.lost_from,
        "averaging argument": table1.averaging_a,
        "agreement": table1.agreement,
    })


def _status_evidence(r, base, tol: float) -> str:
    return (f"exponent {format_estimate(r.exponent, r.se)} against {r.reference:.3f} for the rate "
            f"({format_estimate(base.exponent, base.se)} unperturbed); excess {r.excess:+.3f}, one-sided 95 % bounds {r.excess_low:+.3f} … "
            f"{r.excess_high:+.3f}, tolerance {tol:g} → {r.status}")


def tolerance_reason(tol: float) -> str:
    """Why the exponent tolerance is where it is: the change of log–log slope that a factor ln T makes,
    1/ln T, which the O(·) and Õ(·) of the paper's rates do not exclude."""
    return (f"the tolerance {tol:g} is about the change of slope a factor ln T makes on the horizons of the book "
            f"(1/ln T = {1 / math.log(1e3):.2f} at T = 10³, {1 / math.log(1e4):.2f} at 10⁴, {1 / math.log(3.2e5):.2f} "
            f"at 3.2·10⁵), which the O(·) of the rates allows")


def _status_rule(tol: float) -> str:
    return (f"excess exponent over the rate's, one-sided 95 % bounds: kept if the upper bound < {tol:g}, lost if the "
            f"lower bound > {tol:g}, else unresolved ({tolerance_reason(tol)}); the verdict holds if the status is the "
            f"one claimed, does not hold if it is the other, and is unresolved if the interval straddles the tolerance")


def _row(fits: pd.DataFrame, geometry: str, setting: str):
    return fits[(fits.geometry == geometry) & (fits.setting == setting)].iloc[0]


# claim name suffix -> (setting, status the paper predicts)
COROLLARY1_CHECKS = {
    "forward_allowed": ("forward, zero-mean, as allowed", "kept"),
    "biased_allowed": ("backward, biased, as allowed", "kept"),
    "backward_constant": ("backward, zero-mean, constant", "kept"),
    "forward_constant": ("forward, zero-mean, constant", "lost"),
}


def corollary1_verdicts(ledger: V.Ledger, fits: pd.DataFrame, tol: float) -> list:
    out = []
    for geo in GEOS:
        base = _row(fits, geo, STANDARD)
        for suffix, (setting, want) in COROLLARY1_CHECKS.items():
            r = _row(fits, geo, setting)
            outcome = "unresolved" if r.status == "unresolved" else ("holds" if r.status == want else "fails")
            out.append(V.Verdict(ledger.claim(f"cor1_{geo}_{suffix}"), outcome, _status_rule(tol),
                                 f"size rule {r.size_rule}; " + _status_evidence(r, base, tol) + ".",
                                 r.excess, f"excess exponent (one-sided 95 % bounds {r.excess_low:+.3f} … {r.excess_high:+.3f})",
                                 threshold=(f"{want}: the {'upper' if want == 'kept' else 'lower'} bound "
                                            f"{'<' if want == 'kept' else '>'} {tol:g}; a bound on each side of {tol:g}: unresolved")))
    return out


def _bound_text(a: float) -> str:
    fractions = {0.25: "¹ᐟ⁴", 0.5: "¹ᐟ²", 0.75: "³ᐟ⁴"}
    power = fractions.get(a, f"{a:g}".translate(str.maketrans("0123456789.-", "⁰¹²³⁴⁵⁶⁷⁸⁹·⁻")))
    return "O(1)" if a == 0 else ("O(T)" if a == 1 else f"O(T{power})")


_TABLE1_OUTCOME = {True: "holds", False: "fails", None: "unresolved"}


def table1_verdicts(ledger: V.Ledger, table1: pd.DataFrame, fits: pd.DataFrame, reference: dict) -> list:
    """One verdict per row of Table 1 (:func:`fbsgd.studies.rates.table1.table1_comparison`): does every budget
    within the paper's bound keep the rate?"""
    out = []
    rule = ("every budget exponent a ≤ the paper's in the grid: holds if all are kept, does not hold if any is lost, "
            "unresolved otherwise (statuses as for Corollary 1)")
    for _, r in table1.iterrows():
        sub = fits[(fits.geometry == r.geometry) & (fits["pass"] == r["pass"]) & (fits["mean"] == r["mean"])]
        base = _row(fits, r.geometry, STANDARD)
        grid = ", ".join(f"a = {x.a:g}: {format_estimate(x.exponent, x.se)} ({x.status})" for x in sub.sort_values("a").itertuples())
        ev = (f"paper: Q = {_bound_text(r.paper_a)}; {r.agreement}. Exponent of the rate {reference[r.geometry]:.3f}, "
              f"unperturbed runs {format_estimate(base.exponent, base.se)}; {grid}.")
        holds = None if r.holds is None or (isinstance(r.holds, float) and math.isnan(r.holds)) else bool(r.holds)
        within = sub[sub.a <= r.paper_a + 1e-12]
        n_lost, n_kept = int((within.status == "lost").sum()), int((within.status == "kept").sum())
        out.append(V.Verdict(ledger.claim(f"table1_{r.geometry}_{r['pass']}_{r['mean']}"), _TABLE1_OUTCOME[holds], rule, ev,
                             n_lost, f"budgets with a ≤ {r.paper_a:g} that lose the rate (of {len(within)}; kept: {n_kept})",
                             threshold=f"0 lost and all {len(within)} kept; any lost: does not hold"))
    return out


def conservative_verdict(ledger: V.Ledger, table1: pd.DataFrame) -> V.Verdict:
    """The book's probe: where the paper's bound is below T (a < 1), the measured budgets are larger."""
    rows = table1[table1.paper_a < 1]
    flags = [bool(k > a) for k, a in zip(rows.kept_up_to, rows.paper_a) if not math.isnan(k)]
    ev = "; ".join(f"{_GEO_NAME[r.geometry]}, {case_label((r['pass'], r['mean']))}: kept up to a = "
                   f"{'none in the grid' if math.isnan(r.kept_up_to) else f'{r.kept_up_to:g}'} (paper {r.paper_a:g})"
                   for _, r in rows.iterrows())
    n_nan = len(rows) - len(flags)
    best, worst = V.outcome_of_cases(flags + [True] * n_nan), V.outcome_of_cases(flags + [False] * n_nan)
    outcome = best if best == worst else "unresolved"  # a row without a kept budget could go either way
    return V.Verdict(ledger.claim("table1_conservative"), outcome,
                     "per row with the paper's a < 1: the largest a up to which every grid budget keeps the rate exceeds "
                     "the paper's a; a row with no kept budget leaves the verdict unresolved unless the outcome is the "
                     "same whichever way that row goes",
                     ev + ".", float(sum(flags)), f"rows where the measured budget is larger (of {len(rows)})",
                     threshold=f"all {len(rows)} rows")


def _fa(x: float) -> str:
    return "none in the grid" if math.isnan(x) else f"{x:g}"


def ordering_verdicts(ledger: V.Ledger, table1: pd.DataFrame) -> list:
    """Remark 5 (zero-mean: the backward pass tolerates more occurrences) and Corollary 4
    (biased: the same budget in both passes), per geometry, on the measured thresholds."""
    kt = table1.set_index(["geometry", "pass", "mean"])
    out = []
    for geo in GEOS:
        f0, b0 = kt.loc[(geo, "forward", "zero")], kt.loc[(geo, "backward", "zero")]
        f1, b1 = kt.loc[(geo, "forward", "nonzero")], kt.loc[(geo, "backward", "nonzero")]
        if math.isnan(b0.kept_up_to) or math.isnan(f0.kept_up_to) or b0.kept_up_to == f0.kept_up_to:
            more = "unresolved"
        else:
            more = "holds" if b0.kept_up_to > f0.kept_up_to else "fails"
        out.append(V.Verdict(
            ledger.claim(f"remark5_{geo}"), more,
            "largest a up to which every grid budget keeps the rate: holds if backward's > forward's, fails if <, "
            "unresolved if they tie or either is undefined (no kept budget)",
            f"largest a up to which every budget keeps the rate: backward {_fa(b0.kept_up_to)}, forward {_fa(f0.kept_up_to)}; "
            f"first budget that loses it: backward {_fa(b0.lost_from)}, forward {_fa(f0.lost_from)}.",
            b0.kept_up_to - f0.kept_up_to, "backward − forward largest kept a", threshold="> 0"))
        if math.isnan(f1.kept_up_to) or math.isnan(b1.kept_up_to):
            same = "unresolved"
        else:
            same = "holds" if f1.kept_up_to == b1.kept_up_to else "fails"
        out.append(V.Verdict(
            ledger.claim(f"corollary4_{geo}"), same,
            "largest a up to which every grid budget keeps the rate: holds if equal for both passes, fails if not, "
            "unresolved if either is undefined (no kept budget)",
            f"largest a up to which every budget keeps the rate: forward {_fa(f1.kept_up_to)}, backward {_fa(b1.kept_up_to)}; "
            f"first budget that loses it: forward {_fa(f1.lost_from)}, backward {_fa(b1.lost_from)}.",
            f1.kept_up_to - b1.kept_up_to, "forward − backward largest kept a", threshold="= 0"))
    return out


SECTION53_ERRATUM = (
    "Section 5.3 says the forward/backward asymmetry is why Section 6 permits much weaker constraints on δ than on ε. "
    "Section 6 states the reverse: Corollary 1 allows ‖ε‖ ≲ 1 but only ‖δ‖ ≲ T^(−1/8) (non-convex) or T^(−1/4) ln^(1/4) T "
    "(PL), and Table 1 allows zero-mean backward perturbations Q_ε ≲ T occurrences but forward ones only Q_δ ≲ T^(1/2) "
    "(non-convex) or O(1) (PL). The sentence should read: weaker constraints on ε than on δ.")


def section53_verdict(ledger: V.Ledger, fits: pd.DataFrame, table1: pd.DataFrame | None = None) -> V.Verdict:
    """Section 5.3's sentence "Section 6 permits much weaker constraints on δ than on ε", against the
    measurements of Corollary 1 at constant O(1) size: per geometry, the constraint is weaker on δ if the
    zero-mean forward error keeps the rate where the backward one loses it, and weaker on ε in the reverse
    case (otherwise that geometry does not decide); Table 1's measured budgets are quoted as evidence."""
    rows, flags = [], []
    for geo in GEOS:
        f, b = _row(fits, geo, "forward, zero-mean, constant"), _row(fits, geo, "backward, zero-mean, constant")
        weaker_on_delta = f.status != "lost" and b.status == "lost"
        weaker_on_eps = f.status == "lost" and b.status != "lost"
        if weaker_on_delta or weaker_on_eps:
            flags.append(weaker_on_delta)
        rows.append((geo, f, b, "on δ" if weaker_on_delta else "on ε" if weaker_on_eps else "undecided"))
    gaps = [f.excess - b.excess for _, f, b, _ in rows]
    ev = "; ".join(f"{_GEO_NAME[g]}: constant zero-mean forward error {f.status} (excess {_signed(f.excess)}), backward "
                   f"{b.status} (excess {_signed(b.excess)}), so the weaker constraint is {w}" for g, f, b, w in rows)
    if table1 is not None and len(table1):
        kt = table1.set_index(["geometry", "pass", "mean"])
        ev += "; Table 1's zero-mean budgets, largest kept a: " + "; ".join(
            f"{_GEO_NAME[g]} forward {_fa(kt.loc[(g, 'forward', 'zero')].kept_up_to)}, backward "
            f"{_fa(kt.loc[(g, 'backward', 'zero')].kept_up_to)}" for g in GEOS
            if (g, "forward", "zero") in kt.index and (g, "backward", "zero") in kt.index)
    outcome = V.outcome_of_cases(flags) if flags else "unresolved"
    return V.Verdict(
        ledger.claim("section53_weaker_on_delta"), outcome,
        "per geometry, at constant O(1) size (Corollary 1's measurements): the constraint is weaker on δ if the zero-mean "
        "forward error keeps the rate (not lost) where the backward one loses it, weaker on ε in the reverse case; the "
        "sentence holds if every deciding geometry has it weaker on δ, and is unresolved if no geometry decides",
        ev + ".", min(gaps), "excess exponent, forward − backward (constant size), smallest over the geometries",
        erratum=SECTION53_ERRATUM if outcome == "fails" else "",
        threshold="weaker on δ (the backward error loses the rate, the forward does not) in every geometry that decides; "
                  "a geometry decides when exactly one of the two loses the rate")


# -------------------------------------------------------------------------------------------------
# gradient spikes (Figure 2)
# -------------------------------------------------------------------------------------------------

RECOVERY_FACTOR = 2.0  # "returns to standard SGD": end level within this factor of standard SGD's
PEAK_FACTOR = 10.0  # a spike: the peak at least this factor above standard SGD's level
OFF_COURSE_FACTOR = 10.0  # "off course": end level at least this factor above standard SGD's
SHRINK_RATIO = 0.5  # "shrinks with γ": level at γ/10 below this fraction of the level at γ


def spike_level(traces: pd.DataFrame, scenario: str, gamma: float, what: str = "grad_norm", window: float = 0.1) -> float:
    """Geometric mean over seeds of the mean over the last ``window`` of each run."""
    sub = traces[(traces.scenario == scenario) & np.isclose(traces.gamma, gamma)]
    sub = sub[sub.t >= (1 - window) * sub["T"]]
    return float(geometric_mean(sub.groupby("seed")[what].mean()))


def spike_peak(traces: pd.DataFrame, scenario: str, gamma: float, t_spike: int, what: str = "grad_norm") -> float:
    """Geometric mean over seeds of each run's largest value after t_spike."""
    sub = traces[(traces.scenario == scenario) & np.isclose(traces.gamma, gamma) & (traces.t > t_spike)]
    return float(geometric_mean(sub.groupby("seed")[what].max()))


def spike_table(traces: pd.DataFrame, gamma: float, t_spike: int) -> pd.DataFrame:
    """Per (scenario, γ): end levels of the gradient norm and loss gap; peaks at the main γ."""
    rows = []
    for (name, g), _ in traces.groupby(["scenario", "gamma"], sort=False):
        main = bool(np.isclose(g, gamma))
        rows.append(dict(scenario=name, gamma=g, end_grad_norm=spike_level(traces, name, g),
                         end_loss_gap=spike_level(traces, name, g, "loss_gap"),
                         peak_grad_norm=spike_peak(traces, name, g, t_spike) if main else np.nan,
                         peak_loss_gap=spike_peak(traces, name, g, t_spike, "loss_gap") if main else np.nan))
    return pd.DataFrame(rows).sort_values(["scenario", "gamma"], ascending=[True, False], ignore_index=True)


def spike_verdicts(ledger: V.Ledger, table: pd.DataFrame, gamma: float) -> list:
    """Figure 2's two outcomes and the step-size test of the persistent disturbances."""
    at = lambda name, g=gamma: table[(table.scenario == name) & np.isclose(table.gamma, g)].iloc[0]  # noqa: E731
    base, a, b = at(STANDARD), at(SPIKE), at(BIASED)
    out = []
    ok = (a.end_grad_norm <= RECOVERY_FACTOR * base.end_grad_norm and a.end_loss_gap <= RECOVERY_FACTOR * base.end_loss_gap
          and a.peak_grad_norm >= PEAK_FACTOR * base.end_grad_norm)
    out.append(V.Verdict(
        ledger.claim("figure2_spike_recovers"), "holds" if ok else "fails",
        f"end gradient norm and end loss gap ≤ {RECOVERY_FACTOR:g}× standard SGD's, and the gradient-norm peak ≥ "
        f"{PEAK_FACTOR:g}× standard SGD's level (end = mean over the last 10 % of the run, geometric mean over seeds)",
        f"gradient norm peaks at {a.peak_grad_norm:.3g} (standard SGD: {base.end_grad_norm:.3g}) and ends at "
        f"{a.end_grad_norm:.3g}; loss gap peaks at {a.peak_loss_gap:.3g} and ends at {a.end_loss_gap:.3g} "
        f"(standard SGD: {base.end_loss_gap:.3g}).", a.end_grad_norm / base.end_grad_norm, "end gradient norm / standard SGD's",
        threshold=f"≤ {RECOVERY_FACTOR:g} (and the loss gap too), after a peak ≥ {PEAK_FACTOR:g}× standard SGD's"))
    off = b.end_grad_norm >= OFF_COURSE_FACTOR * base.end_grad_norm and b.end_loss_gap >= OFF_COURSE_FACTOR * base.end_loss_gap
    out.append(V.Verdict(
        ledger.claim("figure2_disturbance_off_course"), "holds" if off else "fails",
        f"end gradient norm and end loss gap ≥ {OFF_COURSE_FACTOR:g}× standard SGD's",
        f"gradient norm settles at {b.end_grad_norm:.3g} ({times(b.end_grad_norm / base.end_grad_norm)} standard SGD), "
        f"loss gap at {b.end_loss_gap:.3g} ({times(b.end_loss_gap / base.end_loss_gap)}).",
        b.end_grad_norm / base.end_grad_norm, "end gradient norm / standard SGD's",
        threshold=f"≥ {OFF_COURSE_FACTOR:g} (and the loss gap too)"))
    out.append(V.Verdict(
        ledger.claim("figure2_spike_above_disturbance"), "holds" if a.peak_grad_norm > b.end_grad_norm else "fails",
        "peak gradient norm of the spike > end gradient norm of the persistent biased disturbance",
        f"the large spike peaked at {a.peak_grad_norm:.3g}; the disturbance settles at {b.end_grad_norm:.3g}.",
        a.peak_grad_norm / b.end_grad_norm, "spike peak / disturbance level", threshold="> 1"))
    for name, claim, want_shrinks in ((BIASED, "biased_level_no_shrink", False), (ZERO_BACKWARD, "zero_backward_shrinks", True),
                                      (ZERO_FORWARD, "zero_forward_no_shrink", False)):
        hi, lo = at(name).end_grad_norm, at(name, gamma / 10).end_grad_norm
        ratio = lo / hi
        out.append(V.Verdict(
            ledger.claim(claim), "holds" if (ratio < SHRINK_RATIO) == want_shrinks else "fails",
            f"the level shrinks if (end gradient norm at γ/10) / (at γ) < {SHRINK_RATIO:g}; holds if it "
            f"{'shrinks' if want_shrinks else 'does not shrink'}",
            f"final gradient norm {hi:.3g} at γ = {gamma:g} and {lo:.3g} at γ = {gamma / 10:g} (ratio {ratio:.2f}; "
            f"noise alone would give about 1/√10 ≈ 0.32).", ratio, "level ratio γ/10 : γ",
            threshold=f"< {SHRINK_RATIO:g}" if want_shrinks else f"≥ {SHRINK_RATIO:g}"))
    return out


def table1_rows(fits: pd.DataFrame) -> pd.DataFrame:
    """The Table 1 comparison from the fits of the perturbed budgets."""
    return table1_comparison(fits[fits.setting != STANDARD][["geometry", "pass", "mean", "a", "status"]])


def spike_traces(traces, spikes) -> pd.DataFrame:
    """The sweep's traces of the Figure 2 runs with their scenario, γ, seed and T as columns."""
    labels = spikes[["config_id", "scenario", "gamma", "seed", "T"]].drop_duplicates("config_id")
    return traces.merge(labels, on="config_id")



# -------------------------------------------------------------------------------------------------
# computed sentences and display tables of the chapter
# -------------------------------------------------------------------------------------------------

STEEP_FACTOR = 3.0  # "far steeper than the rate": an excess below −STEEP_FACTOR × the tolerance
_MINUS = "\u2212"


def _signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}".replace("-", _MINUS)


def _exp(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}".replace("-", _MINUS)


def times(ratio: float) -> str:
    """A ratio as "290×" or, from 1,000 on, "4.1e+05×" (two significant figures, no spurious digits)."""
    return f"{ratio:.0f}×" if abs(ratio) < 1000 else f"{ratio:.2g}×"


def forward_allowed_text(cor1_fits: pd.DataFrame) -> str:
    """Status and excess of the zero-mean forward error of the size (43)/(44) allow, per geometry."""
    parts = []
    for geo in GEOS:
        r = _row(cor1_fits, geo, "forward, zero-mean, as allowed")
        parts.append(f"{r.status} in the {_GEO_NAME[geo]} case (excess {_signed(r.excess)})")
    return " and ".join(parts)


def replication_text(cor1_fits: pd.DataFrame, table1_fits: pd.DataFrame) -> str:
    """Corollary 1's constant zero-mean backward error against Table 1's a = 1 (the same setting
    with other random streams): the status of each, per geometry, and where they differ."""
    parts, differ = [], []
    for geo in GEOS:
        c = _row(cor1_fits, geo, "backward, zero-mean, constant")
        t = table1_fits[(table1_fits.geometry == geo) & (table1_fits["pass"] == "backward")
                        & (table1_fits["mean"] == "zero") & np.isclose(table1_fits.a, 1.0)]
        if not len(t):
            parts.append(f"{_GEO_NAME[geo]}: Corollary 1 {c.status} ({_exp(c.exponent, 2)}), Table 1 has no a = 1")
            continue
        t = t.iloc[0]
        parts.append(f"{_GEO_NAME[geo]}: Corollary 1 {c.status} ({_exp(c.exponent, 2)}), "
                     f"Table 1 at a = 1 {t.status} ({_exp(t.exponent, 2)})")
        if c.status != t.status:
            differ.append(_GEO_NAME[geo])
    verdict = (f"the two statuses differ in the {' and the '.join(differ)} case{'s' if len(differ) > 1 else ''}, "
               f"so this status is sensitive to the draws" if differ else
               "the two statuses agree in both geometries")
    return "; ".join(parts) + "; " + verdict


def steep_kept(fits: pd.DataFrame, tol: float, factor: float = STEEP_FACTOR) -> pd.DataFrame:
    """The kept fits whose exponent is steeper than the rate's by more than ``factor`` × ``tol``
    (excess < −factor·tol): the one-sided test calls them kept, but their metric falls faster than
    the rate, which is weak evidence that the rate as such is kept."""
    return fits[(fits.status == "kept") & (fits.excess < -factor * tol) & (fits.setting != STANDARD)]


def _setting_name(r) -> str:
    if "a" in r and not (isinstance(r.a, float) and math.isnan(r.a)):
        return f"{_GEO_NAME[r.geometry]}, {case_label((r['pass'], r['mean']))}, a = {r.a:g}"
    return f"{_GEO_NAME[r.geometry]}, {r.setting}"


def steep_text(cor1_fits: pd.DataFrame, table1_fits: pd.DataFrame, reference: dict, tol: float,
               factor: float = STEEP_FACTOR) -> str:
    """The sentence that lists :func:`steep_kept` in both analyses (or says there is none)."""
    rows = [r for f in (cor1_fits, table1_fits) for _, r in steep_kept(f, tol, factor).iterrows()]
    if not rows:
        return (f"no kept status rests on an exponent steeper than the rate's by more than {factor:g}× the "
                f"tolerance")
    listed = "; ".join(f"{_setting_name(r)}: {format_estimate(r.exponent, r.se).replace('-', _MINUS)} against "
                       f"{_exp(reference[r.geometry])} for the rate" for r in rows)
    return (f"{len(rows)} kept status{'es rest' if len(rows) > 1 else ' rests'} on an exponent steeper than the "
            f"rate's by more than {factor:g}× the tolerance ({listed})")


def corollary1_display(fits: pd.DataFrame) -> pd.DataFrame:
    """The Corollary 1 fits as the page shows them (long: one row per setting and geometry)."""
    return pd.DataFrame({
        "setting": fits.setting, "geometry": [_GEO_NAME[g] for g in fits.geometry], "size_rule": fits.size_rule,
        "exponent": [format_estimate(e, s).replace("-", _MINUS) for e, s in zip(fits.exponent, fits.se)],
        "status": fits.status})


def table1_status_display(fits: pd.DataFrame, geometry: str) -> pd.DataFrame:
    """One geometry's Table 1 fits as a status matrix: rows a, columns the four cells, entries
    "status (exponent)"."""
    part = fits[(fits.geometry == geometry) & (fits.setting != STANDARD)]
    cell = [case_label((p, m)) for p, m in zip(part["pass"], part["mean"])]
    result = [f"{st} ({_exp(e, 2)})" for st, e in zip(part.status, part.exponent)]
    wide = (part.assign(case=cell, result=result)
            .pivot_table(index="a", columns="case", values="result", aggfunc="first"))
    wide.columns.name = None
    return wide.reset_index()


def spike_display(table: pd.DataFrame) -> pd.DataFrame:
    """The spike table with the peaks of the γ/10 runs (not recorded) as missing values."""
    return table[["scenario", "gamma", "end_grad_norm", "end_loss_gap", "peak_grad_norm", "peak_loss_gap"]]


# -------------------------------------------------------------------------------------------------
# the closing section's sentences, computed (nothing measured is typed in the chapter's prose)
# -------------------------------------------------------------------------------------------------

_COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


def _count(n: int) -> str:
    return _COUNT_WORDS.get(n, str(n))


def _fa_math(a: float) -> str:
    return f"{a:g}"


def statuses_text(cor1_fits: pd.DataFrame, setting: str) -> str:
    """"lost in the non-convex case (exponent −0.20) and unresolved in the PL case (−0.52)":
    one Corollary 1 setting's status per geometry."""
    parts = []
    for i, geo in enumerate(GEOS):
        sub = cor1_fits[(cor1_fits.geometry == geo) & (cor1_fits.setting == setting)]
        if not len(sub):
            continue
        r = sub.iloc[0]
        parts.append(f"{r.status} in the {_GEO_NAME[geo]} case ({'exponent ' if i == 0 else ''}{_exp(r.exponent, 2)})")
    return " and ".join(parts) if parts else "not run"


def status_tally(statuses) -> str:
    """"lost in all four cases", "lost in three of the four cases, unresolved in one", ..."""
    statuses = list(statuses)
    n = len(statuses)
    if not n:
        return "not run"
    counts = {s: statuses.count(s) for s in ("lost", "kept", "unresolved") if statuses.count(s)}
    if len(counts) == 1:
        (s, _), = counts.items()
        return f"{s} in {'both' if n == 2 else 'all ' + _count(n)} cases" if n > 1 else f"{s} in the one case"
    first, *rest = counts.items()
    return (f"{first[0]} in {_count(first[1])} of the {_count(n)} cases, "
            + ", ".join(f"{s} in {_count(k)}" for s, k in rest))


def half_as_fast_text(cor1_fits: pd.DataFrame) -> str:
    """The status of the sizes that shrink half as fast as (43)/(44) allow, over all cases."""
    part = cor1_fits[cor1_fits.setting.str.contains("half as fast")]
    detail = "; ".join(f"{_setting_name(r)}: {r.status} ({_exp(r.exponent, 2)})" for _, r in part.iterrows())
    return f"{status_tally(part.status)} ({detail})"


def _row_name(r) -> str:
    return f"{_GEO_NAME[r.geometry]}, {case_label((r['pass'], r['mean']))}"


def table1_within_text(table1: pd.DataFrame) -> str:
    """How the rows of Table 1 come out as sufficient conditions: how many agree (every budget within
    the paper's bound kept), disagree (one lost), or cannot be resolved."""
    n = len(table1)
    holds = [None if h is None or (isinstance(h, float) and math.isnan(h)) else bool(h) for h in table1.holds]
    agree, disagree = [i for i, h in enumerate(holds) if h is True], [i for i, h in enumerate(holds) if h is False]
    open_ = [i for i, h in enumerate(holds) if h is None]
    names = lambda idx: "; ".join(_row_name(table1.iloc[i]) for i in idx)  # noqa: E731
    parts = []
    if disagree:
        parts.append(f"a budget within the paper's bound loses the rate in {_count(len(disagree))} of the {_count(n)} "
                     f"cells ({names(disagree)})")
    else:
        parts.append(f"no budget within the paper's bound loses the rate in any of the {_count(n)} cells")
    if agree:
        parts.append(f"every such budget is kept in {_count(len(agree))} ({names(agree)})")
    if open_:
        parts.append(f"in {_count(len(open_))} the budgets within the bound are not all clearly kept at these "
                     f"horizons, so the row cannot be resolved ({names(open_)})")
    return "; ".join(parts)


def table1_larger_text(table1: pd.DataFrame) -> str:
    """Where the paper's bound is below T (a < 1): the measured budget (the largest a up to which every
    grid budget keeps the rate) against the paper's, row by row."""
    rows = table1[table1.paper_a < 1]
    if not len(rows):
        return "no cell of the table has a bound below T"
    larger = [r for _, r in rows.iterrows() if not math.isnan(r.kept_up_to) and r.kept_up_to > r.paper_a + 1e-12]
    equal = [r for _, r in rows.iterrows() if not math.isnan(r.kept_up_to) and abs(r.kept_up_to - r.paper_a) <= 1e-12]
    none = [r for _, r in rows.iterrows() if math.isnan(r.kept_up_to)]
    lower = [r for _, r in rows.iterrows() if not math.isnan(r.kept_up_to) and r.kept_up_to < r.paper_a - 1e-12]
    fmt = lambda rs: "; ".join(f"{_row_name(r)}: kept up to a = {r.kept_up_to:g}, paper a = {r.paper_a:g}"  # noqa: E731
                               for r in rs)
    head = f"of the {_count(len(rows))} cells where the paper's bound is below T, the measured budget is "
    out = [head + (f"larger than the paper's in {_count(len(larger))} ({fmt(larger)})" if larger else
                   "larger than the paper's in none")]
    if equal:
        out.append(f"equal to it in {_count(len(equal))} ({fmt(equal)})")
    if lower:
        out.append(f"smaller in {_count(len(lower))} ({fmt(lower)})")
    if none:
        out.append(f"and not defined in {_count(len(none))}, where not even the smallest budget of the grid is "
                   f"clearly kept ({'; '.join(_row_name(r) for r in none)})")
    return ", ".join(out)


def zero_backward_text(table1: pd.DataFrame) -> str:
    """The zero-mean backward rows (paper: Q_ε ≲ T) as measured."""
    rows = table1[(table1["pass"] == "backward") & (table1["mean"] == "zero")]
    return "; ".join(f"{_GEO_NAME[r.geometry]}: kept up to a = {_fa(r.kept_up_to)}, first lost at a = "
                     f"{_fa(r.lost_from)} ({r.agreement})" for _, r in rows.iterrows())


def forward_like_biased_text(table1: pd.DataFrame) -> str:
    """Do the zero-mean forward rows have the measured thresholds of the biased forward rows?"""
    kt = table1.set_index(["geometry", "pass", "mean"])
    parts, same = [], []
    for geo in GEOS:
        if (geo, "forward", "zero") not in kt.index or (geo, "forward", "nonzero") not in kt.index:
            continue
        z, b = kt.loc[(geo, "forward", "zero")], kt.loc[(geo, "forward", "nonzero")]
        eq = (math.isnan(z.kept_up_to) and math.isnan(b.kept_up_to) or z.kept_up_to == b.kept_up_to) and \
             (math.isnan(z.lost_from) and math.isnan(b.lost_from) or z.lost_from == b.lost_from)
        same.append(eq)
        parts.append(f"{_GEO_NAME[geo]}: zero-mean kept up to a = {_fa(z.kept_up_to)} and lost from {_fa(z.lost_from)}, "
                     f"biased kept up to {_fa(b.kept_up_to)} and lost from {_fa(b.lost_from)}")
    if not parts:
        return "not run"
    word = ("the same thresholds in both geometries" if all(same) else
            "different thresholds in both geometries" if not any(same) else "the same thresholds in one geometry only")
    return f"{word} ({'; '.join(parts)})"


def above_threshold_text(table1: pd.DataFrame, fits: pd.DataFrame) -> str:
    """The status of the grid point right above each row's measured threshold (the largest kept a)."""
    parts = []
    for _, r in table1.iterrows():
        if math.isnan(r.kept_up_to):
            continue
        sub = fits[(fits.geometry == r.geometry) & (fits["pass"] == r["pass"]) & (fits["mean"] == r["mean"])
                   & (fits.a > r.kept_up_to + 1e-12)].sort_values("a")
        if len(sub):
            x = sub.iloc[0]
            parts.append(f"{_row_name(r)}: a = {x.a:g} {x.status}")
    if not parts:
        return "no row has a measured threshold below the top of the grid"
    return "; ".join(parts)


def spike_text(table: pd.DataFrame, gamma: float) -> str:
    """The Figure 2 levels in words: how far the single spike's end level is from standard SGD's,
    and how each persistent disturbance's level changes when the step size is divided by 10."""
    at = lambda name, g=gamma: table[(table.scenario == name) & np.isclose(table.gamma, g)]  # noqa: E731
    base = at(STANDARD)
    if not len(base):
        return "standard SGD was not run"
    base = base.iloc[0]
    parts = []
    a = at(SPIKE)
    if len(a):
        a = a.iloc[0]
        parts.append(f"after the single spike (A) the gradient norm peaks at {times(a.peak_grad_norm / base.end_grad_norm)} "
                     f"standard SGD's level and ends at {a.end_grad_norm / base.end_grad_norm:.2g}× it "
                     f"(loss gap {a.end_loss_gap / base.end_loss_gap:.2g}×)")
    for name, letter in ((BIASED, "B"), (ZERO_FORWARD, "D"), (ZERO_BACKWARD, "C")):
        hi, lo = at(name), at(name, gamma / 10)
        if not (len(hi) and len(lo)):
            continue
        hi, lo = hi.iloc[0], lo.iloc[0]
        ratio = lo.end_grad_norm / hi.end_grad_norm
        word = "shrinks" if ratio < SHRINK_RATIO else "does not shrink"
        parts.append(f"the level of {letter} ends at {times(hi.end_grad_norm / base.end_grad_norm)} standard SGD's and "
                     f"{word} with the step size (ratio {ratio:.2f} at γ/10)")
    return "; ".join(parts) + f" (noise alone would give a ratio of about 1/√10 ≈ {1 / math.sqrt(10):.2f})"


def biased_settles_text(rho: float, sigma_b: float, data_seed: int = 0) -> str:
    """Does the averaged drift of the biased backward perturbation of size ``sigma_b`` have a zero on the
    non-convex problem (:func:`fbsgd.theory.small_step_limits.small_step_limit`)?  A sentence for the set-up."""

    cfg = RunConfig(regularizer="nonconvex", rho=rho, perturbation="backward", mean="nonzero", sigma_b=sigma_b,
                    data_seed=data_seed)
    lim = small_step_limit(cfg.problem(), cfg.plan())
    if lim["escapes"]:
        return (f"at σ_b = {sigma_b:g} the averaged drift has no zero on the non-convex problem, so the "
                f"iterates of small steps leave for infinity")
    return (f"at σ_b = {sigma_b:g} the averaged drift still has a zero on the non-convex problem "
            f"(at ‖w‖ = {float(np.linalg.norm(lim['w'])):.3g}), so the iterates can settle")


def horizon_span_text(Ts) -> str:
    """"T = 1,000 … 320,000, 2.5 decades"."""
    lo, hi = min(Ts), max(Ts)
    return f"T = {lo:,} … {hi:,}, {math.log10(hi / lo):.2g} decade{'' if math.isclose(hi / lo, 10) else 's'}"


# -- the numbers and sentences the chapter's prose glues -----------------------------------------

def setup_values(Ts, reference: dict, n_seeds: int, n_seeds_pl: int, rho_nonconvex: float, rho_l2: float, M: int,
                 sigma_f: float, sigma_b: float, sigma_b_biased: float, slope_tolerance: float, data_seed: int = 0) -> dict:
    """The set-up's numbers for the prose (glue name → text): the horizons, the regularizer weights,
    the sample count, the perturbation sizes, the tolerance, the PL rate's exponent on these
    horizons, the seeds, and whether the biased backward drift has a zero (:func:`biased_settles_text`)."""
    out = {"bu-span": horizon_span_text(Ts)}
    for name, value in (("bu-rho-nc", rho_nonconvex), ("bu-rho-pl", rho_l2), ("bu-M", M), ("bu-sigma-f", sigma_f),
                        ("bu-sigma-b", sigma_b), ("bu-sigma-bb", sigma_b_biased), ("bu-tol", slope_tolerance)):
        out[name] = f"{value:,}" if isinstance(value, int) else f"{value:g}"
    out["bu-ref-pl"] = f"{reference['pl']:.2f}".replace("-", "−")
    out["bu-seeds"] = f"{n_seeds_pl} per horizon against {n_seeds} in the non-convex case"
    out["bu-biased-settles"] = biased_settles_text(rho_nonconvex, sigma_b_biased, data_seed)
    return out


STATUS_SETTINGS = {"forward": "forward, zero-mean, constant", "biased": "backward, biased, constant",
                   "backward": "backward, zero-mean, constant", "biased-allowed": "backward, biased, as allowed"}


def summary_values(cor1_fits: pd.DataFrame, budget_fits: pd.DataFrame, table1: pd.DataFrame, spike_table: pd.DataFrame,
                   reference: dict, slope_tolerance: float, spike_gamma: float, Ts) -> dict:
    """Every measured outcome the chapter's prose glues (glue name → sentence or number), from the
    Corollary 1 fits, the Table 1 fits and rows (:func:`table1_rows`) and the spike table."""
    out = {"bu-forward-allowed": forward_allowed_text(cor1_fits),
           "bu-replication": replication_text(cor1_fits, budget_fits),
           "bu-steep": steep_text(cor1_fits, budget_fits, reference, slope_tolerance)}
    for key, setting in STATUS_SETTINGS.items():
        out[f"bu-c-{key}"] = statuses_text(cor1_fits, setting)
    out.update({"bu-half": half_as_fast_text(cor1_fits), "bu-t1-within": table1_within_text(table1),
                "bu-t1-larger": table1_larger_text(table1), "bu-t1-backward": zero_backward_text(table1),
                "bu-t1-forward": forward_like_biased_text(table1),
                "bu-t1-above": above_threshold_text(table1, budget_fits),
                "bu-T-max": f"{max(Ts):,}", "bu-spikes": spike_text(spike_table, spike_gamma)})
    return out


def raw_curves(budget: pd.DataFrame, exponents) -> tuple[pd.DataFrame, list]:
    """The runs of the raw-curves figure: standard SGD and the zero-mean forward budgets, labelled
    "standard SGD" and "a = …", with the labels in plotting order."""
    raw = budget[budget["pass"].isin(["none", "forward"]) & (budget["mean"] == "zero")].copy()  # SGD's mean is "zero" too
    raw["label"] = ["standard SGD" if p == "none" else f"a = {a:g}" for p, a in zip(raw["pass"], raw.a)]
    return raw, ["standard SGD"] + [f"a = {a:g}" for a in exponents]


def run_count_text(runs: pd.DataFrame, spikes: pd.DataFrame, results) -> str:
    """The build-log lines of the chapter's runs: rows of the run tables, distinct runs, how many were
    computed and how many read from the cache, the wall time, and how many diverged."""
    n_rows = len(runs) + len(spikes)  # a run that two analyses share is one row in each
    n_runs = runs.config_id.nunique() + spikes.config_id.nunique()
    return (f"{n_rows} rows in the run tables, {n_runs} distinct runs:\n"
            f"{cost_text(*results)}; diverged: {int(runs.diverged.sum() + spikes.diverged.sum())}")


def setup_text(Ts, n_seeds: int, n_seeds_pl: int, c_used: dict, mu: float, reference: dict) -> str:
    """The set-up as printed under the parameters: horizons, seeds, the step-size constants c (with the
    PL one as 3/μ) and the exponents of the two rates on these horizons."""
    rates = f"{reference['nonconvex']:g} (T⁻¹ᐟ²), {reference['pl']:.3f} (ln T/T)".replace("-", "−")
    return (f"horizons T: {', '.join(f'{T:,}' for T in Ts)}\n"
            f"seeds per horizon: {n_seeds} (non-convex), {n_seeds_pl} (PL)\n"
            f"c = {c_used['nonconvex']:g} (non-convex); c = {c_used['pl']:.3g} = 3/μ, μ = {mu:.3f} (PL)\n"
            f"exponents of the rates on these horizons: {rates}")
