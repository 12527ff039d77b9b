"""The plumbing of the real-mechanisms chapter (chapters/real_mechanisms.ipynb): the mechanisms it
measures, the deep-chain design, the table views it displays, the lines that say what a sweep cost,
and every number and sentence its prose glues (name → value).  The analysis itself lives in
:mod:`fbsgd.studies.real_mechanisms.mechanisms`, :mod:`fbsgd.studies.real_mechanisms.study`, :mod:`fbsgd.studies.real_mechanisms.deep_chain` and :mod:`fbsgd.studies.real_mechanisms.atlas`.
"""
from __future__ import annotations

import time

import pandas as pd

from fbsgd.studies.real_mechanisms import deep_chain as DC
from fbsgd.studies.real_mechanisms import study as MS
from fbsgd.studies.real_mechanisms import mechanisms as MX
from fbsgd.book import params as P
from fbsgd import perturbations as PT
from fbsgd.studies.real_mechanisms.atlas import boundary_rate, budget_exponent
from fbsgd.studies.section7.design import ROUND_FORMATS, ROUND_MODES, section7_rules, section7_spec
from fbsgd.lowprec import FIELDS
from fbsgd.studies.real_mechanisms.study import unchanged_text
from fbsgd.studies.real_mechanisms.mechanisms import flip_range_text
from fbsgd.book.report import show
from fbsgd.studies.section7.verdicts import RECOVERY_FACTOR
from fbsgd.engine.sweeps import RunConfig, cost_text

__all__ = ["chapter_spec", "chapter_rules", "checkpoints_problem", "keep_fractions_problem", "ROUNDINGS", "mechanism_set", "moment_verdicts", "fig4_verdicts", "depth_verdicts", "optimizer_verdicts", "deep_design", "timed", "sweep_line", "deep_line", "atlas_bounds", "moments_view",
           "prediction_view", "asymmetry_view", "growth_view", "lemma_view", "floor_ratios", "floor_ratio_view", "text_values",
           "prediction_values", "summary_values", "OPTIMIZERS"]

OPTIMIZERS = ["sgd", "heavyball", "adam"]
FLIP_FIELDS = ("exponent", "mantissa", "sign")
ROUNDINGS = tuple(f"{f} {m}" for f in ROUND_FORMATS for m in ROUND_MODES)  # the "format mode" names of deep_formats


def chapter_spec() -> dict:
    """The chapter's parameter declarations for :func:`fbsgd.book.params.resolve`: the Section 7 ones
    (with two seeds at both scales) and those of the moment table, the atlas and the deep chain."""
    return dict(
        **{**section7_spec(), "seeds": P.IntList(paper=[0, 1], quick=[0, 1], min=0)},
        formats=P.StrList(choices=ROUND_FORMATS),
        modes=P.StrList(choices=ROUND_MODES),
        keep_fractions=P.FloatList(min=1e-4, max=1.0), flip_rates=P.FloatList(min=0.0, max=1.0, label="{:g}"),
        atlas_rates=P.FloatList(paper=[1e-10, 1e-9, 1e-8, 1e-7, 1e-6], quick=[1e-7, 1e-6, 1e-5, 1e-4, 1e-3],
                                min=0.0, max=1.0, label="{:g}"),
        message_gamma=P.Float(min=1e-9), message_T=P.Int(paper=20_000, quick=2_000, min=2),
        message_checkpoints=P.Int(min=1), message_draws=P.Int(min=2),
        atlas_seeds=P.IntList(paper=[0, 1], quick=[0], min=0),
        depths=P.IntList(paper=[2, 4, 8, 16], quick=[2, 4, 8], min=1, max=64, min_len=2),
        deep_formats=P.StrList(choices=ROUNDINGS),
        deep_T=P.Int(paper=1000, quick=100, min=2), deep_seeds=P.IntList(paper=[0, 1], quick=[0], min=0),
        width=P.Int(min=1), gain=P.Float(min=0.0), n_data=P.Int(min=2), batch=P.Int(min=1),
        lr_sgd=P.Float(min=1e-12), lr_heavyball=P.Float(min=1e-12), beta=P.Float(min=0.0, max=0.999999),
        lr_adam=P.Float(min=1e-12),
    )


def chapter_rules() -> list[P.Rule]:
    """The chapter's rules for :func:`fbsgd.book.params.resolve`: the Section 7 ones
    (:func:`fbsgd.studies.section7.design.section7_rules`), the message checkpoints within the second half of
    the clean run, and keep fractions that keep at least one sample each, a different number each."""
    return [*section7_rules(), P.rule(checkpoints_problem), P.rule(keep_fractions_problem)]


