"""The verdicts of the formats chapter: each takes ``claim`` (``ledger.claim``) and the tables of
:mod:`fbsgd.studies.formats.study`, and returns a :class:`fbsgd.book.verdicts.Verdict` with its rule,
evidence and key number.  Thresholds are the book's (:mod:`fbsgd.studies.section7.verdicts`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.book.verdicts import Verdict, outcome_of_cases, outcome_of_flags, share_text
from fbsgd.studies.formats.study import ZERO_MEAN_RTOL
from fbsgd.studies.real_mechanisms.study import floor_finds
from fbsgd.studies.section7.verdicts import RECOVERY_FACTOR
from fbsgd.studies.real_mechanisms.deep_chain import seed_flag  # a case judged seed by seed

__all__ = ["classes_verdict", "ceil_sr_verdict", "site_verdict", "sr_floor_verdict", "depth_verdict", "seed_flag",
           "floor_rows"]


def classes_verdict(claim, classes: pd.DataFrame, name: str = "classes_scale_rule") -> Verdict:
    """Among the stochastic kinds with a scale rule (MX: "ocp"/"ceil"; NVFP4: "nearest"/"ceil"): every
    ceil kind is zero-mean given the input on every message, and every other one is biased on at least one
    message (a case per kind).  Key number: the largest relative conditional bias of a non-ceil stochastic
    kind."""
    sr = classes[(classes["mode"] == "stochastic") & (classes.rule != "amax")]
    flags, ev = [], []
    for kind, g in sr.groupby("kind", sort=False):
        ceil = bool((g.rule == "ceil").all())
        ok = bool(g.zero_mean.all()) if ceil else bool((~g.zero_mean).any())
        flags.append(ok)
        worst = g.loc[g.bias_rel.idxmax()]
        ev.append(f"{kind}: {'zero mean on every message' if g.zero_mean.all() else 'biased'} (largest ‖E[δ|x]‖/‖x‖ "
                  f"{worst.bias_rel:.2g} on {worst.message}, {worst.biased_share:.1%} of its entries biased)")
    other = sr[sr.rule != "ceil"]
    return Verdict(claim(name), outcome_of_cases(flags),
                   rule=f"exact conditional laws on every message; zero mean given the input: ‖E[δ|x]‖/‖x‖ ≤ "
                        f"{ZERO_MEAN_RTOL:g} at every input; holds: every stochastic kind with the ceil rule is zero-mean "
                        f"on every message and every other stochastic kind is biased on at least one (each kind a case)",
                   evidence="; ".join(ev) + f"; {share_text(flags)} kinds as claimed.",
                   key_number=float(other.bias_rel.max()) if len(other) else None,
                   key_label="largest ‖E[δ|x]‖/‖x‖ of a stochastic kind without the ceil rule",
                   threshold=f"‖E[δ|x]‖/‖x‖ ≤ {ZERO_MEAN_RTOL:g}: zero mean")


def floor_rows(slopes: pd.DataFrame, settled: pd.DataFrame) -> pd.DataFrame:
    """Per curve: the floor found by the book's one rule (:func:`fbsgd.studies.real_mechanisms.study.floor_finds`:
    True, False, or None undecided), with its slope and S(γ_min) over standard SGD's."""
    finds = floor_finds(slopes, settled)
    base = float(slopes[slopes.place == "baseline"].norm_at_gamma_min.iloc[0])
    rows = []
    for r in slopes[slopes.place != "baseline"].itertuples():
        key = next((k for k in finds if k.split(" | ")[1:3] == [r.mechanism, r.place]), None)
        rows.append(dict(mechanism=r.mechanism, place=r.place, slope=r.slope, over_sgd=r.norm_at_gamma_min / base,
                         predicted=getattr(r, "predicted_limit", np.nan), floor=None if key is None else finds[key]))
    return pd.DataFrame(rows)


