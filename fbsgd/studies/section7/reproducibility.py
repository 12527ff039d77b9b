"""The reproducibility notes of Section 7.1 {cite}`kong2026perturbed`: the book's open choices rerun
under their alternatives, and the tolerances of its speed choices.

The Figure 4 and Figure 6 grids are rerun under each alternative and judged with the same rules
as the figure chapters (:mod:`fbsgd.studies.section7.verdicts`); a verdict of this chapter says whether
those outcomes change.  The verdicts read only the slope window (the
:data:`fbsgd.studies.section7.design.SLOPE_WINDOW` smallest step sizes), so the grids are run there only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.studies.section7 import design as X
from fbsgd.studies.section7 import verdicts as S
from fbsgd.engine.sweeps import RunConfig, run_sweep
from fbsgd.book.verdicts import OUTCOMES, Ledger, Verdict

__all__ = ["EWMA_VARIANTS", "TOLERANCES", "variant_configs", "run_variants", "figure_verdicts", "compare_variants",
           "comparison_summary", "tolerance_configs", "run_tolerances", "unchanged_verdict", "settles_verdict", "deviation", "tolerance_verdict",
           "metric_verdict", "fig3_sigma_f_verdict", "VARIANT_NAMES", "SHORT_TITLES", "MARKS", "short_title",
           "change_text", "drift_text", "agree_text"]

# readable names of the variants (the keys are claim names and stay in the CSV)
VARIANT_NAMES = {"alt_mode": "other draw mode", "alt_w0": "w₀ ~ N(0, I)", "alt_fig6_l2": "Figure 6 with ρ‖w‖²",
                 "alt_ewma_fast": "EWMA β = 0.9", "alt_ewma_slow": "EWMA β = 0.999"}
# short titles of the rerun verdicts, by claim id
SHORT_TITLES = {
    "frequent_zero_mean.fig4_backward_decreases": "Figure 4, backward: keeps decreasing",
    "frequent_zero_mean.fig4_forward_plateau": "Figure 4, forward: pinned at a floor",
    "nonzero_mean.plateau_every_sigma_b": "Figure 6: a plateau for every σ_b",
    "nonzero_mean.plateau_grows": "Figure 6: the plateau rises with σ_b",
    "nonzero_mean.baseline_decreases": "Figure 6: standard SGD keeps decreasing",
}
MARKS = {**{name: o.mark for name, o in OUTCOMES.items()}, "not run": "—"}


def short_title(claim_id: str, text: str = "") -> str:
    """The short title of a rerun verdict (its claim text if it has none)."""
    return SHORT_TITLES.get(claim_id, text or claim_id)


def agree_text(n: int) -> str:
    """"both verdicts agree", "all 5 verdicts agree", "the verdict agrees"."""
    return {0: "no verdict to compare", 1: "the verdict agrees", 2: "both verdicts agree"}.get(n, f"all {n} verdicts agree")


def change_text(comparison: pd.DataFrame, name: str) -> str:
    """What variant ``name`` changes: "1 of 3 verdicts change (Figure 6: the plateau rises with σ_b ◐ → ✔)"."""
    sub = comparison[comparison.variant == name]
    changed = sub[sub.changed]
    if changed.empty:
        return f"none of its {len(sub)} verdicts changes" if len(sub) != 1 else "its verdict does not change"
    which = "; ".join(f"{short_title(c.claim_id, c.claim)} {MARKS[c.main]} → {MARKS[c.alternative]}"
                      for c in changed.itertuples())
    return f"{len(changed)} of {len(sub)} verdicts change ({which})"


def drift_text(main_slopes: pd.DataFrame, l2_slopes: pd.DataFrame, l2_table: pd.DataFrame) -> str:
    """Whether the drift of the non-convex Figure 6 belongs to its regularizer: the σ_b predicted to
    escape with each regularizer, and the largest final ‖w_T‖ with ρ‖w‖²."""
    def esc(sl):
        e = sl[(sl.perturbation != "none") & sl.escapes.astype(bool)]
        return ", ".join(f"{x:g}" for x in e.sigma_b) or "none"
    w = l2_table[l2_table.perturbation != "none"].final_weight_norm.max()
    n_main = esc(main_slopes)
    belongs = (n_main != "none" and esc(l2_slopes) == "none")
    return (f"σ_b predicted to escape: {n_main} with the non-convex regularizer, {esc(l2_slopes)} with ρ‖w‖² "
            f"(largest final ‖w_T‖ there {w:.3g})" + ("; so the drift belongs to the non-convex regularizer, "
                                                       "not to the experiment" if belongs else ""))

# alternative EWMA factors, read off the main runs (fbsgd.engine.sweeps.ALT_EWMAS): claim name -> β
EWMA_VARIANTS = {"alt_ewma_fast": 0.9, "alt_ewma_slow": 0.999}
# comparison -> (tolerance on the relative change of the stable norm, on the stable iteration as a fraction of it
# on top of one metric interval)
TOLERANCES = {"metric_every": (0.02, 0.05), "precision": (0.005, 0.01), "metric": (0.005, 0.01)}


def _claims(chapter):
    return Ledger(chapter).claim


def variant_configs(common: dict, sigma_f_levels, sigma_b_levels, fig6_levels, rho_nonconvex: float,
                    rho_l2_fig6: float, gammas, seeds, mode: str) -> dict[str, list[RunConfig]]:
    """The runs of each variant: the Figure 4 grid (non-convex, both panels) and the Figure 6 grid at
    ``gammas`` × ``seeds``, with the fields ``common`` (:func:`fbsgd.studies.section7.design.common`).  Keys are the
    claim names of the variants ("main" for the reference)."""
    def fig4(**over):
        return X.frequent_configs("repro", "nonconvex", rho_nonconvex, sigma_f_levels, sigma_b_levels, gammas, seeds,
                                  **{**common, **over})

    def fig6(regularizer="nonconvex", rho=rho_nonconvex, **over):
        return X.nonzero_mean_configs("repro", regularizer, rho, fig6_levels, gammas, seeds, **{**common, **over})

    alt_mode = "shared" if mode == "per_sample" else "per_sample"
    return {"main": fig4() + fig6(),
            "alt_mode": fig4(mode=alt_mode) + fig6(mode=alt_mode),
            "alt_w0": fig4(w0_std=1.0),
            "alt_fig6_l2": fig6("l2", rho_l2_fig6)}


def tolerance_configs(reference: pd.DataFrame) -> dict[str, list[RunConfig]]:
    """The rows of ``reference`` rerun with the metric at every iteration, a float64 pass, and the
    separate float64 metric pass; keys are the :data:`TOLERANCES` names."""
    one = [RunConfig.from_row(r) for _, r in reference.iterrows()]
    return {name: [RunConfig(**{**c.__dict__, name: value}) for c in one]
            for name, value in (("metric_every", 1), ("precision", "float64"), ("metric", "float64"))}


def run_tolerances(reference: pd.DataFrame, n_jobs=None, **kw) -> dict[str, pd.DataFrame]:
    """One sweep of :func:`tolerance_configs`; the run table of each comparison, in the order of ``reference``."""
    configs = tolerance_configs(reference)
    table = run_sweep([c for cs in configs.values() for c in cs], n_jobs=n_jobs, **kw).table
    n = len(reference)
    return {name: table.iloc[i * n:(i + 1) * n].reset_index(drop=True) for i, name in enumerate(configs)}


def run_variants(configs: dict[str, list[RunConfig]], n_jobs=None, **kw):
    """One sweep of every variant's runs; a tidy table with a ``variant`` column (the EWMA variants
    are the main runs with the alternative EWMA summaries), and the sweep result."""
    flat = [(v, c) for v, cs in configs.items() for c in cs]
    result = run_sweep([c for _, c in flat], n_jobs=n_jobs, **kw)
    table = result.table.assign(variant=[v for v, _ in flat])
    main = table[table.variant == "main"]
    extra = [main.assign(variant=name, stable_grad_norm=main[f"stable_grad_norm_ewma{b:g}"],
                         stable_iteration=main[f"stable_iteration_ewma{b:g}"]) for name, b in EWMA_VARIANTS.items()]
    return pd.concat([table, *extra], ignore_index=True), result


def figure_verdicts(table: pd.DataFrame) -> list[Verdict]:
    """The verdicts of Figure 4 (frequent_zero_mean.fig4_*) and Figure 6 (nonzero_mean.*) that ``table``
    has the runs for, judged with the figure chapters' rules."""
    out = []
    zero, biased = table[table["mean"] == "zero"], table[table["mean"] == "nonzero"]
    if len(zero) and (zero.perturbation == "forward").any():
        out += S.frequent_verdicts(_claims("frequent_zero_mean"), X.slopes_with_predictions(X.with_levels(zero)),
                                   "Figure 4 grid", "fig4")
    if len(biased):
        out += S.nonzero_verdicts(_claims("nonzero_mean"), X.slopes_with_predictions(X.with_levels(biased)))
    return out


