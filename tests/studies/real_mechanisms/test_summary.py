"""fbsgd.studies.real_mechanisms.summary (the real-mechanisms chapter's plumbing) on small synthetic tables whose answer is known."""
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.real_mechanisms import atlas as A
from fbsgd.studies.real_mechanisms import deep_chain as DC
from fbsgd.studies.real_mechanisms import summary as MSM
from fbsgd.studies.real_mechanisms import study as MS
from fbsgd.studies.real_mechanisms import mechanisms as MX
from fbsgd import perturbations as PT
from fbsgd.studies.section7.verdicts import RECOVERY_FACTOR
from fbsgd.book.verdicts import Claim


def claim(name):
    return Claim(id=f"t.{name}", chapter="t", ref="-", source="book", text=name)


def test_chapter_spec_declares_the_chapter_parameters_with_their_scale_defaults():
    spec = MSM.chapter_spec()
    assert set(spec) == {
        "T", "gammas", "seeds", "mode", "ewma", "metric_every", "precision", "data_seed", "n_jobs", "output_dir",
        "formats", "modes", "keep_fractions", "flip_rates", "atlas_rates", "message_gamma", "message_T",
        "message_checkpoints", "message_draws", "atlas_seeds", "depths", "deep_formats", "deep_T", "deep_seeds",
        "width", "gain", "n_data", "batch", "lr_sgd", "lr_heavyball", "beta", "lr_adam", "atlas_gammas", "deep_rho"}
    assert spec["seeds"].default("paper") == [0, 1, 2] and spec["seeds"].default("quick") == [0, 1]
    assert len(spec["atlas_seeds"].default("paper")) >= A.ATLAS_MIN_SEEDS + 1
    assert len(spec["atlas_seeds"].default("quick")) >= A.ATLAS_MIN_SEEDS
    assert len(spec["deep_seeds"].default("paper")) >= 3 and spec["n_data"].default("paper") >= 2048
    assert spec["T"].default("quick") == 5_000 and spec["T"].default("paper") == 200_000
    assert spec["atlas_rates"].default("quick") == [1e-7, 1e-6, 1e-5, 1e-4, 1e-3]
    assert spec["depths"].default("paper") == [2, 4, 8, 16] and spec["deep_T"].default("quick") == 200
    assert not spec["formats"].check(["float32"])[0] and spec["formats"].check(["float16"])[0]


def test_mechanism_set_order_and_k():
    roundings, every = MSM.mechanism_set(["bfloat16"], ["nearest", "stochastic"], [0.1, 0.001], [1e-3], 100)
    assert roundings == [PT.Round("bfloat16", "nearest"), PT.Round("bfloat16", "stochastic")]
    assert every == roundings + [PT.TopK(10, "batch"), PT.RandK(10, "batch"), PT.TopK(1, "batch"), PT.RandK(1, "batch"),
                                 PT.BitFlip(1e-3, "exponent"), PT.BitFlip(1e-3, "mantissa"), PT.BitFlip(1e-3, "sign")]


def test_deep_design():
    d = MSM.deep_design(["float8_e5m2 nearest", "float16 stochastic"], 100, 0.1, 0.01, 0.9, 0.001)
    assert d["mechanisms"] == [PT.Round("float8_e5m2", "nearest"), PT.Round("float16", "stochastic")]
    assert d["optimizers"] == ["sgd", "heavyball", "adam"] and d["metric_every"] == 100 // MSM.DEEP_METRIC_POINTS
    assert d["lr"] == dict(sgd=0.1, heavyball=0.01, beta=0.9, adam=0.001)
    assert MSM.deep_design([], 10, 0, 0, 0, 0)["metric_every"] == 1


def test_timed_returns_value_and_seconds():
    value, seconds = MSM.timed(lambda a, b=0: (time.sleep(0.02), a + b)[1], 2, b=3)
    assert value == 5 and 0.02 <= seconds < 5


def test_sweep_and_deep_lines():
    result = SimpleNamespace(table=pd.DataFrame({"a": range(3)}), computed=2, from_cache=1, wall_s=1.234)
    assert MSM.sweep_line(result, 5000) == "3 table rows, T = 5,000, from 3 distinct runs:\n2 computed, 1 from the cache, 1.2 s"
    deep = SimpleNamespace(runs=pd.DataFrame({"a": range(4)}), points=pd.DataFrame({"a": range(2)}),
                           errors=pd.DataFrame({"a": range(3)}))
    assert MSM.deep_line(deep, 0.06) == "4 deep-chain runs, 2 comparable points and 3 errors there in 0.1 s"


