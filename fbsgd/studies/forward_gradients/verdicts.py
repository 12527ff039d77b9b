"""The verdict rules of the forward-gradient chapter: tables in, :class:`fbsgd.book.verdicts.Verdict` out.

Each ``judge_*`` function applies one rule, with its thresholds named below, to the
tables of :mod:`fbsgd.studies.forward_gradients.study` and records the verdict in the chapter's
:class:`fbsgd.book.verdicts.Ledger` (which it returns, for display); ``judge_*_section`` and
:func:`judge_beale` apply one section's rules in the chapter's order.  :func:`summary_values` builds
every number and sentence the chapter's prose glues.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.studies.forward_gradients.study import PROBE_STEPS, estimator_ratios, probe_window
from fbsgd.metrics import log_slope
from fbsgd.book.verdicts import OUTCOMES, Ledger, Verdict, by_name, clause, outcome_of_cases


def _set(values) -> str:
    """A set of numbers as prose: {1, 4, 16} (sorted, :g format, no Python list syntax)."""
    return "{" + ", ".join(f"{v:g}" for v in sorted(set(float(x) for x in values))) + "}"

__all__ = ["SLOPE_TOL", "Z_MAX", "GRAND_MEAN_MAX", "RESOLVE_SE", "FLOOR_RATIO_TOL", "FLOOR_PRED_TOL",
           "STATIONARY_RELAXATIONS", "MUCH_SLOWER", "TIE_LOSS", "PROGRESS_BAND", "PROGRESS_FACTOR",
           "judge_error_rate", "judge_error_size", "judge_unbiased", "judge_variance", "judge_contraction_factor",
           "judge_contraction_threshold", "judge_sgd_trains", "judge_noise_floor", "judge_perceptron_steps",
           "judge_adam_slowdown", "judge_adam_vs_sgd", "judge_adam_mechanism", "summary_texts", "judge_beale",
           "judge_variance_section", "judge_sgd_section", "judge_adam_section", "setup_values", "small_step_values",
           "summary_values"]

SLOPE_TOL = 0.03  # |fitted slope of log RMS error vs log K + 1/2|
Z_MAX = 4.0  # largest |measured − closed form| in standard errors
GRAND_MEAN_MAX = 3.0  # largest miss of the grand mean, in units of its expected RMS size
RESOLVE_SE = 3.0  # a factor ρ resolves its sign when |1 − ρ| exceeds this many standard errors
FLOOR_RATIO_TOL = 0.25  # |measured floor ratio / (n + 2) − 1| at the smallest stationary step
FLOOR_PRED_TOL = 0.35  # |measured floor / linearized prediction − 1| at every stationary step
STATIONARY_RELAXATIONS = 3.0  # γ·μ·T/2 needed for a run to count as stationary
MUCH_SLOWER = 5.0  # "much slower": a slowdown of at least this at every learning rate
TIE_LOSS = 0.02  # best final losses closer than this are a tie: 5 % of the perceptron's best losses (about 0.4),
#                  too small a gap to call either optimizer better; stated before the runs, the same at every scale
PROGRESS_BAND = (0.4, 1.6)  # progress per step of forward-gradient Adam, in units of lr
PROGRESS_FACTOR = 2.0  # backprop Adam must advance more than this times as far per step


def judge_error_rate(ledger: Ledger, mc: pd.DataFrame) -> Verdict:
    """Slope of log RMS error against log K within SLOPE_TOL of −1/2."""
    fit = log_slope(mc.K, mc.rms)
    lo, hi = fit.ci()
    ok = abs(fit.slope + 0.5) < SLOPE_TOL
    return ledger.add(Verdict(ledger.claim("error_rate"), "holds" if ok else "fails",
        rule=f"|fitted slope of log RMS error against log K + 0.5| < {SLOPE_TOL:g}",
        evidence=f"fitted slope {fit.slope:.4f} (95% CI {lo:.4f} to {hi:.4f}; prediction −0.5) over K = "
                 f"{int(mc.K.min())}..{int(mc.K.max())}, {int(mc.repeats.iloc[0])} averages per K.",
        key_number=fit.slope, key_label="slope of log error vs log K",
        threshold=f"within ±{SLOPE_TOL:g} of −0.5"))


def judge_error_size(ledger: Ledger, mc: pd.DataFrame, u) -> Verdict:
    """Every measured MSE within Z_MAX standard errors of (n+1)‖u‖²/K."""
    z = np.abs(mc.z_mse.to_numpy())
    uu = float(np.dot(u, u))
    return ledger.add(Verdict(ledger.claim("error_size"), outcome_of_cases(z < Z_MAX),
        rule=f"|measured MSE − (n+1)‖∇f‖²/K| < {Z_MAX:g} standard errors at every K",
        evidence=f"the measured mean squared error matches (n+1)‖∇f‖²/K = 3·{uu:.3f}/K within {z.max():.1f} standard "
                 f"errors at the worst of {len(z)} values of K ({int((z < Z_MAX).sum())} within the threshold).",
        key_number=float(z.max()), key_label="largest |z|", threshold=f"< {Z_MAX:g} at every K"))


def judge_unbiased(ledger: Ledger, mc: pd.DataFrame, u) -> Verdict:
    """The grand mean of all draws misses u by less than GRAND_MEAN_MAX times its expected size, at every K."""
    r = mc.grand_mean_ratio.to_numpy()
    best = mc.loc[mc.grand_mean_error.idxmin()]
    most = mc.loc[(mc.K * mc.repeats).idxmax()]
    return ledger.add(Verdict(ledger.claim("unbiased"), outcome_of_cases(r < GRAND_MEAN_MAX),
        rule=f"grand mean of repeats×K draws misses ∇f by less than {GRAND_MEAN_MAX:g} times its expected RMS size "
             f"√((n+1)‖∇f‖²/(K·repeats)), at every K",
        evidence=f"over the {len(mc)} values of K, the grand mean misses ∇f = ({u[0]:.4f}, {u[1]:.4f}) by at most "
                 f"{r.max():.2f} times its expected size (smallest miss {best.grand_mean_error:.2e} at K = {int(best.K)}, with "
                 f"{int(best.K * best.repeats):,} draws; with the most draws, "
                 f"{int(most.K * most.repeats):,} at K = {int(most.K)}, the miss is {most.grand_mean_error:.2e}).",
        key_number=float(r.max()), key_label="largest miss / expected size", threshold=f"< {GRAND_MEAN_MAX:g} at every K"))


def judge_variance(ledger: Ledger, var: pd.DataFrame) -> Verdict:
    """Every measured relative variance within Z_MAX standard errors of (n+1)/K."""
    z = np.abs(var.z.to_numpy())
    big = var[var.n == var.n.max()].sort_values("K").iloc[0]
    return ledger.add(Verdict(ledger.claim("variance"), outcome_of_cases(z < Z_MAX),
        rule=f"|measured relative variance − (n+1)/K| < {Z_MAX:g} standard errors in every case",
        evidence=f"{len(var)} cases, n = {int(var.n.min())}..{int(var.n.max())}, K ∈ {_set(var.K)}: "
                 f"every measured relative variance is within {z.max():.1f} standard errors of (n+1)/K "
                 f"(e.g. n = {int(big.n)}, K = {int(big.K)}: measured {big.variance:.1f}, closed form "
                 f"{big.closed_form_variance:.0f}).",
        key_number=float(z.max()), key_label="largest |z|", threshold=f"< {Z_MAX:g} in every case"))


def judge_contraction_factor(ledger: Ledger, stab: pd.DataFrame) -> Verdict:
    """Every measured one-step factor within Z_MAX standard errors of 1 − 2γ + γ²(n+2)."""
    z = np.abs(stab.z.to_numpy())
    return ledger.add(Verdict(ledger.claim("contraction_factor"), outcome_of_cases(z < Z_MAX),
        rule=f"|measured mean one-step factor − (1 − 2γ + γ²(n+2))| < {Z_MAX:g} standard errors in every run",
        evidence=f"{len(stab)} runs (n ∈ {_set(stab.n)}, γ = c·2/(n+2), "
                 f"{int(stab.ratios.iloc[0])} one-step ratios each): measured factors within {z.max():.1f} standard errors "
                 f"of the closed form.",
        key_number=float(z.max()), key_label="largest |z|", threshold=f"< {Z_MAX:g} in every run"))


def judge_contraction_threshold(ledger: Ledger, stab: pd.DataFrame) -> Verdict:
    """Among the factors whose distance from 1 exceeds RESOLVE_SE standard errors of the
    closed form's, contraction (ρ < 1) exactly at c < 1; unresolved if no factor resolves."""
    resolved = np.abs(1 - stab.closed_form_rho) > RESOLVE_SE * stab.rho_se
    sub = stab[resolved]
    agree = ((sub.rho < 1) == (sub.c < 1)).to_numpy()
    outcome = "unresolved" if not len(sub) else ("holds" if agree.all() else "fails")
    return ledger.add(Verdict(ledger.claim("contraction_threshold"), outcome,
        rule=f"ρ̂ < 1 exactly when c < 1 (γ < 2/(n+2)), among the runs whose closed-form |1 − ρ| exceeds "
             f"{RESOLVE_SE:g} standard errors (unresolved if none)",
        evidence=f"contraction at every c < 1 and growth at every c > 1 among the {int(resolved.sum())} of {len(stab)} "
                 f"resolved runs: {'yes' if agree.all() else 'no'} ({int((~agree).sum())} with the wrong sign); "
                 f"c ∈ {_set(stab.c)}.",
        key_number=float((~agree).sum()), key_label="runs with the wrong sign", threshold="0 runs (of at least 1 resolved)"))