def compare_variants(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, verdict): the outcome under the main choices and under the variant."""
    reference = {v.claim.id: v.outcome for v in figure_verdicts(runs[runs.variant == "main"])}
    rows = []
    for variant, table in runs[runs.variant != "main"].groupby("variant", sort=False):
        for v in figure_verdicts(table):
            main = reference.get(v.claim.id, "not run")
            rows.append(dict(variant=variant, claim_id=v.claim.id, claim=v.claim.text, main=main,
                             alternative=v.outcome, changed=main != "not run" and main != v.outcome, evidence=v.evidence))
    return pd.DataFrame(rows)


def comparison_summary(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per variant: how many verdicts were compared, how many changed, and which."""
    return pd.DataFrame([dict(variant=VARIANT_NAMES.get(v, v), verdicts=len(g), changed=int(g.changed.sum()),
                              which="; ".join(f"{short_title(r.claim_id, r.claim)} {MARKS[r.main]} → {MARKS[r.alternative]}"
                                              for r in g[g.changed].itertuples()) or "—")
                         for v, g in comparison.groupby("variant", sort=False)])


def unchanged_verdict(claim, name: str, comparison: pd.DataFrame, erratum: str = "") -> Verdict:
    """The verdicts of variant ``name`` are those of the main choices (holds if none changes, fails if any does)."""
    sub = comparison[comparison.variant == name]
    changed = sub[sub.changed]
    return Verdict(
        claim(name), "holds" if changed.empty else "fails",
        rule="every verdict of the Figure 4 / Figure 6 grids has the same outcome as under the main choices "
             "(holds if none changes; fails if any does)",
        evidence=(f"{VARIANT_NAMES.get(name, name)}: " + (f"{agree_text(len(sub))} with the main choices." if changed.empty else
                  f"{len(changed)} of {len(sub)} verdicts change: "
                  + "; ".join(f"{short_title(c.claim_id, c.claim)} {MARKS[c.main]} → {MARKS[c.alternative]}"
                              for c in changed.itertuples()) + ".")),
        key_number=len(changed), key_label="verdicts changed", erratum=erratum)