def checkpoints_problem(message_checkpoints: int, message_T: int) -> str | None:
    """:func:`fbsgd.studies.real_mechanisms.mechanisms.training_messages` takes the messages at distinct iterations of the
    second half of the clean run, t = message_T // 2, ..., message_T - 1: no more than there are."""
    available = message_T - message_T // 2
    if message_checkpoints <= available:
        return None
    return (f"parameter 'message_checkpoints' must be at most the number of iterations in the second half of the "
            f"clean run, message_T - message_T // 2 = {available:,} for message_T = {message_T:,}, got "
            f"{message_checkpoints:,} (the messages are taken at distinct iterations of that half: more checkpoints "
            f"would silently be {available:,})")


def keep_fractions_problem(keep_fractions) -> str | None:
    """Top-K and Rand-K keep k = round(q M) of the M samples of the batch (:func:`mechanism_set`):
    each fraction q must give k >= 1 (it would silently be raised to 1), and no two the same k."""
    M = RunConfig().M
    ks = {}
    for q in keep_fractions:
        ks.setdefault(int(round(q * M)), []).append(q)
    if 0 in ks:
        return (f"parameter 'keep_fractions' must keep at least one of the M = {M:,} samples of the batch "
                f"(k = round(q M) >= 1, so q > {0.5 / M:g}), got {', '.join(map(repr, ks[0]))} (k = 0: Top-K and "
                f"Rand-K would silently keep 1)")
    same = [(k, qs) for k, qs in ks.items() if len(qs) > 1]
    if same:
        return ("parameter 'keep_fractions' must give a different number of kept samples k = round(q M) of the "
                f"M = {M:,} samples for each fraction, got " + "; ".join(
                    f"{' and '.join(map(repr, qs))} each keep k = {k:,}" for k, qs in same)
                + " (the same Top-K and Rand-K twice)")
    return None


def mechanism_set(formats, modes, keep_fractions, flip_rates, M: int):
    """The mechanisms of the moment table, as ``(roundings, all)``: rounding in every format × mode;
    Top-K and Rand-K over the batch keeping each fraction of the ``M`` samples (k = round(q M), at least 1);
    and bit flips of each field (exponent, mantissa, sign) at each rate.  ``all`` lists them in that order."""
    roundings = [PT.Round(f, m) for f in formats for m in modes]
    ks = [max(1, int(round(q * M))) for q in keep_fractions]
    compressors = [C(k, "batch") for k in ks for C in (PT.TopK, PT.RandK)]
    flips = [PT.BitFlip(r, f) for f in FLIP_FIELDS for r in flip_rates]
    return roundings, roundings + compressors + flips


def moment_verdicts(claim, moments: pd.DataFrame) -> list:
    """The verdicts on the moment table, in display order: rounding to nearest and stochastic rounding
    zero-mean given the input, Rand-K zero-mean, Top-K biased, exponent flips bounded."""
    return [MX.zero_mean_verdict(claim, moments, "nearest_zero_mean", ["Round"], mode="nearest"),
            MX.zero_mean_verdict(claim, moments, "stochastic_zero_mean", ["Round"], mode="stochastic"),
            MX.zero_mean_verdict(claim, moments, "randk_zero_mean", ["RandK"]),
            MX.biased_verdict(claim, moments, "topk_biased", ["TopK"]),
            MX.bounded_verdict(claim, moments, "exponent_flips_bounded", ["BitFlip"], field="exponent")]


def fig4_verdicts(claim, slopes: pd.DataFrame, cases: pd.DataFrame, moments: pd.DataFrame, asym: pd.DataFrame,
                  table: pd.DataFrame) -> list:
    """The verdicts on Figure 4 with rounding, in display order: no floor for zero-mean backward rounding,
    every curve's floor against its prediction on both passes (``cases``:
    :func:`fbsgd.studies.real_mechanisms.study.prediction_cases`; the claim keeps its id
    ``fig4_forward_prediction``), the forward/backward asymmetry (``asym``), bfloat16 negligible (``table``)."""
    return [MS.backward_no_floor_verdict(claim, slopes, moments, "fig4_backward_no_floor"),
            MS.prediction_verdict(claim, cases, "fig4_forward_prediction"),
            MS.asymmetry_verdict(claim, asym, "fig4_asymmetry"),
            MS.negligible_verdict(claim, table, "fig4_bfloat16_negligible", "bfloat16")]


def depth_verdicts(claim, growth: pd.DataFrame, stable: pd.DataFrame) -> list:
    """The verdicts on depth: the error compounds (``growth``), the forward error exceeds the backward one."""
    return [DC.compounding_verdict(claim, growth, "depth_compounds"),
            DC.forward_sensitive_verdict(claim, stable, "depth_forward_sensitive", column="relative_gradient_error")]