def judge_sgd_trains(ledger: Ledger, table: pd.DataFrame) -> Verdict:
    """Every (model, lr) of forward-gradient SGD: no run diverged and the median second-half loss is below the initial."""
    fg = table[table.estimator == "forward gradient"]
    ok = ((fg.second_half < fg.initial) & (fg.diverged == 0)).to_numpy()
    return ledger.add(Verdict(ledger.claim("sgd_trains"), outcome_of_cases(ok), threshold=f"all {len(ok)} configurations",
        rule="at every (model, γ): no forward-gradient run diverged and the median over seeds of the mean loss over the "
             "second half of each run is below the initial loss",
        evidence="loss with forward gradients, second half / initial: " + "; ".join(
            f"{r.model} γ={r.lr:g}: {r.second_half:.3g} / {r.initial:.3g}" for r in fg.itertuples())
        + f"; diverged runs: {int(fg.diverged.sum())}.",
        key_number=float(ok.sum()), key_label=f"configurations that train (of {len(ok)})"))


def judge_noise_floor(ledger: Ledger, floors: pd.DataFrame) -> Verdict:
    """At the smallest stationary step the floor ratio is within FLOOR_RATIO_TOL of n + 2, and every
    stationary floor is within FLOOR_PRED_TOL of its linearized prediction; unresolved without a stationary step."""
    n = int(floors.n.iloc[0])
    mu = float(floors.mu_H.iloc[0])
    rule = (f"runs with γ·μ·T/2 ≥ {STATIONARY_RELAXATIONS:g} count as stationary; at the smallest such γ "
            f"|measured floor ratio forward/backprop ÷ (n+2) − 1| < {FLOOR_RATIO_TOL:g}, and every stationary floor "
            f"within {FLOOR_PRED_TOL:.0%} of its linearized prediction (unresolved if no step is stationary)")
    st = floors[floors.relaxation_times >= STATIONARY_RELAXATIONS].sort_values("lr")
    if not len(st):
        return ledger.add(Verdict(ledger.claim("noise_floor"), "unresolved", rule=rule,
                            evidence=f"not measurable at this scale: no step size in {_set(floors.lr)} lets the runs "
                                     f"reach stationarity (μ = {mu:.3f}).",
                            key_number=float(floors.relaxation_times.max()), key_label="largest γ·μ·T/2 reached",
                            threshold=f"≥ {STATIONARY_RELAXATIONS:g} for at least one step size"))
    small = st.iloc[0]
    rel = np.abs(np.r_[st.measured_backprop / st.predicted_backprop, st.measured_forward / st.predicted_forward] - 1)
    ok = abs(small.measured_ratio / (n + 2) - 1) < FLOOR_RATIO_TOL and float(rel.max()) < FLOOR_PRED_TOL
    return ledger.add(Verdict(ledger.claim("noise_floor"), "holds" if ok else "fails", rule=rule,
        evidence=f"logistic regression (n = {n}): mean excess loss over the second half of the runs, forward / backprop = "
                 f"{small.measured_ratio:.2f} at γ = {small.lr:g} (n + 2 = {n + 2}); at larger γ: "
                 + (", ".join(f"γ={r.lr:g}: {r.measured_ratio:.1f} (linearized prediction {r.predicted_ratio:.1f})"
                              for r in st.iloc[1:].itertuples()) or "none")
                 + f"; all measured floors within {100 * float(rel.max()):.0f}% of the linearized predictions. "
                   f"Stationary steps (μ = {mu:.3f}): γ ∈ {_set(st.lr)}.",
        key_number=float(small.measured_ratio / (n + 2)), key_label="floor ratio / (n+2) at the smallest step",
        threshold=f"within {1 - FLOOR_RATIO_TOL:g}–{1 + FLOOR_RATIO_TOL:g}, and every floor within {FLOOR_PRED_TOL:.0%} "
                  f"of its prediction"))