def ceil_sr_verdict(claim, slopes: pd.DataFrame, settled: pd.DataFrame, name: str = "fig4_ceil_sr_no_floor") -> Verdict:
    """Every backward curve whose kind rounds stochastically with the scale rounded up ("ceil") has no floor
    by the book's floor rule (undecided cases: :func:`fbsgd.book.verdicts.outcome_of_flags`).  Carries
    every floor the figure finds (``finds``)."""
    rows = floor_rows(slopes, settled)
    sub = rows[(rows.place == "backward") & rows.mechanism.str.contains(" ceil ") & rows.mechanism.str.endswith("stochastic")]
    flags = [None if f is None else not f for f in sub.floor]
    ev = "; ".join(f"{r.mechanism} backward: slope {r.slope:.2f}, S(γ_min) {r.over_sgd:.2f}× SGD's → "
                   f"{'undecided' if r.floor is None else 'floor' if r.floor else 'no floor'}" for r in sub.itertuples())
    return Verdict(claim(name), outcome_of_flags(flags),
                   rule="the book's floor rule (fbsgd.studies.section7.verdicts.floor_found: slope over the smallest "
                        "step sizes, S at the smallest γ over standard SGD's, drift test) on every backward curve with "
                        "stochastic rounding and the ceil scale rule; holds: none leaves a floor",
                   evidence=(ev or "no such curve") + ".", finds=floor_finds(slopes, settled),
                   key_number=float(sub.over_sgd.max()) if len(sub) else None,
                   key_label="largest S(γ_min) over standard SGD's among these curves")


def _per_seed(table: pd.DataFrame) -> pd.DataFrame:
    clean = table[table.recipe == "none"].set_index(["N", "seed"])
    key = pd.MultiIndex.from_frame(table[["N", "seed"]])
    return table.assign(over_clean=table.stable_grad_norm.to_numpy() / clean.stable_grad_norm.reindex(key).to_numpy(),
                        both_settled=table.settled.to_numpy() & clean.settled.reindex(key).to_numpy().astype(bool))


def site_verdict(claim, table: pd.DataFrame, name: str = "digits_site") -> Verdict:
    """Per (depth, recipe): seed by seed, S_forward / S_backward; the forward site dominates when every
    seed's ratio exceeds RECOVERY_FACTOR, the backward one when every seed's is below 1/RECOVERY_FACTOR,
    else a tie (undecided when a run did not settle).  Holds: forward dominates in every decided case;
    unresolved: no case decided."""
    t = _per_seed(table)
    f = t[t.site == "forward"].set_index(["N", "recipe", "seed"])
    b = t[t.site == "backward"].set_index(["N", "recipe", "seed"])
    ratio = (f.stable_grad_norm / b.stable_grad_norm).dropna()
    ok = (f.both_settled & b.both_settled).reindex(ratio.index)
    flags, ev, keys = [], [], []
    for (N, rec), r in ratio.groupby(level=[0, 1], sort=False):
        settled = bool(ok.loc[r.index].all())
        fw, bw = seed_flag(r, RECOVERY_FACTOR), seed_flag(1.0 / r, RECOVERY_FACTOR)
        word = "undecided (not settled)" if not settled else "forward" if fw else "backward" if bw else "tie"
        flags.append(None if not settled else True if fw else False if bw else None)
        keys.append(float(np.exp(np.mean(np.log(r)))))
        ev.append(f"N = {N}, {rec}: S_fwd/S_bwd {r.min():.2f}–{r.max():.2f} over seeds → {word}")
    decided = [x for x in flags if x is not None]
    outcome = "unresolved" if not decided else outcome_of_cases(decided)
    return Verdict(claim(name), outcome,
                   rule=f"per depth and recipe, seed by seed: S_forward/S_backward > {RECOVERY_FACTOR:g} in every seed: "
                        f"the forward site dominates; < 1/{RECOVERY_FACTOR:g} in every seed: the backward site; else a tie "
                        f"(not counted); a case with a run that did not settle is undecided; holds: forward in every "
                        f"decided case; unresolved: none decided",
                   evidence="; ".join(ev) + ".", key_number=float(np.max(keys)) if keys else None,
                   key_label="largest S_forward/S_backward (geometric mean over seeds)")


