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
from fbsgd.studies.real_mechanisms import atlas as A
from fbsgd.studies.real_mechanisms.atlas import boundary_rate, budget_exponent
from fbsgd.studies.section7.design import ROUND_FORMATS, ROUND_MODES, section7_rules, section7_spec
from fbsgd.lowprec import FIELDS
from fbsgd.studies.real_mechanisms.study import unchanged_text
from fbsgd.studies.real_mechanisms.mechanisms import flip_range_text
from fbsgd.book.report import show
from fbsgd.studies.section7.verdicts import RECOVERY_FACTOR
from fbsgd.engine.sweeps import RunConfig, cost_text

__all__ = ["chapter_spec", "chapter_rules", "checkpoints_problem", "keep_fractions_problem", "ROUNDINGS", "mechanism_set", "moment_verdicts", "fig4_verdicts", "depth_verdicts", "optimizer_verdicts", "deep_design", "timed", "sweep_line", "deep_line", "atlas_bounds", "moments_view",
           "prediction_view", "asymmetry_view", "growth_view", "points_view", "settled_view", "lemma_view", "floor_ratios", "floor_ratio_view", "text_values",
           "prediction_values", "deep_values", "summary_values", "OPTIMIZERS"]

OPTIMIZERS = ["sgd", "heavyball", "adam"]
FLIP_FIELDS = ("exponent", "mantissa", "sign")
ROUNDINGS = tuple(f"{f} {m}" for f in ROUND_FORMATS for m in ROUND_MODES)  # the "format mode" names of deep_formats


DEEP_T_PAPER = 6000  # the deep chains' iterations at paper scale: where the drift test passes (the chapter says how often)
DEEP_METRIC_POINTS = 50  # the deep chains' exact gradient norm every deep_T / 50 iterations (the drift test's samples)


def chapter_spec() -> dict:
    """The chapter's parameter declarations for :func:`fbsgd.book.params.resolve`: the Section 7 ones
    (three seeds at paper scale, two quick) and those of the moment table, the atlas and the deep chain."""
    return dict(
        **section7_spec(),
        formats=P.StrList(choices=ROUND_FORMATS),
        modes=P.StrList(choices=ROUND_MODES),
        keep_fractions=P.FloatList(min=1e-4, max=1.0), flip_rates=P.FloatList(min=0.0, max=1.0, label="{:g}"),
        atlas_rates=P.FloatList(paper=[1e-10, 1e-9, 1e-8, 1e-7, 1e-6], quick=[1e-7, 1e-6, 1e-5, 1e-4, 1e-3],
                                min=0.0, max=1.0, label="{:g}"),
        message_gamma=P.Float(min=1e-9), message_T=P.Int(paper=20_000, quick=2_000, min=2),
        message_checkpoints=P.Int(min=1), message_draws=P.Int(min=2),
        atlas_seeds=P.IntList(paper=[0, 1, 2, 3], quick=[0, 1, 2], min=0),
        atlas_gammas=P.FloatList(paper=[0.01, 0.1, 1.0], quick=[0.1, 0.3, 1.0], min=1e-9, max=1e3),
        depths=P.IntList(paper=[2, 4, 8, 16], quick=[2, 4, 8], min=1, max=64, min_len=2),
        deep_formats=P.StrList(choices=ROUNDINGS),
        deep_T=P.Int(paper=DEEP_T_PAPER, quick=200, min=2), deep_seeds=P.IntList(paper=[0, 1, 2], quick=[0, 1, 2], min=0),
        width=P.Int(min=1), gain=P.Float(min=0.0), n_data=P.Int(paper=2048, quick=512, min=2), batch=P.Int(min=1),
        deep_rho=P.Float(min=0.0),
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
                  table: pd.DataFrame, settled: pd.DataFrame | None = None) -> list:
    """The verdicts on Figure 4 with rounding, in display order: no floor for zero-mean backward rounding,
    every curve's floor against its prediction on both passes (``cases``:
    :func:`fbsgd.studies.real_mechanisms.study.prediction_cases`; the claim keeps its id
    ``fig4_forward_prediction``), the forward/backward asymmetry (``asym``), bfloat16 negligible (``table``).
    The prediction verdict records the facts "leaves a floor" that the curves find
    (:func:`fbsgd.studies.real_mechanisms.study.floor_finds`, with ``settled``:
    :func:`fbsgd.studies.real_mechanisms.study.settled_curves`), for the book's check that no two
    chapters find a fact differently."""
    finds = MS.floor_finds(slopes, settled) if settled is not None else {}
    return [MS.backward_no_floor_verdict(claim, slopes, moments, "fig4_backward_no_floor"),
            MS.prediction_verdict(claim, cases, "fig4_forward_prediction", finds=finds),
            MS.asymmetry_verdict(claim, asym, "fig4_asymmetry"),
            MS.negligible_verdict(claim, table, "fig4_bfloat16_negligible", "bfloat16")]