def optimizer_verdicts(claim, stable: pd.DataFrame, floors: pd.DataFrame) -> list:
    """The verdicts on momentum and Adam: the asymmetry survives, heavy-ball's and Adam's floors (``floors``)."""
    return [DC.optimizer_verdict(claim, stable, "optimizers_asymmetry", column="relative_gradient_error"),
            DC.optimizer_floor_verdict(claim, floors, "optimizers_floor_heavyball", "heavyball"),
            DC.optimizer_floor_verdict(claim, floors, "optimizers_floor_adam", "adam")]


def deep_design(deep_formats, deep_T: int, lr_sgd: float, lr_heavyball: float, beta: float, lr_adam: float) -> dict:
    """The keyword arguments of :func:`fbsgd.studies.real_mechanisms.deep_chain.run_deep` that the chapter derives from its
    parameters: the rounding of each "format mode" name, the three optimizers, an exact-gradient
    metric every T/20 iterations (at least every iteration) and the step sizes."""
    return dict(mechanisms=[PT.Round(*name.split(" ")) for name in deep_formats], optimizers=list(OPTIMIZERS),
                metric_every=max(1, deep_T // 20),
                lr=dict(sgd=lr_sgd, heavyball=lr_heavyball, beta=beta, adam=lr_adam))


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), wall-clock seconds it took)``."""
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t0


def sweep_line(result, T: int) -> str:
    """What a :func:`fbsgd.engine.sweeps.run_sweep` result cost: rows, horizon, distinct runs, computed / cached, seconds."""
    return (f"{len(result.table)} table rows, T = {T:,}, from {result.computed + result.from_cache} "
            f"distinct runs:\n{cost_text(result)}")


def deep_line(deep: pd.DataFrame, seconds: float) -> str:
    """What the deep-chain runs cost."""
    return f"{len(deep)} deep-chain runs in {seconds:.1f} s"


def atlas_bounds(T: int, M: int) -> dict:
    """Per place (forward, backward): the flip rate per bit at which Table 1's budget is reached."""
    return {pl: boundary_rate(T, M, budget_exponent(pl)) for pl in ("forward", "backward")}


def moments_view(moments: pd.DataFrame):
    """The displayed view of the moment table (:func:`fbsgd.studies.real_mechanisms.mechanisms.moment_table`)."""
    return show(moments, "What each mechanism does to the messages",
                columns=["mechanism", "message", "mean_z", "conditional_bias", "relative_size", "zero_mean"],
                rename={"mean_z": "mean / s.e.", "conditional_bias": "‖E[δ|x]‖²/E‖δ‖²",
                        "relative_size": "relative size", "zero_mean": "zero-mean"})


def prediction_view(cases: pd.DataFrame):
    """The displayed view of :func:`fbsgd.studies.real_mechanisms.study.prediction_cases`: predicted and
    measured S at the smallest γ for every format, mode and place (measured / predicted where the
    prediction is visible; the CSV has it for every case)."""
    return show(cases.assign(ratio=cases.ratio.where(cases.visible)),
                "Every curve's γ → 0 prediction against its measured norm at the smallest step size",
                columns=["mechanism", "place", "gamma_min", "predicted", "residual", "measured", "sgd_high", "visible",
                         "ratio", "agrees"],
                rename={"gamma_min": "γ", "predicted": "predicted S", "residual": "‖D(w∞)‖", "measured": "measured S",
                        "sgd_high": "top of SGD's seed range", "ratio": "measured / predicted"})


def asymmetry_view(asym: pd.DataFrame):
    """The displayed view of :func:`fbsgd.studies.real_mechanisms.study.asymmetry_table`."""
    return show(asym, "Forward against backward rounding at the smallest step size",
                columns=["mechanism", "forward_over_sgd", "backward_over_sgd", "forward_over_backward", "worse"],
                rename={"forward_over_sgd": "S forward / SGD's", "backward_over_sgd": "S backward / SGD's",
                        "forward_over_backward": "forward / backward", "worse": "hurts more"})


def growth_view(growth: pd.DataFrame):
    """The displayed view of :func:`fbsgd.studies.real_mechanisms.deep_chain.depth_growth`."""
    return show(growth, "Growth of the relative gradient error with depth",
                columns=["optimizer", "mechanism", "place", "error_ratio", "additive_ratio", "per_layer_factor"],
                rename={"error_ratio": "error(N_max) / error(N_min)", "additive_ratio": "N_max / N_min",
                        "per_layer_factor": "per layer (fit)"})