def settles_verdict(claim, slopes: pd.DataFrame, table: pd.DataFrame) -> Verdict:
    """With ρ‖w‖² no biased run escapes and every plateau is the predicted one (ratio in the agreement band)."""
    pert = slopes[slopes.perturbation != "none"]
    ratio = pert.norm_at_gamma_min / pert.predicted_limit
    ok = S.in_band(ratio) & ~pert.escapes.astype(bool)
    return Verdict(
        claim("fig6_l2_settles"), S.outcome_of_cases(ok),
        rule=f"no σ_b is predicted to escape and measured / predicted at the smallest γ is within "
             f"{S.AGREEMENT_BAND[0]:g}–{S.AGREEMENT_BAND[1]:g} (holds: every σ_b; partial: some; fails: none)",
        evidence="measured / predicted at the smallest γ: " + ", ".join(f"{S.level_name(r.level)}: {x:.3f}" for r, x in zip(pert.itertuples(), ratio))
        + f"; predicted escapes: {int(pert.escapes.sum())}; largest mean ‖w_T‖ {table[table.perturbation != 'none'].final_weight_norm.max():.3g}.",
        key_number=float(ratio.iloc[np.argmax(np.abs(np.log(ratio.to_numpy())))]) - 1.0,
        key_label="measured / predicted − 1, farthest from 0")


def deviation(a: pd.DataFrame, b: pd.DataFrame, comparison: str, metric_every: int) -> dict:
    """How far the runs ``a`` are from the reference runs ``b`` (same configurations, same order),
    and whether within the tolerances :data:`TOLERANCES` [comparison]."""
    tol_norm, tol_it = TOLERANCES[comparison]
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    rel = (a.stable_grad_norm - b.stable_grad_norm).abs() / b.stable_grad_norm
    it = (a.stable_iteration - b.stable_iteration).abs()
    rel_it = it / b.stable_iteration.clip(lower=1)
    allowed = metric_every + tol_it * b.stable_iteration
    return dict(comparison=comparison, runs=len(a), tol_rel_stable_norm=tol_norm, tol_rel_stable_iteration=tol_it,
                max_rel_stable_norm=float(rel.max()), median_rel_stable_norm=float(rel.median()),
                max_abs_stable_iteration=float(it.max()), max_rel_stable_iteration=float(rel_it.max()),
                within_tolerance=bool((rel <= tol_norm).all() and (it <= allowed).all()))