def test_atlas_bounds_reach_table1_budget():
    b = MSM.atlas_bounds(200_000, 2000)
    assert set(b) == {"forward", "backward"}
    for r in b.values():
        assert A.expected_budget(r, 200_000, 2000) == pytest.approx(200_000 ** 0.5)


def test_views_pick_and_rename_columns():
    moments = pd.DataFrame([dict(mechanism="m", message="x", mean_z=1.5, conditional_bias=0.25, relative_size=0.1,
                                 zero_mean="biased", extra=9)])
    v = MSM.moments_view(moments)
    assert list(v.data.columns) == ["mechanism", "message", "mean / s.e.", "‖E[δ|x]‖²/E‖δ‖²", "relative size", "zero-mean"]
    assert v.caption == "What each mechanism does to the messages" and v.data["mean / s.e."].iloc[0] == 1.5
    asym = pd.DataFrame([dict(mechanism="m", forward_over_sgd=2.0, backward_over_sgd=1.0, forward_over_backward=2.0,
                              worse="forward", x=0)])
    assert list(MSM.asymmetry_view(asym).data.columns) == ["mechanism", "S forward / SGD's", "S backward / SGD's",
                                                           "forward / backward", "hurts more"]
    growth = pd.DataFrame([dict(optimizer="sgd", mechanism="m", place="forward", error_ratio=4.0, additive_ratio=4.0,
                                per_layer_factor=1.2, seed_low=3.0, seed_high=5.0, compounds=None, x=0)])
    g = MSM.growth_view(growth).data
    assert list(g.columns) == ["optimizer", "mechanism", "place", "error(N_max) / error(N_min)", "lowest seed",
                               "highest seed", "N_max / N_min", "per layer (fit)", "compounds"]
    assert g.compounds.iloc[0] == "? (seeds disagree)"
    lemma = DC.lemma_factors([2, 4], 8, 1.0)
    lv = MSM.lemma_view(lemma).data
    assert len(lv.columns) == len(lemma.columns) and "C_v = max{1, C_∇f^N}" in lv.columns and "3C_∇f² in (21)" in lv.columns


def test_prediction_view_and_values():
    cases = MS.prediction_cases(_fig4_slopes(), _sweep())
    v = MSM.prediction_view(cases)
    assert list(v.data.columns) == ["mechanism", "place", "γ", "predicted S", "‖D(w∞)‖", "measured S",
                                    "top of SGD's seed range", "visible", "measured / predicted", "agrees"]
    assert v.data["measured / predicted"].iloc[0] == pytest.approx(1.0)  # visible
    assert np.isnan(v.data["measured / predicted"].iloc[1]) and cases.ratio.iloc[1] == np.inf  # not visible: shown as —
    verdict = MS.prediction_verdict(claim, cases, "p")
    out = MSM.prediction_values(cases, verdict)
    assert out == {"rm-invisible": MS.invisible_text(cases), "rm-pred-n": 2, "rm-pred-visible": 1, "rm-pred-agree": 2,
                   "rm-pred-worst": "1"}
    assert "bfloat16 stochastic backward (0)" in out["rm-invisible"]
    hidden = cases.assign(visible=False)
    assert MSM.prediction_values(hidden, SimpleNamespace(key_number=None))["rm-pred-worst"] == "— (no prediction is visible)"


def test_floor_ratios_pivot_and_view():
    floors = pd.DataFrame([dict(optimizer=o, mechanism="m", place=p, N=n, ratio_to_base=r, spread=1.1, settled=st,
                                same_floor=f)
                           for o, p, n, r, st, f in [("heavyball", "forward", 2, 1.1, True, None),
                                                     ("adam", "forward", 2, 0.5, True, False),
                                                     ("heavyball", "backward", 4, 2.0, False, None),
                                                     ("adam", "backward", 4, 1.0, True, True)]])
    r = MSM.floor_ratios(floors).set_index(["place", "N"])
    assert r.loc[("forward", 2), "heavyball ratio_to_base"] == 1.1 and r.loc[("backward", 4), "adam ratio_to_base"] == 1.0
    assert [r.loc[("forward", 2), "heavyball mark"], r.loc[("forward", 2), "adam mark"],
            r.loc[("backward", 4), "heavyball mark"], r.loc[("backward", 4), "adam mark"]] == [
        "? (spread)", "different", "not settled", "same"]
    assert list(MSM.floor_ratio_view(MSM.floor_ratios(floors)).data.columns) == [
        "mechanism", "place", "N", "heavy-ball / SGD", "heavy-ball spread", "heavy-ball case", "Adam / SGD", "Adam spread",
        "Adam case"]
    only = MSM.floor_ratios(floors[floors.optimizer == "adam"])
    assert list(MSM.floor_ratio_view(only).data.columns) == ["mechanism", "place", "N", "Adam / SGD", "Adam spread", "Adam case"]