def judge_perceptron_steps(ledger: Ledger, table: pd.DataFrame, model: str = "perceptron") -> Verdict:
    """The slowdown of forward-gradient SGD at the smallest step is below that at the largest."""
    fg = table[(table.model == model) & (table.estimator == "forward gradient")].sort_values("lr")
    n = ""
    if "n" in fg:
        n = f" (n = {int(fg.n.iloc[0])})"
    ok = bool(fg.slowdown.iloc[0] < fg.slowdown.iloc[-1])
    return ledger.add(Verdict(ledger.claim("perceptron_steps"), "holds" if ok else "fails", threshold="> 1",
        rule="slowdown of forward gradients against backprop at the smallest γ < slowdown at the largest γ",
        evidence=f"{model}{n}: iterations backprop needs to reach the forward-gradient run's final loss, as a slowdown "
                 "factor: " + ", ".join(f"γ={r.lr:g}: ×{r.slowdown:.3g}" for r in fg.itertuples()) + ".",
        key_number=float(fg.slowdown.iloc[-1] / fg.slowdown.iloc[0]), key_label="slowdown at the largest γ / at the smallest"))


def judge_adam_slowdown(ledger: Ledger, adam: pd.DataFrame, steps: int, model: str = "perceptron") -> Verdict:
    """Slowdown of forward-gradient Adam at least MUCH_SLOWER at every learning rate."""
    fg = adam[(adam.model == model) & (adam.estimator == "forward gradient")]
    bp = adam[(adam.model == model) & (adam.estimator == "backprop")]
    ok = (fg.slowdown >= MUCH_SLOWER).to_numpy()
    return ledger.add(Verdict(ledger.claim("adam_slowdown"), outcome_of_cases(ok),
        rule=f"slowdown of forward gradients under Adam ≥ {MUCH_SLOWER:g} at every learning rate tried ('much slower')",
        threshold=f"≥ {MUCH_SLOWER:g} at every learning rate",
        evidence=f"{model} (n = {int(fg.n.iloc[0])}), {steps} iterations: slowdown " + ", ".join(
            f"lr={r.lr:g}: ×{r.slowdown:.3g}" for r in fg.itertuples())
        + f"; best final loss over the grid: backprop {bp.final.min():.4f}, forward gradient {fg.final.min():.4f}.",
        key_number=float(fg.slowdown.min()), key_label="smallest slowdown"))


