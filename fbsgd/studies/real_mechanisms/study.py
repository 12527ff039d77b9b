"""Figure 4 with real mechanisms: rounding of the forward message z and of the backward message
σ(z̃) in the Section 7 logistic regression, on the compiled engine {cite}`kong2026perturbed`.

:func:`mechanism_configs` builds the runs (one per mechanism, place, γ, seed, plus standard
SGD); :func:`mechanism_slopes` fits the small-step slope of each curve
(:func:`fbsgd.studies.section7.design.small_step_slopes`); :func:`attach_predictions` attaches the
γ → 0 prediction of each curve's own mechanism at its own place, from the mechanism's conditional
law given its input (:func:`fbsgd.theory.small_step_limits.small_step_limit`); :func:`prediction_cases`
sets each prediction against the measured norm at the smallest γ and against standard SGD's seed
range there (a prediction below that range is not visible in the measurement); the verdict
functions judge floors, predictions and the forward/backward asymmetry with the thresholds of
:mod:`fbsgd.studies.section7.verdicts`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.studies.section7 import design as X
from fbsgd.studies.real_mechanisms.mechanisms import mechanism_label
from fbsgd.studies.section7.verdicts import (AGREEMENT_BAND, DECREASE_SLOPE, RECOVERY_FACTOR,
                                SETTING_S7, floor_found, in_band, is_settled, trend)
from fbsgd.engine.sweeps import RunConfig, run_sweep
from fbsgd.theory.small_step_limits import small_step_limit
from fbsgd.book.verdicts import Verdict, fact, outcome_of_cases, share_text
from fbsgd.studies.section7.verdicts import geometric_mean, trace_drift

__all__ = ["PLACES", "MESSAGE_OF", "mechanism_configs", "run_figure4", "settled_curves", "floor_finds", "mechanism_slopes", "attach_predictions", "prediction_cases",
           "prediction_verdict", "invisible_text", "backward_no_floor_verdict", "asymmetry_table", "asymmetry_verdict",
           "negligible_verdict", "unchanged_text"]

PLACES = ("forward", "backward")
MESSAGE_OF = {"forward": "forward z", "backward": "backward σ(z)"}
_BAND = f"{AGREEMENT_BAND[0]:g}–{AGREEMENT_BAND[1]:g}"


def mechanism_configs(mechanisms, gammas, seeds, places=PLACES, **common) -> list[RunConfig]:
    """Standard SGD (figure "standard SGD", panel "baseline") and every mechanism at every place,
    γ and seed (figure = the mechanism's label, panel = the place)."""
    out = []
    for g in gammas:
        for s in seeds:
            out.append(RunConfig(figure="standard SGD", panel="baseline", gamma=g, seed=s, **common))
            for p in mechanisms:
                for place in places:
                    out.append(RunConfig(figure=mechanism_label(p), panel=place, gamma=g, seed=s, **{place: p}, **common))
    return out


def run_figure4(configs, *, n_jobs=None, cache_dir=True, progress: bool = True):
    """The Figure 4 sweep through :func:`fbsgd.engine.sweeps.run_sweep` with its default trace (that of
    the other Section 7 chapters and of the correctors chapter's γ scan, so the same runs share cache
    entries), adding to the table each run's ``drift``: :func:`fbsgd.studies.section7.verdicts.trace_drift`,
    the one computation both chapters use (:func:`fbsgd.metrics.drift_ratio` of the EWMA interpolated
    onto every recorded iterate: the mean over the last quarter of the run over the quarter before; NaN
    for a diverged run)."""
    configs = list(configs)
    res = run_sweep(configs, n_jobs=n_jobs, cache_dir=cache_dir, progress=progress)
    traces = {cid: (g.t.to_numpy(), g.ewma.to_numpy()) for cid, g in res.traces.sort_values("t").groupby("config_id")}
    res.table = res.table.assign(drift=[np.nan if r.diverged else trace_drift(*traces[r.config_id], c.T, c.metric_every)
                                        for c, r in zip(configs, res.table.itertuples())])
    return res


def settled_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Per curve (figure, panel): its smallest γ, the drift ratios of its runs there (smallest and
    largest) and ``settled``: every run at the smallest γ passed the drift test
    (:func:`fbsgd.studies.section7.verdicts.is_settled`; a diverged run has no drift and fails it)."""
    rows = []
    for (fig, panel), g in table.groupby(["figure", "panel"], sort=False):
        at = g[g.gamma == g.gamma.min()]
        d = at.drift.to_numpy(dtype=float)
        rows.append(dict(figure=fig, panel=panel, gamma_min=float(at.gamma.iloc[0]), drift_min=float(np.nanmin(d)) if np.isfinite(d).any() else np.nan,
                         drift_max=float(np.nanmax(d)) if np.isfinite(d).any() else np.nan,
                         settled=bool(is_settled(d) and not at.diverged.any())))
    return pd.DataFrame(rows)


def floor_finds(slopes: pd.DataFrame, settled: pd.DataFrame) -> dict:
    """The facts "leaves a floor" that Figure 4 finds, for every rounding mechanism and place, by the
    book's one rule :func:`fbsgd.studies.section7.verdicts.floor_found` (slope over the smallest step
    sizes, S(γ_min) over standard SGD's there, and settled: the curve's runs and standard SGD's at γ_min
    passed the drift test, as the correctors chapter asks of the same runs), as
    ``{fact("floor", mechanism, place, SETTING_S7): found}`` — an undecided case (None) is left out."""
    base = _sgd(slopes).norm_at_gamma_min
    ok = settled.set_index(["figure", "panel"]).settled
    sgd_ok = bool(ok.get(("standard SGD", "baseline"), True))
    out = {}
    for r in slopes[slopes.place != "baseline"].itertuples():
        found = floor_found(r.slope, r.norm_at_gamma_min / base, bool(ok.get((r.mechanism, r.place), False)) and sgd_ok)
        if found is not None:
            out[fact("floor", r.mechanism, r.place, SETTING_S7)] = found
    return out


def mechanism_slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Small-step slopes per (mechanism, place), with ``mechanism``, ``place`` and ``level`` columns."""
    sl = X.small_step_slopes(table)
    return sl.assign(mechanism=sl.figure, place=sl.panel,
                     level=np.where(sl.panel == "baseline", "standard SGD", sl.figure),
                     trend=[trend(s) for s in sl.slope])