def depth_verdicts(claim, growth: pd.DataFrame, errors: pd.DataFrame) -> list:
    """The verdicts on depth, at comparable points (``errors``: :attr:`fbsgd.studies.real_mechanisms.deep_chain.DeepResult.errors`):
    the error compounds under every optimizer (``growth``), the forward error exceeds the backward one."""
    return [DC.compounding_verdict(claim, growth, "depth_compounds"),
            DC.forward_sensitive_verdict(claim, errors, "depth_forward_sensitive")]


def optimizer_verdicts(claim, errors: pd.DataFrame, floors: pd.DataFrame) -> list:
    """The verdicts on momentum and Adam: the asymmetry survives (at comparable points), heavy-ball's and
    Adam's floors (``floors``)."""
    return [DC.optimizer_verdict(claim, errors, "optimizers_asymmetry"),
            DC.optimizer_floor_verdict(claim, floors, "optimizers_floor_heavyball", "heavyball"),
            DC.optimizer_floor_verdict(claim, floors, "optimizers_floor_adam", "adam")]


def deep_design(deep_formats, deep_T: int, lr_sgd: float, lr_heavyball: float, beta: float, lr_adam: float,
                rho: float = 0.0) -> dict:
    """The keyword arguments of :func:`fbsgd.studies.real_mechanisms.deep_chain.run_deep` that the chapter derives from its
    parameters: the rounding of each "format mode" name, the three optimizers, an exact-gradient
    metric every T/DEEP_METRIC_POINTS iterations (at least every iteration: the drift test's samples),
    the step sizes and the squared-L2 penalty ρ‖w‖² ("l2", none when ρ = 0)."""
    return dict(mechanisms=[PT.Round(*name.split(" ")) for name in deep_formats], optimizers=list(OPTIMIZERS),
                metric_every=max(1, deep_T // DEEP_METRIC_POINTS),
                lr=dict(sgd=lr_sgd, heavyball=lr_heavyball, beta=beta, adam=lr_adam),
                regularizer="l2" if rho > 0 else "none", rho=float(rho))


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), wall-clock seconds it took)``."""
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t0


def sweep_line(result, T: int) -> str:
    """What a :func:`fbsgd.engine.sweeps.run_sweep` result cost: rows, horizon, distinct runs, computed / cached, seconds."""
    return (f"{len(result.table)} table rows, T = {T:,}, from {result.computed + result.from_cache} "
            f"distinct runs:\n{cost_text(result)}")


def deep_line(deep, seconds: float) -> str:
    """What the deep-chain runs cost (``deep``: a :class:`fbsgd.studies.real_mechanisms.deep_chain.DeepResult`)."""
    return (f"{len(deep.runs)} deep-chain runs, {len(deep.points)} comparable points and {len(deep.errors)} errors "
            f"there in {seconds:.1f} s")


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
    g = growth.assign(compounds=[{True: "yes", False: "no", None: "? (seeds disagree)"}[f] for f in growth.compounds])
    return show(g, "Growth of the relative gradient error with depth, at comparable points",
                columns=["optimizer", "mechanism", "place", "error_ratio", "seed_low", "seed_high", "additive_ratio",
                         "per_layer_factor", "compounds"],
                rename={"error_ratio": "error(N_max) / error(N_min)", "seed_low": "lowest seed", "seed_high": "highest seed",
                        "additive_ratio": "N_max / N_min", "per_layer_factor": "per layer (fit)"})


def points_view(points: pd.DataFrame):
    """The displayed view of :attr:`fbsgd.studies.real_mechanisms.deep_chain.DeepResult.points`."""
    return show(points, "Comparable points: where each clean run first reaches its optimizer's common loss level",
                rename={"t": "iteration", "loss": "loss there", "level": "common level L*"})


def settled_view(stable: pd.DataFrame):
    """Drift and seed spread of the deep chains' clean runs (from :func:`fbsgd.studies.real_mechanisms.deep_chain.stable_table`)."""
    clean = stable[stable.place == "none"]
    return show(clean, "Clean deep chains: stable norm, its seed spread and the drift test",
                columns=["optimizer", "N", "stable_grad_norm", "seed_spread", "drift_min", "drift_max", "settled"],
                rename={"stable_grad_norm": "stable norm", "seed_spread": "max/min over seeds",
                        "drift_min": "smallest drift", "drift_max": "largest drift", "settled": "all settled"})