def _sweep():
    rows = []
    for g in (0.1, 1.0):
        rows.append(dict(figure="standard SGD", panel="baseline", gamma=g, stable_grad_norm=1.0, diverged=False))
        for place in ("forward", "backward"):
            rows.append(dict(figure="bfloat16 nearest", panel=place, gamma=g, stable_grad_norm=1.1, diverged=False))
            rows.append(dict(figure="float8_e5m2 nearest", panel=place, gamma=g,
                             stable_grad_norm=3 * RECOVERY_FACTOR if place == "forward" else 1.0, diverged=False))
    return pd.DataFrame(rows)


def test_text_values():
    moments = pd.DataFrame([dict(kind="BitFlip", mechanism="BitFlip exponent 0.001", message="x", max_over_range=0.5,
                                 nonfinite_fraction=0.0, bounded=True)])
    out = MSM.text_values(16, [0, 1], 32, ["float8_e5m2 nearest", "float8_e5m2 stochastic"], 2000, _sweep(), moments)
    assert out == {"rm-draws": 16, "rm-seeds": "2 seeds", "rm-unchanged": "bfloat16 nearest",
                   "rm-recovery": f"{RECOVERY_FACTOR:g}", "rm-width": 32,
                   "rm-deep-mechs": "float8_e5m2 nearest rounding and float8_e5m2 stochastic rounding",
                   "rm-M": 2000, "rm-bits": 8, "rm-flip-range": MX.flip_range_text(moments)}
    assert "within its hypotheses" in out["rm-flip-range"]
    assert MSM.text_values(16, [0], 32, [], 2000, _sweep(), moments)["rm-seeds"] == "1 seed"


def test_summary_values():
    verdicts = {"fig4_bfloat16_negligible": SimpleNamespace(key_number=1.05),
                "depth_forward_sensitive": SimpleNamespace(key_number=3.5)}
    growth = pd.DataFrame({"optimizer": ["sgd", "sgd", "adam"], "per_layer_factor": [0.9, 1.3, 5.0]})
    asym = pd.DataFrame({"mechanism": ["float8_e4m3fn nearest", "float8_e5m2 nearest", "bfloat16 nearest"],
                         "forward_over_sgd": [2.0, 7.0, 50.0], "backward_over_sgd": [1.0, 1.5, 60.0]})
    floors = pd.DataFrame({"optimizer": ["heavyball"] * 4 + ["adam"] * 2,
                           "same_floor": [True, True, False, None, False, True]})
    cells = pd.DataFrame({"cls": ["recovered", "recovered", "plateau", "diverged", "recovered", "?"],
                          "within_bound": [True, True, True, False, False, True]})
    runs = pd.DataFrame({"optimizer": ["sgd", "sgd", "adam"], "settled": [True, False, True], "drift": [1.0, 0.5, 1.1]})
    out = MSM.summary_values(verdicts, growth, asym, floors, cells, runs)
    assert out == {"rm-bf16-max": 1.05, "rm-f8-max": 7.0, "rm-growth-min": 0.9, "rm-growth-max": 5.0, "rm-fb-min": 3.5,
                   "rm-hb-same": 2, "rm-hb-n": 3, "rm-adam-same": 1, "rm-adam-n": 2, "rm-atlas-n": 6,
                   "rm-atlas-recovered": 3, "rm-atlas-plateau": 1, "rm-atlas-diverged": 1, "rm-atlas-undecided": 1,
                   "rm-atlas-min-seeds": A.ATLAS_MIN_SEEDS, "rm-atlas-inside": 3, "rm-atlas-inside-recovered": 2,
                   "rm-deep-settled": "SGD 1 of 2, Adam 1 of 1 (drift ratios 0.5–1.1)"}
    assert all(not isinstance(v, np.generic) for v in out.values())  # plain Python numbers for glue