def attach_predictions(slopes: pd.DataFrame, mechanisms, template: RunConfig) -> pd.DataFrame:
    """The γ → 0 prediction of each row of :func:`mechanism_slopes` from the row's own mechanism at its
    own place: the run's perturbation object (one of ``mechanisms``, found by its label) placed on
    ``template`` (the problem's fields) and handed to :func:`fbsgd.theory.small_step_limits.small_step_limit`,
    which averages the gradient over the mechanism's conditional law given its input.  Adds
    ``predicted_limit`` (‖∇f(w∞)‖), ``escapes``, ``method`` (the computation that ran: "conditional"
    for every rounding) and ``residual`` (‖D(w∞)‖, what is left of the averaged direction at w∞);
    standard SGD's row predicts no floor (0, method "none")."""
    by_label = {mechanism_label(p): p for p in mechanisms}
    curves = slopes[slopes.place != "baseline"]
    missing = sorted(set(curves.mechanism) - set(by_label))
    if missing:
        raise ValueError(f"attach_predictions: mechanisms must hold the perturbation of every curve of slopes; "
                         f"missing {missing}, given {sorted(by_label)}")
    places = sorted(set(curves.place) - set(PLACES))
    if places:
        raise ValueError(f"attach_predictions: a curve's place must be one of {list(PLACES)} (or 'baseline'), got {places}")
    rows = []
    for r in slopes.itertuples():
        if r.place == "baseline":
            rows.append(dict(predicted_limit=0.0, escapes=False, method="none", residual=0.0))
            continue
        cfg = RunConfig(**{**template.__dict__, "figure": "", "panel": "", r.place: by_label[r.mechanism]})
        lim = small_step_limit(cfg.problem(), cfg.plan())
        rows.append(dict(predicted_limit=float(lim["plateau"]), escapes=bool(lim["escapes"]), method=lim["method"],
                         residual=float(lim["residual"])))
    return slopes.assign(**pd.DataFrame(rows, index=slopes.index))