def lemma_view(lemma: pd.DataFrame):
    """The displayed view of :func:`fbsgd.studies.real_mechanisms.deep_chain.lemma_factors`."""
    return show(lemma, "Section 4's constants of the initial chains",
                rename={"C_grad": "C_∇f", "C_v": "C_v = max{1, C_∇f^N}", "C_v_per_layer": "C_v per layer",
                        "eq21_factor": "3C_∇f² in (21)"})


def floor_ratios(floors: pd.DataFrame) -> pd.DataFrame:
    """:func:`fbsgd.studies.real_mechanisms.deep_chain.optimizer_floor_table` wide: one row per (mechanism, place, N), per
    optimizer its floor over plain SGD's (``ratio_to_base``), the seed spread beside it and the case's mark."""
    word = lambda r: "not settled" if not r.settled else {True: "same", False: "different", None: "? (spread)"}[r.same_floor]  # noqa: E731
    f = floors.assign(mark=[word(r) for r in floors.itertuples()])
    wide = f.pivot(index=["mechanism", "place", "N"], columns="optimizer", values=["ratio_to_base", "spread", "mark"])
    wide.columns = [f"{o} {k}" for k, o in wide.columns]
    return wide.reset_index()


def floor_ratio_view(ratios: pd.DataFrame):
    """The displayed view of :func:`floor_ratios` (the optimizer columns that are present)."""
    cols = [f"{o} {k}" for o in ("heavyball", "adam") for k in ("ratio_to_base", "spread", "mark") if f"{o} {k}" in ratios]
    names = {"heavyball": "heavy-ball", "adam": "Adam"}
    return show(ratios, "Floor under each optimizer over plain SGD's floor, with the seed spread beside it",
                columns=["mechanism", "place", "N", *cols],
                rename={c: f"{names[c.split()[0]]} " + {"ratio_to_base": "/ SGD", "spread": "spread", "mark": "case"}[c.split()[1]]
                        for c in cols})


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


def deep_values(n_data: int, deep_rho: float, deep_T: int, deep_seeds, batch: int = 32) -> dict:
    """The glued settings of the deep-chain prose (name → value): samples, penalty, iterations, seeds, minibatch."""
    return {"rm-n-data": f"{n_data:,}", "rm-deep-rho": f"{deep_rho:g}", "rm-deep-T": f"{deep_T:,}", "rm-batch": f"{batch:,}",
            "rm-deep-seeds": f"{len(deep_seeds)} seed{'s' if len(deep_seeds) != 1 else ''}"}


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
                   cells: pd.DataFrame, runs: pd.DataFrame | None = None) -> dict:
    """The numbers of "What the numbers say" (name → value): the key numbers of the bfloat16 and
    forward-sensitivity verdicts (``verdicts``: claim name → verdict, :func:`fbsgd.book.verdicts.by_name`),
    the largest float8 stable norm over SGD's (``asym``), the range of the per-layer growth under plain SGD (``growth``), how often
    each optimizer keeps the floor (``floors``), and the atlas's counts (``cells``)."""
    sgd_growth = growth.per_layer_factor
    float8 = asym[asym.mechanism.str.startswith("float8")]
    decided = floors.assign(decided=floors.same_floor.map(lambda f: f is not None),
                            same=floors.same_floor.map(lambda f: f is True))
    same = decided.groupby("optimizer").agg(sum=("same", "sum"), size=("decided", "sum"))
    inside = cells[cells.within_bound & (cells.cls != A.UNDECIDED)]
    out = {"bf16-max": verdicts["fig4_bfloat16_negligible"].key_number,
           "f8-max": float8[["forward_over_sgd", "backward_over_sgd"]].max().max(),
           "growth-min": sgd_growth.min(), "growth-max": sgd_growth.max(),
           "fb-min": verdicts["depth_forward_sensitive"].key_number,
           "hb-same": same.loc["heavyball", "sum"], "hb-n": same.loc["heavyball", "size"],
           "adam-same": same.loc["adam", "sum"], "adam-n": same.loc["adam", "size"], "atlas-n": len(cells),
           **{f"atlas-{c}": int((cells.cls == c).sum()) for c in ("recovered", "plateau", "diverged")},
           "atlas-undecided": int((cells.cls == A.UNDECIDED).sum()), "atlas-min-seeds": A.ATLAS_MIN_SEEDS,
           "atlas-inside": len(inside), "atlas-inside-recovered": int((inside.cls == "recovered").sum()),
           "deep-settled": DC.settled_text(runs) if runs is not None else "—"}
    return {f"rm-{k}": _plain(v) for k, v in out.items()}