def judge_adam_vs_sgd(ledger: Ledger, adam: pd.DataFrame, sgd: pd.DataFrame, model: str = "perceptron") -> Verdict:
    """Best final loss of forward gradients with Adam above that with SGD by at least TIE_LOSS (holds: worse
    with Adam); otherwise it does not hold: closer than TIE_LOSS is a tie, which is not "worse", and
    below by more is better."""
    def best(t, est):
        return float(t[(t.model == model) & (t.estimator == est)].final.min())

    a_fg, s_fg, a_bp, s_bp = best(adam, "forward gradient"), best(sgd, "forward gradient"), best(adam, "backprop"), best(sgd, "backprop")
    diff = a_fg - s_fg
    outcome = "holds" if diff >= TIE_LOSS else "fails"
    word = "worse with Adam" if diff >= TIE_LOSS else ("a tie" if abs(diff) < TIE_LOSS else "better with Adam")
    return ledger.add(Verdict(ledger.claim("adam_vs_sgd"), outcome,
        rule=f"best final {model} loss over each grid with forward gradients, Adam − SGD: at least {TIE_LOSS:g} is worse "
             f"with Adam (holds); closer than {TIE_LOSS:g} is a tie (5 % of losses of about 0.4) and below −{TIE_LOSS:g} "
             f"better with Adam, and neither is worse (does not hold)",
        threshold=f"≥ {TIE_LOSS:g} (a tie: |difference| < {TIE_LOSS:g})",
        evidence=f"best final loss with forward gradients: Adam {a_fg:.4f}, SGD {s_fg:.4f} (difference {diff:+.4f}: {word}); "
                 f"with backprop: Adam {a_bp:.4f}, SGD {s_bp:.4f}. Switching from SGD to Adam changes the best loss by "
                 f"{a_bp - s_bp:+.4f} with backprop and by {diff:+.4f} with forward gradients.",
        key_number=diff, key_label="best loss, Adam − SGD (forward gradients)"))


