"""The cost ceilings of every chapter (fbsgd.book.costs, issue 20): the reproductions of the issue are
refused before anything runs, naming the parameter; the defaults of every chapter pass; the estimates
count what the studies' own builders build and scale as the work does.

The chapters' parameters are resolved by running their check cells in this process (the cells before the
parameters, the parameters cell, the values a user would pass, the check cell), as papermill does."""
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fbsgd.book import costs
from fbsgd.book import params as P

ROOT = Path(__file__).resolve().parents[2]
HALF = costs.MEMORY_FRACTION


def _cells(chapter):
    nb = json.loads((ROOT / "chapters" / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    i = next(k for k, c in enumerate(code) if "parameters" in c["metadata"].get("tags", []))
    return ["".join(c["source"]) for c in code[:i]], "".join(code[i]["source"]), "".join(code[i + 1]["source"])


@pytest.fixture(scope="module")
def check_cell(tmp_path_factory):
    """run(chapter, scale, **values): the chapter's checked parameters (or its ParameterError)."""
    tmp = tmp_path_factory.mktemp("costs")
    mp = pytest.MonkeyPatch()
    mp.setenv("FBSGD_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("OPENBLAS_NUM_THREADS", "1")  # as some imports cells set it
    mp.chdir(tmp)

    def run(chapter, scale="quick", **values):
        mp.setenv("FBSGD_SCALE", scale)
        before, parameters, check = _cells(chapter)
        ns = {"__name__": "__main__"}
        for src in before:
            exec(compile(src, f"{chapter}:imports", "exec"), ns)
        exec(compile(parameters, f"{chapter}:parameters", "exec"), ns)
        ns.update({"output_dir": str(tmp / "results"), **values})
        exec(compile(check, f"{chapter}:check", "exec"), ns)
        return dict(ns["params"])

    yield run
    mp.undo()


@pytest.fixture(scope="module")
def defaults(check_cell):
    """(chapter, scale) -> the chapter's resolved default parameters (its check cell passed)."""
    cache = {}

    def get(chapter, scale):
        if (chapter, scale) not in cache:
            cache[chapter, scale] = check_cell(chapter, scale)
        return dict(cache[chapter, scale])

    return get


def problems(chapter, values) -> list[str]:
    """The problems of the chapter's cost rules on ``values`` (as resolve runs them)."""
    return [p for p in (r.problem(values, set()) for r in costs.rules(chapter)) if p]


# -- the reproductions of issue 20 (real mechanisms), each refused naming its parameter -----------------------

MEMORY, TIME = "is too large for this machine's memory", "makes this chapter run too long"
REPRODUCTIONS = [  # (values, the parameter named, the kind of refusal)
    (dict(width=10_000), "width", MEMORY),  # reached 15.5 GiB in 110 s before it was killed
    (dict(deep_T=10**9), "deep_T", TIME),  # ran until killed
    (dict(message_T=10**9), "message_T", TIME),  # ran until killed
    (dict(T=10**9, metric_every=10_000), "T", TIME),  # ran until killed
    (dict(message_draws=10**9), "message_draws", MEMORY),  # MemoryError (58 TiB) after computing, unnamed
    (dict(n_data=10**9), "n_data", MEMORY),  # MemoryError (238 GiB) after computing, unnamed
]


@pytest.mark.parametrize("scale", ["quick", "paper"])
@pytest.mark.parametrize("values, name, kind", REPRODUCTIONS, ids=[r[1] for r in REPRODUCTIONS])
def test_reproduction_is_refused_by_the_rules_naming_its_parameter(defaults, scale, values, name, kind):
    found = problems("real_mechanisms", {**defaults("real_mechanisms", scale), **values})
    mine = [p for p in found if p.startswith(f"parameter {name!r} {kind}")]
    assert mine, found
    msg = mine[0]
    if kind == MEMORY:
        have = costs.machine_memory() / 2**30
        assert f"more than 50% of this machine's {have:,.1f} GiB; lower {name}" in msg
        assert " GiB at once" in msg or " TiB at once" in msg
    else:
        assert " hours by a generous estimate" in msg and "more than max_hours = 3;" in msg
        assert msg.endswith(f"lower {name}, or raise max_hours to run it anyway")


@pytest.mark.parametrize("values, name, kind", REPRODUCTIONS, ids=[r[1] for r in REPRODUCTIONS])
def test_reproduction_is_refused_by_the_check_cell(check_cell, values, name, kind):
    """The whole path a user takes: papermill -p passes 1e9 as a float; P.resolve refuses it."""
    passed = {k: float(v) for k, v in values.items()}
    with pytest.raises(P.ParameterError) as info:
        check_cell("real_mechanisms", "quick", **passed)
    assert f"parameter {name!r} {kind}" in str(info.value)


def test_width_10000_is_refused_by_resolve_with_the_amount(check_cell):
    with pytest.raises(P.ParameterError) as info:
        check_cell("real_mechanisms", "quick", width=10_000)
    msg = str(info.value)
    assert ("parameter 'width' is too large for this machine's memory: with width = 10,000, the deep chain would hold "
            "about ") in msg
    amount = float(msg.split("the deep chain would hold about ")[1].split(" ")[0].replace(",", ""))
    unit = msg.split("the deep chain would hold about ")[1].split(" ")[1]
    # 5 runs of the depth-8 chain, each 8 × 10,000² + 10,000 float64 weights: at least 32 GB for one copy each
    assert amount * {"GiB": 2**30, "TiB": 2**40}[unit] >= 5 * (8 * 10_000**2 + 10_000) * 8


def test_a_deep_chain_of_1000_layers_is_estimated_but_within_three_hours(defaults):
    """depths [2, 1000] is not a runaway: one depth-1,000 group of 10 runs took 518 s for 40 steps on the
    build machine, so the paper's 1,000 steps take under an hour; the estimate grows with the layers and
    is refused when max_hours is below it, naming depths."""
    for scale in ("quick", "paper"):
        p = defaults("real_mechanisms", scale)
        base = costs.estimate("real_mechanisms", p)
        deep = costs.estimate("real_mechanisms", {**p, "depths": [2, 1000]})
        layers = sum(p["depths"])
        stage = lambda e: next(s for s in e.stages if s.name == "deep chain")  # noqa: E731
        assert stage(deep).seconds == pytest.approx(stage(base).seconds * 1002 / layers, rel=0.01)
        assert deep.hours < costs.DEFAULT_MAX_HOURS
        found = problems("real_mechanisms", {**p, "depths": [2, 1000], "max_hours": deep.hours / 2})
        assert any(f.startswith("parameter 'depths' makes this chapter run too long: with depths = [2, 1,000]")
                   and f.endswith("use fewer or smaller values in depths, or raise max_hours to run it anyway")
                   for f in found), found


# -- every chapter: defaults pass, rules name only declared parameters, references are the defaults ----------

CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))


def test_every_chapter_has_an_estimate():
    assert sorted(costs.CHAPTERS) == CHAPTERS
    with pytest.raises(ValueError, match="chapter must be one of"):
        costs.rules("settings")


@pytest.mark.parametrize("scale", ["paper", "quick"])
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_defaults_pass_well_within_the_ceilings(defaults, chapter, scale):
    p = defaults(chapter, scale)  # the check cell, cost rules included, passed
    assert problems(chapter, p) == []
    e = costs.estimate(chapter, p)
    assert e.hours < costs.DEFAULT_MAX_HOURS / 4  # the whole book builds in about 20 minutes
    assert e.peak_bytes < min(2 * 2**30, HALF * costs.machine_memory())
    assert costs.driver(chapter, p) is None  # nothing above its paper default drives it


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_rules_read_only_parameters_the_chapter_declares(defaults, chapter):
    declared = set(defaults(chapter, "quick"))
    for r in costs.rules(chapter):
        required, optional = r.names()
        assert set(required) <= declared and set(optional) <= {"max_hours"}
        assert set(costs.REFERENCE[chapter]) <= set(required)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_reference_values_are_the_paper_defaults(defaults, chapter):
    p = defaults(chapter, "paper")
    assert {k: p[k] for k in costs.REFERENCE[chapter]} == costs.REFERENCE[chapter]


def test_max_hours_is_the_ceiling(defaults):
    p = {**defaults("real_mechanisms", "quick"), "T": 10**9, "metric_every": 10_000}
    hours = costs.estimate("real_mechanisms", p).hours
    assert costs.time_problem("real_mechanisms", p, max_hours=hours * 1.001) is None
    assert costs.time_problem("real_mechanisms", p, max_hours=hours * 0.999) is not None
    q = defaults("setting", "quick")
    msg = costs.time_problem("setting", q, max_hours=0.0)  # nothing drives it above its default: the stage's first
    assert msg.startswith("parameter 'depths' makes this chapter run too long") and "max_hours = 0;" in msg


def test_memory_ceiling_is_half_of_the_machine(defaults, monkeypatch):
    p = defaults("counterexamples", "quick")
    need = costs.estimate("counterexamples", p).bytes
    monkeypatch.setattr(costs, "machine_memory", lambda: int(2 * need) + 2)
    assert costs.memory_problem("counterexamples", p) is None
    monkeypatch.setattr(costs, "machine_memory", lambda: int(2 * need) - 2)
    assert costs.memory_problem("counterexamples", p).startswith("parameter 'a1_draws' is too large")
    monkeypatch.setattr(costs, "machine_memory", lambda: 0)  # unknown: no refusal
    assert costs.memory_problem("counterexamples", {**p, "a1_draws": 10**8}) is None


# -- the counts behind the estimates are the studies' own ------------------------------------------------------


def test_mirrored_constants_equal_the_studies():
    from fbsgd.engine.sweeps import RunConfig
    from fbsgd.studies.correctors import study as CR
    from fbsgd.studies.counterexamples import study as CE
    from fbsgd.studies.error_propagation import injection as EPI
    from fbsgd.studies.error_propagation import study as EP
    from fbsgd.studies.forward_gradients import study as FG
    from fbsgd.studies.rates import schedules as D
    from fbsgd.studies.real_mechanisms import deep_chain as DC
    from fbsgd.studies.section7 import design as X

    assert (costs.M_SAMPLES, costs.D_FEATURES) == (RunConfig().M, RunConfig().d)
    assert (costs.FLOW_TIME, costs.PL_METRIC_EVERY) == (D.FLOW_TIME, D.PL_METRIC_EVERY)
    assert costs.SLOPE_WINDOW == X.SLOPE_WINDOW
    assert (costs.SCAN_GAMMAS, costs.SCAN_MIN_STEPS, costs.A3_SETTINGS) == (
        len(CE.SCAN_GAMMAS), CE.SCAN_MIN_STEPS, len(CE.PAPER_SETTINGS))
    assert costs.A3_VARIANTS == len(CR.A3_VARIANTS)
    assert costs.GROUP_ROWS == EP.GROUP_ROWS
    assert costs.MIN_GROUPS == inspect.signature(EPI.gradient_error).parameters["min_groups"].default
    assert costs.MLP_SAMPLES == inspect.signature(FG.variance_study).parameters["mlp_samples"].default
    assert costs.DEEP_OPTIMIZERS == len(DC.OPTIMIZERS)
    assert costs.DEEP_ERROR_DRAWS == DC.ERROR_DRAWS == inspect.signature(DC.run_deep).parameters["error_draws"].default
    assert costs.FG_FULL_EVALS >= FG.PROBE_STEPS // FG.PROBE_EVERY + 2 * FG.RECORD_POINTS
    assert costs.COMPRESSION_SETTINGS == len(CR.compression_settings(200, "bfloat16"))


@pytest.mark.parametrize("T_min, T_max, per_decade", [(1000, 1_000_000, 2), (1000, 320_000, 2), (20, 10**8, 20),
                                                      (1000, 10_000, 2), (137, 4_567, 3), (50, 51, 1)])
def test_horizons_are_those_of_the_schedules(T_min, T_max, per_decade):
    from fbsgd.studies.rates import schedules as D

    assert costs._horizons(T_min, T_max, per_decade) == D.horizons(T_min, T_max, per_decade)


def _runs(stage) -> int:
    return int(stage.time_what.split(" runs")[0].replace(",", ""))


def test_section7_run_counts_are_those_the_chapters_build(defaults):
    from fbsgd.studies.real_mechanisms import atlas as A
    from fbsgd.studies.real_mechanisms import study as MS
    from fbsgd.studies.real_mechanisms import summary as MSM
    from fbsgd.studies.section7 import design as X
    from fbsgd.studies.section7 import reproducibility as R

    p = defaults("frequent_zero_mean", "paper")
    shared = X.common(p)
    built = (X.frequent_configs("3-4", "nonconvex", 0.001, p["sigma_f_levels"], p["sigma_b_levels"], p["gammas"], p["seeds"], **shared)
             + X.frequent_configs("3", "nonconvex", 0.001, [2.0], [2.0], p["fig3_gammas"], p["seeds"], **shared)
             + X.frequent_configs("5", "l2", 0.1, p["sigma_f_levels"], p["sigma_b_levels"], p["gammas"], p["seeds"], **shared))
    assert _runs(costs.estimate("frequent_zero_mean", p).stages[0]) == len(built)

    p = defaults("intermittent", "paper")
    built = [c for fig in ("7", "8") for c in X.intermittent_configs(fig, "l2", 0.1, p["sigma_f_panels"], p["intervals"],
                                                                      p["gammas"], p["seeds"], **X.common(p))]
    assert _runs(costs.estimate("intermittent", p).stages[0]) == len(built)

    p = defaults("nonzero_mean", "paper")
    built = X.nonzero_mean_configs("6", "nonconvex", 0.001, p["sigma_b_levels"], p["gammas"], p["seeds"], **X.common(p))
    assert _runs(costs.estimate("nonzero_mean", p).stages[0]) == len(built)

    p = defaults("reproducibility", "paper")
    variants = R.variant_configs(X.common(p), p["sigma_f_levels"], p["sigma_b_levels"], p["fig6_levels"], 0.001, 0.1,
                                 X.slope_window(p["gammas"]), p["seeds"], p["mode"])
    assert _runs(costs.estimate("reproducibility", p).stages[0]) == sum(len(v) for v in variants.values())

    p = defaults("real_mechanisms", "paper")
    roundings, _ = MSM.mechanism_set(p["formats"], p["modes"], p["keep_fractions"], p["flip_rates"], costs.M_SAMPLES)
    e = {s.name: s for s in costs.estimate("real_mechanisms", p).stages}
    assert _runs(e["Figure 4 sweep with rounding"]) == len(MS.mechanism_configs(roundings, p["gammas"], p["seeds"], **X.common(p)))
    assert _runs(e["bit-flip atlas"]) == len(A.atlas_configs(p["atlas_rates"], p["atlas_gammas"], p["atlas_seeds"], **X.common(p)))


def test_horizon_run_counts_are_those_the_designs_build(defaults):
    from fbsgd.studies.budgets import study as B
    from fbsgd.studies.convergence import study as S
    from fbsgd.studies.rates import schedules as D

    p = defaults("convergence", "paper")
    Ts = D.horizons(p["T_min"], p["T_max"], p["per_decade"])
    c = {"nonconvex": p["c_nonconvex"], "pl": 30.0}
    rho = {"nonconvex": 0.001, "pl": 0.1}
    design = S.convergence_design(Ts, list(range(p["n_seeds"])), c, rho, S.settings(p["sigma_f"], p["sigma_b"], "shared"), 0)
    stage = costs.estimate("convergence", p).stages[0]
    assert _runs(stage) == len(design)
    its = int(stage.time_what.split("runs, ")[1].split(" run-iterations")[0].replace(",", ""))
    assert its == sum(cfg.T for cfg in design.config)
    mean_every = sum(cfg.T / cfg.metric_every for cfg in design.config)  # metric evaluations in the design
    assert sum(g_T / costs._nonconvex_every(g_T, p["c_nonconvex"]) + g_T / costs._pl_every(g_T)
               for g_T in Ts) * len(S.settings(p["sigma_f"], p["sigma_b"], "shared")) * p["n_seeds"] == pytest.approx(mean_every)

    p = defaults("budgets", "paper")
    Ts = D.horizons(p["T_min"], p["T_max"], p["per_decade"])
    seeds = {"nonconvex": list(range(p["n_seeds"])), "pl": list(range(p["n_seeds_pl"]))}
    cases = B.cases(8.0, 2.0, 0.5)
    built = len(B.corollary1_design(Ts, seeds, c, rho, cases, data_seed=0, mode="shared")) + len(
        B.table1_design(Ts, seeds, c, rho, cases, p["exponents"], data_seed=0, mode="shared"))
    assert _runs(costs.estimate("budgets", p).stages[0]) == built


def test_correctors_run_counts_are_those_the_chapter_builds(defaults):
    from fbsgd.studies.correctors import study as CR

    p = defaults("correctors", "paper")
    settings = CR.compression_settings(p["k"], p["fmt"]) + CR.debias_settings(p["sigma_f_debias"], 10) + [CR.baseline_setting()]
    e = {s.name: s for s in costs.estimate("correctors", p).stages}
    assert _runs(e["γ scan"]) == len(settings) * len(p["gammas"]) * len(p["seeds"])
    rated = [s for s in settings if s["part"] != "debias"]  # the chapter's rate scan leaves the de-biasing out
    assert _runs(e["rate scan"]) == len(rated) * len(p["horizons"]) * len(p["rate_seeds"])


@pytest.mark.parametrize("deep_T", [2, 3, 19, 20, 21, 40, 99, 100, 101, 1000, 1234])
def test_deep_chain_full_passes_are_those_of_the_engine_and_the_error(defaults, deep_T):
    """The engine evaluates the full data at t = 0, every, 2·every, … < T and at w_T; the error at w_T
    takes one clean and error_draws perturbed passes."""
    from fbsgd.studies.real_mechanisms import summary as MSM

    every = MSM.deep_design(["bfloat16 nearest"], deep_T, 0.1, 0.01, 0.9, 0.001)["metric_every"]
    expected = sum(1 for t in range(deep_T) if t % every == 0) + 1
    p = {**defaults("real_mechanisms", "quick"), "deep_T": deep_T}
    deep = next(s for s in costs.estimate("real_mechanisms", p).stages if s.name == "deep chain")
    assert f"+ {expected} full passes over" in deep.time_what
    assert f"+ {1 + costs.DEEP_ERROR_DRAWS} full passes for the error" in deep.time_what


@pytest.mark.parametrize("N, width", [(2, 8), (8, 32), (3, 100)])
def test_deep_chain_memory_holds_the_weights_of_every_run(defaults, N, width):
    from fbsgd.studies.real_mechanisms import deep_chain as DC

    p = {**defaults("real_mechanisms", "quick"), "depths": [1, N], "width": width}
    deep = next(s for s in costs.estimate("real_mechanisms", p).stages if s.name == "deep chain")
    runs = len(DC.OPTIMIZERS) * len(p["deep_seeds"]) * (1 + 2 * len(p["deep_formats"]))  # one depth's runs
    size = DC.chain_net(N, width, 1.0).weight_size
    assert f"{runs} runs of {size:,} weights" in deep.memory_what
    assert deep.bytes >= costs.DEEP_WEIGHT_COPIES * runs * size * 8


@pytest.mark.parametrize("K", [100, 1000, 10_000, 100_000, 10**6, 10**8])
def test_sgd_derivatives_checkpoints_bound(K):
    from fbsgd.studies.sgd_derivatives import sgd_prime as S

    assert len(S.checkpoints(K, 150, 150)) <= costs.SGDD_CHECKPOINTS
    assert len(S.checkpoints(K, 200, 100)) <= costs.SGDD_CHECKPOINTS


def test_moment_table_memory_holds_its_draws(defaults):
    """draw_deltas holds (iterates, draws, 2,000) float64 before the statistics copy them."""
    from fbsgd.studies.real_mechanisms import mechanisms as MX
    from fbsgd import perturbations as PT

    p = defaults("real_mechanisms", "quick")
    x = np.zeros((p["message_checkpoints"], costs.M_SAMPLES, 1))
    out = MX.draw_deltas(PT.Round("bfloat16"), x, p["message_draws"])
    stage = next(s for s in costs.estimate("real_mechanisms", p).stages if s.name == "moment table")
    assert stage.bytes >= 4 * out.nbytes


# -- the estimates scale as the work ---------------------------------------------------------------------------


def _stage(chapter, p, name):
    return next(s for s in costs.estimate(chapter, p).stages if s.name == name)


@pytest.mark.parametrize("chapter, stage", [("frequent_zero_mean", "Figures 3–5 sweep"), ("nonzero_mean", "Figure 6 sweep"),
                                            ("intermittent", "Figures 7–8 sweep"),
                                            ("real_mechanisms", "Figure 4 sweep with rounding"),
                                            ("correctors", "γ scan")])
def test_doubling_T_doubles_the_run_time(defaults, chapter, stage):
    p = defaults(chapter, "paper")
    fixed = costs.SWEEP_FIXED_S if "sweep" in stage else 0.0
    one, two = (_stage(chapter, {**p, "T": T}, stage).seconds - fixed for T in (p["T"], 2 * p["T"]))
    assert two == pytest.approx(2 * one, rel=1e-12)


def test_doubling_draws_doubles_time_and_memory_of_the_moment_table(defaults):
    p = defaults("real_mechanisms", "paper")
    one, two = (_stage("real_mechanisms", {**p, "message_draws": k}, "moment table") for k in (1000, 2000))
    assert two.seconds == pytest.approx(2 * one.seconds, rel=1e-12)
    assert two.bytes == pytest.approx(2 * one.bytes, rel=1e-12)


def test_memory_grows_with_the_square_of_the_width_where_weights_dominate(defaults):
    p = defaults("setting", "paper")
    one, two = (_stage("setting", {**p, "width": w}, "depth amplification").bytes for w in (256, 512))
    assert two == pytest.approx(4 * one, rel=1e-12)  # only the width × width layers are held
    p = defaults("real_mechanisms", "paper")
    one, two = (_stage("real_mechanisms", {**p, "width": w}, "deep chain").bytes for w in (4000, 8000))
    assert 3.9 < two / one <= 4.0  # the weights (∝ width²) dominate; the activations grow like the width
    one, two = (_stage("real_mechanisms", {**p, "n_data": n}, "deep chain").bytes for n in (10**6, 2 * 10**6))
    assert 1.9 < two / one <= 2.0  # the activations of the full-batch passes grow like the data


def test_monte_carlo_time_grows_with_the_draws(defaults):
    p = defaults("error_propagation", "paper")
    one, two = (_stage("error_propagation", {**p, "bias_draws": n}, "bias sweep (c)").seconds for n in (10**6, 2 * 10**6))
    assert two == pytest.approx(2 * one, rel=1e-12)
    p = defaults("counterexamples", "paper")
    one, two = (_stage("counterexamples", {**p, "a1_draws": n}, "A.1 Monte Carlo") for n in (10**6, 2 * 10**6))
    assert (two.seconds, two.bytes) == pytest.approx((2 * one.seconds, 2 * one.bytes), rel=1e-12)


def test_the_driver_is_the_parameter_that_grew(defaults):
    p = defaults("forward_gradients", "paper")
    assert costs.driver("forward_gradients", {**p, "n_samples": 10**6}) == "n_samples"
    assert costs.driver("forward_gradients", {**p, "var_draws": 10**6}, lambda e: e.bytes) == "var_draws"
    p = defaults("sgd_derivatives", "paper")
    assert costs.driver("sgd_derivatives", {**p, "const_iters": 10**8}) == "const_iters"
    msg = costs.time_problem("frequent_zero_mean", {**defaults("frequent_zero_mean", "paper"), "T": 2**31 - 1})
    assert msg.startswith("parameter 'T' makes this chapter run too long: with T = 2,147,483,647")
    hours = float(msg.split("about ")[1].split(" hours")[0].replace(",", ""))
    assert hours > 100 and math.isfinite(hours)