def _moments():
    rows = [("Round", "bfloat16 nearest", "given the input"), ("Round", "bfloat16 stochastic", "given the input"),
            ("RandK", "RandK 10", "on average only"), ("TopK", "TopK 10", "biased"),
            ("BitFlip", "BitFlip exponent 0.001", "biased")]
    return pd.DataFrame([dict(kind=k, mechanism=m, message=msg, zero_mean=c, conditional_bias=0.0 if c == "given the input" else 1.0,
                              mean_z=0.0, max_over_range=0.1, nonfinite_fraction=0.0, bounded=True)
                         for k, m, c in rows for msg in ("forward z", "backward σ(z)")])


def _same(group, parts):
    assert [v.claim.id for v in group] == [v.claim.id for v in parts]
    assert [(v.outcome, v.evidence, v.key_number) for v in group] == [(v.outcome, v.evidence, v.key_number) for v in parts]


def test_moment_verdicts_names_order_and_outcomes():
    m = _moments()
    got = MSM.moment_verdicts(claim, m)
    assert [v.claim.id for v in got] == ["t.nearest_zero_mean", "t.stochastic_zero_mean", "t.randk_zero_mean",
                                         "t.topk_biased", "t.exponent_flips_bounded"]
    assert [v.outcome for v in got] == ["holds", "holds", "fails", "holds", "holds"]
    _same(got, [MX.zero_mean_verdict(claim, m, "nearest_zero_mean", ["Round"], mode="nearest"),
                MX.zero_mean_verdict(claim, m, "stochastic_zero_mean", ["Round"], mode="stochastic"),
                MX.zero_mean_verdict(claim, m, "randk_zero_mean", ["RandK"]),
                MX.biased_verdict(claim, m, "topk_biased", ["TopK"]),
                MX.bounded_verdict(claim, m, "exponent_flips_bounded", ["BitFlip"], field="exponent")])


def _fig4_slopes():
    return pd.DataFrame([dict(mechanism=mech, place=p, slope=s, slope_se=0.01, norm_at_gamma_min=n, predicted_limit=pr,
                              gamma_min=0.1, level=mech, method="conditional", residual=0.0, escapes=False)
                         for mech, p, s, n, pr in [("sgd", "baseline", 0.5, 1.0, 0.0),
                                                   ("bfloat16 stochastic", "forward", 0.0, 3.0, 3.0),
                                                   ("bfloat16 stochastic", "backward", 0.5, 1.0, 0.0)]])


def test_fig4_verdicts_names_order_and_parts():
    m = _moments()
    slopes = _fig4_slopes()
    cases = MS.prediction_cases(slopes, _sweep())
    asym = MS.asymmetry_table(slopes)
    settled = pd.DataFrame([dict(figure="bfloat16 stochastic", panel=p, settled=True) for p in ("forward", "backward")])
    got = MSM.fig4_verdicts(claim, slopes, cases, m, asym, _sweep(), settled)
    assert [v.claim.id for v in got] == ["t.fig4_backward_no_floor", "t.fig4_forward_prediction", "t.fig4_asymmetry",
                                         "t.fig4_bfloat16_negligible"]
    assert got[1].outcome == "holds" and got[1].key_number == pytest.approx(1.0)  # both passes judged
    assert "bfloat16 stochastic forward" in got[1].evidence and "bfloat16 stochastic backward" in got[1].evidence
    assert got[2].outcome == "holds" and got[3].outcome == "holds" and got[3].key_number == pytest.approx(1.1)
    _same(got, [MS.backward_no_floor_verdict(claim, slopes, m, "fig4_backward_no_floor"),
                MS.prediction_verdict(claim, cases, "fig4_forward_prediction", finds=MS.floor_finds(slopes, settled)),
                MS.asymmetry_verdict(claim, asym, "fig4_asymmetry"),
                MS.negligible_verdict(claim, _sweep(), "fig4_bfloat16_negligible", "bfloat16")])