def judge_adam_mechanism(ledger: Ledger, adam: pd.DataFrame, sgd: pd.DataFrame, model: str = "perceptron",
                         probe_steps: int = 200) -> Verdict:
    """On ``model``: forward-gradient Adam's progress per step within PROGRESS_BAND (units of lr) at every
    lr, and backprop Adam's more than PROGRESS_FACTOR times it at every lr."""
    fg = adam[adam.estimator == "forward gradient"].set_index(["model", "lr"])
    bp = adam[adam.estimator == "backprop"].set_index(["model", "lr"])
    f, b = fg.loc[model], bp.loc[model]
    lo, hi = PROGRESS_BAND
    ok = (f.early_progress_per_lr.between(lo, hi) & (b.early_progress_per_lr > PROGRESS_FACTOR * f.early_progress_per_lr)).to_numpy()
    small = sgd.sort_values("lr").groupby(["model", "estimator"]).first().early_progress_per_lr.unstack()
    ratio_sgd = (small["forward gradient"] / small["backprop"]).to_dict()
    others = [m for m in fg.index.get_level_values(0).unique() if m != model]

    def pairs(m):
        return ", ".join(f"lr={lr:g}: {x:.2f} / {y:.2f}" for lr, x, y in
                         zip(fg.loc[m].index, fg.loc[m].early_progress_per_lr, bp.loc[m].early_progress_per_lr))

    return ledger.add(Verdict(ledger.claim("adam_mechanism"), outcome_of_cases(ok),
        rule=f"{model}, every lr: progress per step of forward-gradient Adam within {lo:g}–{hi:g}·lr and backprop "
             f"Adam's more than {PROGRESS_FACTOR:g} times it",
        threshold=f"forward-gradient progress within {lo:g}–{hi:g}·lr, backprop's > {PROGRESS_FACTOR:g}× it, at every lr",
        evidence=f"{model} (n = {int(b.n.iloc[0])}, ‖∇ℓ‖₁/‖∇ℓ‖₂ = {b.l1_over_l2_at_start.iloc[0]:.1f} at the start), progress "
                 f"per step in units of lr over the first {probe_steps} iterations, forward gradient / backprop: {pairs(model)}"
                 f"; step length of forward-gradient Adam {f.early_step_length_per_lr.mean():.1f}·lr (predicted "
                 f"{f.predicted_fg_step_length_per_lr.iloc[0]:.1f}·lr). "
                 + "".join(f"{m} (n = {int(bp.loc[m].n.iloc[0])}, ‖∇ℓ‖₁/‖∇ℓ‖₂ = "
                           f"{bp.loc[m].l1_over_l2_at_start.iloc[0]:.1f}, so little to lose): {pairs(m)}. " for m in others)
                 + "With SGD at its smallest step the ratio forward / backprop is "
                 + ", ".join(f"{m} {v:.2f}" for m, v in ratio_sgd.items()) + " (unbiased: 1 expected).",
        key_number=float(f.early_progress_per_lr.mean()), key_label="forward-gradient Adam progress per step / lr"))


# -- the verdicts of each section, in the order the chapter shows them ------------------------------