def sr_floor_verdict(claim, table: pd.DataFrame, name: str = "digits_sr_no_floor") -> Verdict:
    """Every recipe with stochastic rounding on the gradients ("SR" in its name) at the backward site, every
    depth: S over the clean run's within RECOVERY_FACTOR in every seed (True), above it in every seed
    (False: a floor), else undecided; a case with an unsettled run is undecided."""
    t = _per_seed(table)
    sub = t[(t.site == "backward") & t.recipe.str.contains("SR")]
    flags, ev = [], []
    for (N, rec), g in sub.groupby(["N", "recipe"], sort=False):
        f = seed_flag(g.over_clean, RECOVERY_FACTOR)
        f = None if f is None or not g.both_settled.all() else not f
        flags.append(f)
        ev.append(f"N = {N}, {rec} backward: S/S_clean {g.over_clean.min():.2f}–{g.over_clean.max():.2f} "
                  f"→ {'undecided' if f is None else 'no floor' if f else 'floor'}")
    return Verdict(claim(name), outcome_of_flags(flags),
                   rule=f"S over the clean run's (same depth and seed) ≤ {RECOVERY_FACTOR:g} in every seed: no floor; "
                        f"> {RECOVERY_FACTOR:g} in every seed: a floor; else, or a run not settled: undecided",
                   evidence=("; ".join(ev) or "no recipe with stochastic rounding on the gradients") + ".",
                   key_number=float(sub.over_clean.max()) if len(sub) else None, key_label="largest S/S_clean")


def depth_verdict(claim, table: pd.DataFrame, name: str = "digits_depth") -> Verdict:
    """Per recipe and site: seed by seed, (S/S_clean at the deepest N) / (S/S_clean at the shallowest N);
    depth amplifies when every seed's ratio exceeds RECOVERY_FACTOR, does not when none does, undecided
    otherwise or when a run did not settle.  Holds: amplifies in every case."""
    t = _per_seed(table)
    t = t[t.recipe != "none"]
    lo, hi = t.N.min(), t.N.max()
    flags, ev, keys = [], [], []
    if lo == hi:
        return Verdict(claim(name), "unresolved", rule="needs two depths", evidence=f"one depth only (N = {lo}).")
    for (rec, site), g in t.groupby(["recipe", "site"], sort=False):
        a = g[g.N == lo].set_index("seed")
        b = g[g.N == hi].set_index("seed")
        r = (b.over_clean / a.over_clean).dropna()
        settled = bool(a.both_settled.all() and b.both_settled.all())
        f = seed_flag(r, RECOVERY_FACTOR) if settled else None
        flags.append(f)
        keys.append(float(np.exp(np.mean(np.log(r)))) if len(r) else np.nan)
        ev.append(f"{rec} {site}: (S/S_clean at N = {hi}) / (at N = {lo}) {r.min():.2f}–{r.max():.2f} over seeds → "
                  f"{'undecided' if f is None else 'amplified' if f else 'not amplified'}")
    return Verdict(claim(name), outcome_of_flags(flags),
                   rule=f"per recipe and site, seed by seed: (S/S_clean at the deepest N) / (at the shallowest) > "
                        f"{RECOVERY_FACTOR:g} in every seed: amplified; ≤ {RECOVERY_FACTOR:g} in every seed: not; else, "
                        f"or a run not settled, undecided; holds: amplified in every case",
                   evidence="; ".join(ev) + ".", key_number=float(np.nanmax(keys)) if keys else None,
                   key_label="largest deepest/shallowest ratio (geometric mean over seeds)")