def prediction_cases(slopes: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """One row per curve (mechanism × place) of :func:`attach_predictions`'s table, at the curve's
    smallest γ (``gamma_min``): the prediction (``predicted``, with ``method``, ``residual``,
    ``escapes``), the measured stable norm (``measured``: geometric mean over seeds), standard SGD's
    there (``sgd_norm``, geometric mean, and its range over seeds ``sgd_low``–``sgd_high``, from the
    sweep ``table``), ``visible`` (the prediction lies above ``sgd_high``; below it a floor hides in
    standard SGD's own seed spread), ``ratio`` = measured / predicted and ``agrees``: a visible
    prediction is met within AGREEMENT_BAND; one that is not visible must leave S within
    RECOVERY_FACTOR × standard SGD's (no floor seen, as predicted)."""
    ok = table[~table.diverged]
    base = ok[ok.panel == "baseline"]
    rows = []
    for r in slopes[slopes.place != "baseline"].itertuples():
        sgd = base[base.gamma == r.gamma_min].stable_grad_norm
        sgd_norm = geometric_mean(sgd) if len(sgd) else np.nan
        low, high = (float(sgd.min()), float(sgd.max())) if len(sgd) else (np.nan, np.nan)
        pred, meas = float(r.predicted_limit), float(r.norm_at_gamma_min)
        visible = bool(pred > high)
        ratio = meas / pred if pred > 0 else np.inf
        agrees = bool(in_band(ratio)) if visible else bool(meas <= RECOVERY_FACTOR * sgd_norm)
        rows.append(dict(mechanism=r.mechanism, place=r.place, gamma_min=r.gamma_min, predicted=pred, method=r.method,
                         residual=r.residual, escapes=r.escapes, measured=meas, sgd_norm=sgd_norm, sgd_low=low,
                         sgd_high=high, visible=visible, ratio=ratio, agrees=agrees))
    return pd.DataFrame(rows, columns=["mechanism", "place", "gamma_min", "predicted", "method", "residual", "escapes",
                                       "measured", "sgd_norm", "sgd_low", "sgd_high", "visible", "ratio", "agrees"])


def _sgd_headers(cases: pd.DataFrame) -> str:
    """Standard SGD's stable norm at each smallest γ of ``cases``: geometric mean and range over seeds."""
    first = cases.drop_duplicates("gamma_min")
    return "; ".join(f"standard SGD at γ = {r.gamma_min:g}: {r.sgd_norm:.3g} (seeds {r.sgd_low:.3g}–{r.sgd_high:.3g})"
                     for r in first.itertuples())


def _case_text(r) -> str:
    head = f"{r.mechanism} {r.place}: predicted {r.predicted:.3g}"
    verdict = "agrees" if r.agrees else "disagrees"
    if r.visible:
        return f"{head}, measured {r.measured:.3g}, measured/predicted {r.ratio:.2f} → {verdict}"
    return f"{head}, not visible, measured {r.measured / r.sgd_norm:.2f}× SGD → {verdict}"


def prediction_verdict(claim, cases: pd.DataFrame, name: str, finds: dict | None = None) -> Verdict:
    """Every curve's stable norm at the smallest γ, on either pass, against its own mechanism's γ → 0
    prediction (:func:`prediction_cases`), each curve a case of :func:`fbsgd.book.verdicts.outcome_of_cases`
    (the book's share rule); unresolved when every case agrees but no prediction is visible (then no floor
    was put to the test).  The key number is the measured / predicted ratio farthest from 1 among the
    visible predictions."""
    outcome = outcome_of_cases(cases.agrees)
    visible = cases[cases.visible]
    if outcome == "holds" and not len(visible):
        outcome = "unresolved"
    rule = (f"at the smallest γ, a prediction above the top of standard SGD's seed range there is visible and must be met "
            f"within {_BAND} (measured S / predicted); one below it is not visible and must leave S within "
            f"{RECOVERY_FACTOR:g}× standard SGD's; each format, mode and place (forward and backward) is a case; "
            f"unresolved if every case agrees but no prediction is visible")
    if len(visible):
        ratio = visible.ratio.to_numpy(dtype=float)
        key = dict(key_number=float(ratio[int(np.argmax(np.abs(np.log(ratio))))]),
                   key_label="measured / predicted farthest from 1 (visible predictions, both passes)")
    else:
        key = dict(key_number=None, key_label="no visible prediction")
    evidence = (_sgd_headers(cases) + "; " + "; ".join(_case_text(r) for r in cases.itertuples())
                + f"; in all, {share_text(cases.agrees)} agree, {int(cases.visible.sum())} predictions visible.")
    return Verdict(claim(name), outcome, rule=rule, evidence=evidence,
                   threshold=f"measured / predicted within {_BAND} (visible); S ≤ {RECOVERY_FACTOR:g}× SGD's (not visible)",
                   finds=dict(finds or {}), **key)


def invisible_text(cases: pd.DataFrame) -> str:
    """A sentence for the caption and the prose: which predictions lie below standard SGD's seed range at
    the smallest γ (so no measurement can show them), with their values and the top of the range."""
    out = []
    for g, part in cases.groupby("gamma_min", sort=True):
        top = float(part.sgd_high.iloc[0])
        hidden = part[~part.visible]
        where = f"the top of standard SGD's seed range at γ = {g:g}, {top:.2g}"
        if not len(hidden):
            out.append(f"Every prediction lies above {where}, so each is visible in the measured norm.")
        else:
            listed = ", ".join(f"{r.mechanism} {r.place} ({r.predicted:.2g})" for r in hidden.itertuples())
            out.append(f"Not visible, because below {where}: {listed}; of these the verdict asks only that the "
                       f"measured norm stay within {RECOVERY_FACTOR:g}× standard SGD's.")
    return " ".join(out)


def _sgd(slopes):
    return slopes[slopes.place == "baseline"].iloc[0]


def backward_no_floor_verdict(claim, slopes: pd.DataFrame, moments: pd.DataFrame, name: str) -> Verdict:
    """Backward mechanisms that are zero-mean given the input keep decreasing (slope > DECREASE_SLOPE)."""
    zm = set(moments[(moments.message == MESSAGE_OF["backward"]) & (moments.zero_mean == "given the input")].mechanism)
    sub = slopes[(slopes.place == "backward") & slopes.mechanism.isin(zm)]
    flags = sub.slope > DECREASE_SLOPE
    return Verdict(claim(name), outcome_of_cases(flags),
                   rule=f"for every backward mechanism measured zero-mean given the input, the log-log slope of S over "
                        f"the smallest step sizes is > {DECREASE_SLOPE} (holds: all; partial: some; fails: none)",
                   evidence="; ".join(f"{r.mechanism}: slope {r.slope:.3f} ± {r.slope_se:.3f}" for r in sub.itertuples())
                   + f" (standard SGD {_sgd(slopes).slope:.2f}).",
                   key_number=float(sub.slope.min()) if len(sub) else None, key_label="smallest slope")


def asymmetry_table(slopes: pd.DataFrame) -> pd.DataFrame:
    """Per mechanism: stable norm at the smallest γ, forward / backward, each over standard SGD's, and
    which pass hurts more: "forward" / "backward" (ratio beyond RECOVERY_FACTOR either way) or "tie"."""
    base = _sgd(slopes).norm_at_gamma_min
    f = slopes[slopes.place == "forward"].set_index("mechanism").norm_at_gamma_min
    b = slopes[slopes.place == "backward"].set_index("mechanism").norm_at_gamma_min
    t = pd.DataFrame({"forward_over_sgd": f / base, "backward_over_sgd": b / base}).dropna()
    t["forward_over_backward"] = t.forward_over_sgd / t.backward_over_sgd
    t["worse"] = np.select([t.forward_over_backward > RECOVERY_FACTOR, t.forward_over_backward < 1 / RECOVERY_FACTOR],
                           ["forward", "backward"], "tie")
    return t.reset_index()


def asymmetry_verdict(claim, asym: pd.DataFrame, name: str) -> Verdict:
    """The forward pass is the sensitive one: among mechanisms where one pass is worse by more than
    RECOVERY_FACTOR, it is the forward pass; unresolved if every mechanism is a tie."""
    decided = asym[asym.worse != "tie"]
    rule = (f"at the smallest γ, S_forward/S_backward > {RECOVERY_FACTOR:g} means the forward pass is worse, "
            f"< 1/{RECOVERY_FACTOR:g} the backward pass, else a tie; holds: forward worse for every decided mechanism; "
            f"partial: some; fails: none; unresolved: all ties")
    ev = "; ".join(f"{r.mechanism}: forward {r.forward_over_sgd:.2f}× SGD, backward {r.backward_over_sgd:.2f}× SGD → "
                   f"{r.worse}" for r in asym.itertuples())
    outcome = "unresolved" if not len(decided) else outcome_of_cases(decided.worse == "forward")
    return Verdict(claim(name), outcome, rule=rule, evidence=ev + ".",
                   key_number=float((decided.worse == "forward").mean()) if len(decided) else None,
                   key_label="share of the decided mechanisms where the forward pass is worse")


def _log_factors(table: pd.DataFrame, prefix: str = "") -> pd.Series:
    """Per (mechanism, place) whose label starts with ``prefix``: the largest |log(S / standard SGD's S)|
    over γ (geometric means over seeds, diverged runs left out)."""

    ok = table[~table.diverged]
    gm = ok.groupby(["figure", "panel", "gamma"]).stable_grad_norm.apply(geometric_mean)
    base = gm.loc["standard SGD", "baseline"]
    sub = gm[[f.startswith(prefix) and f != "standard SGD" for f in gm.index.get_level_values(0)]]
    ratio = sub / base.reindex(sub.index.get_level_values(2)).to_numpy()
    return ratio.groupby(level=[0, 1]).agg(lambda r: np.abs(np.log(r)).max())


def unchanged_text(table: pd.DataFrame) -> str:
    """The mechanisms whose stable norm stays within RECOVERY_FACTOR of standard SGD's at every γ on
    both messages (and with no diverged run), as words: "bfloat16 nearest and float16 nearest", or "none"."""
    per = _log_factors(table)
    bad = set(table[table.diverged].figure)
    ok = [m for m, g in per.groupby(level=0, sort=False)
          if m not in bad and len(g) == len(PLACES) and bool((g <= np.log(RECOVERY_FACTOR)).all())]
    if not ok:
        return "none of the mechanisms"
    return ok[0] if len(ok) == 1 else ", ".join(ok[:-1]) + " and " + ok[-1]


def negligible_verdict(claim, table: pd.DataFrame, name: str, prefix: str) -> Verdict:
    """Mechanisms whose label starts with ``prefix``: at every γ (geometric mean over seeds) the stable
    norm is within RECOVERY_FACTOR of standard SGD's at both places."""

    per = _log_factors(table, prefix)
    flags = per <= np.log(RECOVERY_FACTOR)
    return Verdict(claim(name), outcome_of_cases(flags),
                   rule=f"S within a factor {RECOVERY_FACTOR:g} of standard SGD's at every γ (geometric means over seeds), "
                        f"for each {prefix} mechanism and place (holds: all; partial: some; fails: none)",
                   evidence="; ".join(f"{m} {p}: largest factor {np.exp(v):.3f}" for (m, p), v in per.items()) + ".",
                   key_number=float(np.exp(per.max())), key_label="largest factor from standard SGD")