def judge_beale(ledger: Ledger, mc: pd.DataFrame, u) -> list[Verdict]:
    """The Beale section's verdicts: :func:`judge_error_rate`, :func:`judge_error_size`, :func:`judge_unbiased`."""
    return [judge_error_rate(ledger, mc), judge_error_size(ledger, mc, u), judge_unbiased(ledger, mc, u)]


def judge_variance_section(ledger: Ledger, var: pd.DataFrame, stab: pd.DataFrame) -> list[Verdict]:
    """The variance section's verdicts: :func:`judge_variance`, :func:`judge_contraction_factor`,
    :func:`judge_contraction_threshold`."""
    return [judge_variance(ledger, var), judge_contraction_factor(ledger, stab),
            judge_contraction_threshold(ledger, stab)]


def judge_sgd_section(ledger: Ledger, sgd: pd.DataFrame, floors: pd.DataFrame) -> list[Verdict]:
    """The SGD section's verdicts: :func:`judge_sgd_trains`, :func:`judge_noise_floor`,
    :func:`judge_perceptron_steps`."""
    return [judge_sgd_trains(ledger, sgd), judge_noise_floor(ledger, floors), judge_perceptron_steps(ledger, sgd)]


def judge_adam_section(ledger: Ledger, adam: pd.DataFrame, sgd: pd.DataFrame, mlp_steps: int) -> list[Verdict]:
    """The Adam section's verdicts: :func:`judge_adam_slowdown` over the perceptron's ``mlp_steps``
    iterations, :func:`judge_adam_vs_sgd`, and :func:`judge_adam_mechanism` with the probe's window
    min(PROBE_STEPS, mlp_steps)."""
    return [judge_adam_slowdown(ledger, adam, mlp_steps), judge_adam_vs_sgd(ledger, adam, sgd),
            judge_adam_mechanism(ledger, adam, sgd, probe_steps=min(PROBE_STEPS, mlp_steps))]


# -- the chapter's closing prose, computed from the verdicts -----------------------------------------

_by_name = by_name


def summary_texts(ledger: Ledger) -> dict:
    """The closing section's measured sentences, one per glue name (without the ``fg-sum-`` prefix),
    each chosen by the outcome of the verdict it restates."""
    v = _by_name(ledger)
    return {
        "error-rate": clause(v.get("error_rate"), "the error falls like K⁻¹ᐟ² (fitted slope {k:.3f})",
                             "the error does not fall like K⁻¹ᐟ² (fitted slope {k:.3f})"),
        "error-size": clause(v.get("error_size"),
                             "its size is the closed form √((n+1)/K)‖∇f‖ at every K (largest |z| {k:.2g})",
                             "its size departs from the closed form √((n+1)/K)‖∇f‖ (largest |z| {k:.2g})"),
        "unbiased": clause(v.get("unbiased"), "the grand mean shows no offset beyond its sampling error",
                           "the grand mean misses the true gradient by more than its sampling error"),
        "variance": clause(v.get("variance"),
                           "the measured variance is (n+1)‖∇ℓ‖²/K in every case measured (largest |z| {k:.2g})",
                           "the measured variance departs from (n+1)‖∇ℓ‖²/K (largest |z| {k:.2g})"),
        "threshold": clause(v.get("contraction_threshold"),
                            "the second moment contracts exactly when γ < 2/(n+2) in every resolved run",
                            "the sign of 1 − ρ̂ disagrees with γ < 2/(n+2) in {k:.0f} resolved runs",
                            unresolved="no run resolves the sign of 1 − ρ̂"),
        "floor": clause(v.get("noise_floor"),
                        "the floor ratio at the smallest stationary step is {k:.2f} × (n+2) and every measured floor "
                        "matches its linearized prediction",
                        "the measured floors do not match n + 2 and the linearized prediction (floor ratio / (n+2) "
                        "= {k:.2f} at the smallest stationary step)",
                        unresolved="no step size lets the runs reach stationarity at this scale, so the factor n + 2 "
                                   "of the floor is not tested"),
        "trains": clause(v.get("sgd_trains"), "trains both models at every step size tried",
                         "trains neither model at any step size tried",
                         partial="trains in {k:.0f} of the (model, γ) configurations only"),
        "perceptron": clause(v.get("perceptron_steps"),
                             "on the perceptron forward gradients fall further behind backpropagation the larger the "
                             "step (the slowdown at the largest γ is {k:.3g} times that at the smallest), as the variance "
                             "term predicts",
                             "on the perceptron the slowdown does not grow with the step (at the largest γ it is {k:.3g} "
                             "times that at the smallest), against the variance term's prediction"),
        "adam": clause(v.get("adam_slowdown"),
                       "is much slower than Adam with backpropagation on the perceptron at every learning rate, as the "
                       "report found (smallest slowdown ×{k:.3g})",
                       "is not much slower than Adam with backpropagation on the perceptron (smallest slowdown "
                       "×{k:.3g}), unlike the report's finding",
                       partial="is much slower than Adam with backpropagation on the perceptron at some learning rates "
                               "only (smallest slowdown ×{k:.3g})"),
        "mechanism": clause(v.get("adam_mechanism"),
                            "match that explanation: forward-gradient Adam advances about lr per step (mean "
                            "{k:.2f}·lr) and backprop Adam more than " f"{PROGRESS_FACTOR:g}" " times as far, so Adam's per-coordinate scaling "
                            "cannot see the coordinates' scales through the isotropic noise and its advantage over "
                            "SGD disappears",
                            "do not match that explanation (forward-gradient Adam advances {k:.2f}·lr per step on "
                            "average)",
                            partial="match that explanation at some learning rates only (forward-gradient Adam "
                                    "advances {k:.2f}·lr per step on average)"),
        "adam-vs-sgd": OUTCOMES[v["adam_vs_sgd"].outcome].words if "adam_vs_sgd" in v else "not judged",
    }