def tolerance_verdict(claim, name: str, row, what: str, metric_every: int) -> Verdict:
    """The reported numbers of ``row`` (:func:`deviation`) stay within its tolerances."""
    return Verdict(
        claim(name), "holds" if row["within_tolerance"] else "fails",
        rule=f"relative change of every stable gradient norm ≤ {row['tol_rel_stable_norm']:.1%} and change of every stable "
             f"iteration ≤ {metric_every} + {row['tol_rel_stable_iteration']:.0%} of it",
        evidence=f"{what}, {row['runs']} runs: largest relative change of the stable gradient norm {row['max_rel_stable_norm']:.2e} "
                 f"(median {row['median_rel_stable_norm']:.1e}); largest change of the stable iteration "
                 f"{row['max_abs_stable_iteration']:g} iterations.",
        key_number=row["max_rel_stable_norm"], key_label="largest relative change of the stable norm")


def metric_verdict(claim, in_pass: pd.DataFrame, separate: pd.DataFrame, metric_every: int) -> tuple[Verdict, dict]:
    """The in-pass metric against the separate float64 pass on the same runs: the measured changes, and
    whether any verdict of the Figure 4 grid changes outcome (rejudged on both tables)."""
    row = deviation(in_pass, separate, "metric", metric_every)
    va = figure_verdicts(in_pass.assign(variant="in-pass"))
    a = {v.claim.id: v.outcome for v in va}
    title = {v.claim.id: short_title(v.claim.id, v.claim.text) for v in va}
    b = {v.claim.id: v.outcome for v in figure_verdicts(separate.assign(variant="float64"))}
    changed = [k for k in a if a[k] != b.get(k)]
    return Verdict(
        claim("tol_metric_in_pass"), "holds" if not changed else "fails",
        rule="every verdict rejudged on the runs with the separate float64 metric pass has the outcome it has with the "
             "in-pass metric (holds if none changes; fails if any does)",
        evidence=f"{row['runs']} runs: largest relative change of the stable gradient norm {row['max_rel_stable_norm']:.2e}, "
                 f"of the stable iteration {row['max_rel_stable_iteration']:.2e} ({row['max_abs_stable_iteration']:g} iterations); "
                 f"{len(a)} verdicts rejudged, " + (f"{len(changed)} change: " + "; ".join(f"{title[k]} {MARKS[a[k]]} → {MARKS.get(b.get(k), '—')}"
                                                          for k in changed) + "." if changed else "none changes: "
                 + "; ".join(f"{title[k]} {MARKS[a[k]]}" for k in a) + "."),
        key_number=row["max_rel_stable_norm"], key_label="largest relative change of the stable norm"), row


def fig3_sigma_f_verdict(claim, slopes: pd.DataFrame, text_value: float = 1.0, caption_value: float = 2.0) -> Verdict:
    """Figure 3's two printed σ_f (text, caption) both pin a floor, by the rule of
    :func:`fbsgd.studies.section7.verdicts.forward_pinned`; unresolved if the grid lacks one of them."""
    pinned = S.forward_pinned(slopes, min(text_value, caption_value))
    pinned = pinned[pinned.sigma_f.isin([text_value, caption_value])]
    erratum = (f"Figure 3's caption gives σ_f = {caption_value:g} for the left panel; the text of Section 7.2.1 describes it "
               f"as σ_f = {text_value:g}. The book follows the caption (parameter fig3_sigma_f).")
    rule = (f"both σ_f = {text_value:g} and {caption_value:g} pinned by the rule of the Figure 4 forward verdict "
            f"(slope < {S.PLATEAU_SLOPE}, or on the predicted floor)")
    if len(pinned) < 2:
        return Verdict(claim("fig3_sigma_f"), "unresolved", rule=rule, erratum=erratum,
                       evidence=f"the Figure 4 grid lacks σ_f = {text_value:g} or {caption_value:g}.")
    return Verdict(
        claim("fig3_sigma_f"), S.outcome_of_cases(pinned.pinned), rule=rule + " (holds: both; partial: one; fails: neither)",
        evidence="; ".join(f"{S.level_name(r.level)}: slope {r.slope:.2f}, measured/predicted floor {r.ratio:.2f} → "
                           f"{'pinned, decided by ' + r.decided_by if r.pinned else 'not pinned'}" for r in pinned.itertuples()) + ".",
        key_number=float(pinned.slope.max()), key_label="largest slope of the two", erratum=erratum)