def _deep(forward, backward):
    """Runs and errors for sgd, heavy-ball and Adam, three seeds, with the given forward / backward errors at
    comparable points at N = 2, 4, 8 and floors (stable norm over the clean run's) 2 (SGD, heavy-ball) and 8
    (Adam); every run settled, clean runs alike across seeds."""
    runs, errors = [], []
    for opt in ("sgd", "heavyball", "adam"):
        for s in (0, 1, 2):
            for N in (2, 4, 8):
                base = dict(optimizer=opt, N=N, seed=s, diverged=False, final_loss=0.1, drift=1.0, settled=True,
                            relative_gradient_error=0.0)
                runs.append(dict(base, place="none", mechanism="none", label="clean", stable_grad_norm=1.0))
                for place, errs in (("forward", forward), ("backward", backward)):
                    runs.append(dict(base, place=place, mechanism="m", label=f"m {place}",
                                     stable_grad_norm=2.0 if opt != "adam" else 8.0))
                    errors.append(dict(optimizer=opt, N=N, place=place, mechanism="m", label=f"m {place}", seed=s, t=10,
                                       loss=0.3, relative_gradient_error=dict(zip((2, 4, 8), errs))[N]))
    return pd.DataFrame(runs), pd.DataFrame(errors)


def test_depth_and_optimizer_verdicts():
    runs, errors = _deep([1.0, 4.0, 64.0], [0.5, 1.0, 2.0])  # forward compounds and exceeds backward everywhere
    growth = DC.depth_growth(errors)
    got = MSM.depth_verdicts(claim, growth, errors)
    assert [v.claim.id for v in got] == ["t.depth_compounds", "t.depth_forward_sensitive"]
    assert got[0].outcome == "partial" and got[1].outcome == "holds"  # backward ×4 = additive: does not compound
    _same(got, [DC.compounding_verdict(claim, growth, "depth_compounds"),
                DC.forward_sensitive_verdict(claim, errors, "depth_forward_sensitive")])
    floors = DC.optimizer_floor_table(runs)
    got = MSM.optimizer_verdicts(claim, errors, floors)
    assert [v.claim.id for v in got] == ["t.optimizers_asymmetry", "t.optimizers_floor_heavyball", "t.optimizers_floor_adam"]
    assert [v.outcome for v in got] == ["holds", "holds", "fails"]  # heavy-ball keeps SGD's floor, Adam's is ×4


def test_every_glued_name_of_the_prose_is_computed():
    """Every {glue:text}/{glue:} name in the chapter's markdown (figures aside) comes from text_values,
    prediction_values or summary_values, and each of their names is used."""
    import re
    from pathlib import Path

    import nbformat

    chapter = Path(__file__).resolve().parents[3] / "chapters" / "real_mechanisms.ipynb"
    prose = "\n".join(c.source for c in nbformat.read(chapter, as_version=4).cells if c.cell_type == "markdown")
    used = {m.split(":")[0] for m in re.findall(r"\{glue(?::text)?\}`([^`]+)`", prose)}
    moments = pd.DataFrame([dict(kind="BitFlip", mechanism="BitFlip exponent 0.001", message="x", max_over_range=0.5,
                                 nonfinite_fraction=0.0, bounded=True)])
    cases = MS.prediction_cases(_fig4_slopes(), _sweep())
    verdicts = {"fig4_bfloat16_negligible": SimpleNamespace(key_number=1.05),
                "depth_forward_sensitive": SimpleNamespace(key_number=3.5)}
    computed = {**MSM.text_values(16, [0, 1], 32, ["float8_e5m2 nearest"], 2000, _sweep(), moments),
                **MSM.deep_values(2048, 1e-3, 4000, [0, 1, 2]),
                **MSM.prediction_values(cases, MS.prediction_verdict(claim, cases, "p")),
                **MSM.summary_values(verdicts, pd.DataFrame({"optimizer": ["sgd"], "per_layer_factor": [1.0]}),
                                     pd.DataFrame({"mechanism": ["float8_e5m2 nearest"], "forward_over_sgd": [2.0],
                                                   "backward_over_sgd": [1.0]}),
                                     pd.DataFrame({"optimizer": ["heavyball", "adam"], "same_floor": [True, False]}),
                                     pd.DataFrame({"cls": ["recovered"], "within_bound": [True]}),
                                     pd.DataFrame({"optimizer": ["sgd"], "settled": [True], "drift": [1.0]}))}
    assert {"rm-invisible", "rm-pred-worst", "rm-pred-visible", "rm-pred-n", "rm-pred-agree"} <= used
    assert used == set(computed)
