"""Figure 4 with real mechanisms: rounding of the forward message z and of the backward message
σ(z̃) in the Section 7 logistic regression, on the compiled engine {cite}`kong2026perturbed`.

:func:`mechanism_configs` builds the runs (one per mechanism, place, γ, seed, plus standard
SGD); :func:`mechanism_slopes` fits the small-step slope of each curve
(:func:`fbsgd.studies.section7.design.small_step_slopes`) and attaches the γ → 0 prediction of the
mechanism's *measured* law (:func:`fbsgd.studies.real_mechanisms.mechanisms.fitted_uniform` → :mod:`fbsgd.theory.small_step_limits`);
the verdict functions judge floors, predictions and the forward/backward asymmetry with the
thresholds of :mod:`fbsgd.studies.section7.verdicts`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.studies.section7 import design as X
from fbsgd.studies.real_mechanisms.mechanisms import fitted_uniform, mechanism_label
from fbsgd.studies.section7.verdicts import (AGREEMENT_BAND, DECREASE_SLOPE, FLOOR_OVER_SGD, PLATEAU_SLOPE, RECOVERY_FACTOR,
                                in_band, trend)
from fbsgd.engine.sweeps import RunConfig
from fbsgd.book.verdicts import Verdict, outcome_of_cases
from fbsgd.studies.section7.verdicts import geometric_mean

__all__ = ["PLACES", "MESSAGE_OF", "mechanism_configs", "mechanism_slopes", "attach_predictions", "floor_call",
           "backward_no_floor_verdict", "forward_prediction_verdict", "asymmetry_table", "asymmetry_verdict",
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


def mechanism_slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Small-step slopes per (mechanism, place), with ``mechanism``, ``place`` and ``level`` columns."""
    sl = X.small_step_slopes(table)
    return sl.assign(mechanism=sl.figure, place=sl.panel,
                     level=np.where(sl.panel == "baseline", "standard SGD", sl.figure),
                     trend=[trend(s) for s in sl.slope])


def attach_predictions(slopes: pd.DataFrame, moments: pd.DataFrame, template: RunConfig) -> pd.DataFrame:
    """The γ → 0 prediction of each row from the measured mean and second moment of δ (forward) or ε
    (backward) on the message the place perturbs (``moments``: :func:`fbsgd.studies.real_mechanisms.mechanisms.moment_table`),
    through the uniform law with those two moments; ``template`` gives the problem's fields."""
    preds, esc, lows, highs = [], [], [], []
    for r in slopes.itertuples():
        if r.place == "baseline":
            preds.append(0.0), esc.append(False), lows.append(0.0), highs.append(0.0)
            continue
        m = moments[(moments.mechanism == r.mechanism) & (moments.message == MESSAGE_OF[r.place])].iloc[0]
        u = fitted_uniform(m["mean"], m["second_moment"])
        cfg = RunConfig(**{**template.__dict__, "figure": "", "panel": "", r.place: u})
        p, e = X.predicted_plateau(cfg)
        preds.append(p), esc.append(e), lows.append(u.low), highs.append(u.high)
    return slopes.assign(predicted_limit=preds, escapes=esc, fitted_low=lows, fitted_high=highs)


def floor_call(norm: float, predicted: float, sgd_norm: float) -> tuple[bool, str]:
    """Whether a measured stable norm at the smallest γ agrees with its γ → 0 prediction: a visible
    predicted floor (> FLOOR_OVER_SGD × standard SGD's norm) must be met within the agreement band;
    an invisible one (≤ that) must leave the norm within RECOVERY_FACTOR × standard SGD's."""
    if predicted > FLOOR_OVER_SGD * sgd_norm:
        ratio = norm / predicted
        return bool(in_band(ratio)), f"predicted floor {predicted:.3g} visible, measured/predicted {ratio:.2f}"
    ok = norm <= RECOVERY_FACTOR * sgd_norm
    return ok, f"predicted floor {predicted:.2g} below {FLOOR_OVER_SGD:g}× SGD, measured {norm / sgd_norm:.2f}× SGD"


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


def forward_prediction_verdict(claim, slopes: pd.DataFrame, name: str) -> Verdict:
    """Every forward mechanism's stable norm at the smallest γ agrees with its measured-law prediction (:func:`floor_call`)."""
    base = _sgd(slopes).norm_at_gamma_min
    sub = slopes[slopes.place == "forward"]
    calls = [floor_call(r.norm_at_gamma_min, r.predicted_limit, base) for r in sub.itertuples()]
    return Verdict(claim(name), outcome_of_cases([c[0] for c in calls]),
                   rule=f"at the smallest γ: a predicted floor above {FLOOR_OVER_SGD:g}× standard SGD's norm is met within "
                        f"{_BAND} (measured/predicted), a smaller one leaves the norm ≤ {RECOVERY_FACTOR:g}× SGD's "
                        f"(holds: every forward mechanism; partial: some; fails: none)",
                   evidence=f"standard SGD {base:.3g} at γ = {_sgd(slopes).gamma_min:g}; " + "; ".join(
                       f"{r.mechanism}: slope {r.slope:.2f}, {c[1]} → {'agrees' if c[0] else 'disagrees'}"
                       for r, c in zip(sub.itertuples(), calls)) + ".",
                   **_prediction_key(sub, base))


def _prediction_key(sub: pd.DataFrame, base: float) -> dict:
    """Key number of :func:`forward_prediction_verdict`: the measured / predicted floor farthest
    from 1 over the visible predictions; without one, the largest measured S / SGD's over the
    invisible ones (which :func:`floor_call` requires to stay ≤ RECOVERY_FACTOR)."""
    visible = sub[sub.predicted_limit > FLOOR_OVER_SGD * base]
    if len(visible):
        ratio = (visible.norm_at_gamma_min / visible.predicted_limit).to_numpy(dtype=float)
        worst = float(ratio[int(np.argmax(np.abs(np.log(ratio))))])
        return dict(key_number=worst, key_label="measured / predicted floor farthest from 1 (visible predictions)")
    if not len(sub):
        return dict(key_number=None, key_label="no forward mechanism")
    return dict(key_number=float((sub.norm_at_gamma_min / base).max()),
                key_label="largest measured S / SGD's at the smallest γ (every prediction below the visible level)")


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
                   key_number=float(asym.forward_over_backward.max()), key_label="largest S_forward/S_backward")


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