# -- every value the chapter's prose glues -------------------------------------------------------------


def setup_values(params: dict) -> dict:
    """The set-up numbers the prose quotes (glue name -> value), from the resolved parameters:
    averages per K and per case, hidden units, minibatch size, samples, and the Beale point as
    "(x, y)" with a typographic minus."""
    point = "(" + ", ".join(f"{x:g}" for x in params["beale_point"]).replace("-", "−") + ")"
    return {"fg-mc-repeats": params["mc_repeats"], "fg-var-draws": params["var_draws"],
            "fg-hidden": params["mlp_hidden"], "fg-batch": params["batch_size"],
            "fg-beale-point": point, "fg-n-samples": params["n_samples"]}


def small_step_values(sgd_table: pd.DataFrame) -> dict:
    """At each model's smallest SGD step (a :func:`fbsgd.studies.forward_gradients.study.summarize_runs` table):
    the step ``fg-small-lr-*``, the second-half loss with backprop ``fg-small-bp-*`` and with
    forward gradients ``fg-small-fg-*``, and their ratio ``fg-small-ratio-*`` (* = logistic, perceptron)."""
    small = estimator_ratios(sgd_table).groupby("model").first()  # sorted by lr: the smallest γ per model
    out = {}
    for key, model in (("logistic", "logistic regression"), ("perceptron", "perceptron")):
        out[f"fg-small-lr-{key}"] = float(small.lr[model])
        out[f"fg-small-bp-{key}"] = float(small.backprop[model])
        out[f"fg-small-fg-{key}"] = float(small.forward[model])
        out[f"fg-small-ratio-{key}"] = float(small.ratio[model])
    return out


def summary_values(ledger: Ledger, params: dict, models: dict, steps: dict, sgd_table: pd.DataFrame) -> dict:
    """Every number and sentence the chapter's prose glues (name -> value): :func:`setup_values`,
    the perceptron's number of weights ``fg-mlp-n``, the Adam probe's window ``fg-probe-window``
    (:func:`fbsgd.studies.forward_gradients.study.probe_window` of the iterations ``steps``), the smallest-step
    SGD numbers (:func:`small_step_values`) and the closing sentences ``fg-sum-*`` (:func:`summary_texts`)."""
    out = setup_values(params)
    out["fg-mlp-n"] = int(models["perceptron"]["w0"].size)
    out["fg-probe-window"] = probe_window(steps)
    out.update(small_step_values(sgd_table))
    out.update({f"fg-sum-{key}": text for key, text in summary_texts(ledger).items()})
    return out