def lemma_view(lemma: pd.DataFrame):
    """The displayed view of :func:`fbsgd.studies.real_mechanisms.deep_chain.lemma_factors`."""
    return show(lemma, "Section 4's constants of the initial chains",
                rename={"C_grad": "C_∇f", "C_v": "C_v = max{1, C_∇f^N}", "C_v_per_layer": "C_v per layer",
                        "eq21_factor": "3C_∇f² in (21)"})


def floor_ratios(floors: pd.DataFrame) -> pd.DataFrame:
    """:func:`fbsgd.studies.real_mechanisms.deep_chain.optimizer_floor_table` wide: one row per (mechanism, place, N), one column
    per optimizer holding its floor over plain SGD's (``ratio_to_base``)."""
    return floors.pivot_table(index=["mechanism", "place", "N"], columns="optimizer",
                              values="ratio_to_base").reset_index()


def floor_ratio_view(ratios: pd.DataFrame):
    """The displayed view of :func:`floor_ratios` (the optimizer columns that are present)."""
    return show(ratios, "Floor under each optimizer over plain SGD's floor",
                columns=["mechanism", "place", "N", *[o for o in ("heavyball", "adam") if o in ratios]],
                rename={"heavyball": "heavy-ball / SGD", "adam": "Adam / SGD"})


def text_values(draws: int, seeds, width: int, deep_formats, M: int, table: pd.DataFrame,
                moments: pd.DataFrame) -> dict:
    """The glued words and settings of the chapter's prose and captions (name → value): draws per
    iterate, seeds per point, the recovery factor, the deep chain's width and mechanisms, the atlas's M
    and exponent bits, the mechanisms that leave Figure 4 unchanged (``table``: the sweep) and what the
    moment table says about exponent flips."""
    return {"rm-draws": draws,
            "rm-seeds": f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
            "rm-unchanged": unchanged_text(table),
            "rm-recovery": f"{RECOVERY_FACTOR:g}",
            "rm-width": width,
            "rm-deep-mechs": " and ".join(f"{n} rounding" for n in deep_formats),
            "rm-M": M,
            "rm-bits": FIELDS["exponent"][1],
            "rm-flip-range": flip_range_text(moments)}


def prediction_values(cases: pd.DataFrame, verdict) -> dict:
    """The glued words and numbers on the predictions (name → value): the caption's sentence on the
    predictions that are not visible (:func:`fbsgd.studies.real_mechanisms.study.invisible_text`), how many
    curves there are, how many predictions are visible and how many agree, and the verdict's key number
    (the measured / predicted ratio farthest from 1 among the visible ones) as text."""
    worst = verdict.key_number
    return {"rm-invisible": MS.invisible_text(cases), "rm-pred-n": len(cases),
            "rm-pred-visible": int(cases.visible.sum()), "rm-pred-agree": int(cases.agrees.sum()),
            "rm-pred-worst": f"{worst:.3g}" if worst is not None else "— (no prediction is visible)"}


def _plain(value):
    """numpy scalars as Python numbers (glue prints them either way; this keeps the values plain)."""
    return value.item() if hasattr(value, "item") else value


def summary_values(verdicts: dict, growth: pd.DataFrame, asym: pd.DataFrame, floors: pd.DataFrame,
                   cells: pd.DataFrame) -> dict:
    """The numbers of "What the numbers say" (name → value): the key numbers of the bfloat16 and
    forward-sensitivity verdicts (``verdicts``: claim name → verdict, :func:`fbsgd.book.verdicts.by_name`),
    the largest float8 stable norm over SGD's (``asym``), the range of the per-layer growth under plain SGD (``growth``), how often
    each optimizer keeps the floor (``floors``), and the atlas's counts (``cells``)."""
    sgd_growth = growth[growth.optimizer == "sgd"].per_layer_factor
    float8 = asym[asym.mechanism.str.startswith("float8")]
    same = floors.groupby("optimizer").same_floor.agg(["sum", "size"])
    inside = cells[cells.within_bound]
    out = {"bf16-max": verdicts["fig4_bfloat16_negligible"].key_number,
           "f8-max": float8[["forward_over_sgd", "backward_over_sgd"]].max().max(),
           "growth-min": sgd_growth.min(), "growth-max": sgd_growth.max(),
           "fb-min": verdicts["depth_forward_sensitive"].key_number,
           "hb-same": same.loc["heavyball", "sum"], "hb-n": same.loc["heavyball", "size"],
           "adam-same": same.loc["adam", "sum"], "adam-n": same.loc["adam", "size"], "atlas-n": len(cells),
           **{f"atlas-{c}": int((cells.cls == c).sum()) for c in ("recovered", "plateau", "diverged")},
           "atlas-inside": len(inside), "atlas-inside-recovered": int((inside.cls == "recovered").sum())}
    return {f"rm-{k}": _plain(v) for k, v in out.items()}
