"""The correctors chapter's runs: Section 7 RunConfigs (the fields the other Section 7 chapters use, so
shared runs share cache keys), the scans' rows against run_sweep on configurations built by hand, and the
drift read from the stored trace against the drift of the full EWMA.  (The correctors' own identities
are tested in tests/library/test_correctors.py.)"""
import json
from pathlib import Path

import numpy as np
import pytest

from fbsgd.studies.section7 import verdicts as S7V
from fbsgd.correctors import SecondOrderDebias, UniformDebias
from fbsgd.engine.sweeps import RunConfig, not_compiled, run_sweep
from fbsgd.metrics import drift_ratio
from fbsgd.perturbations import ErrorFeedback, Round, TopK, zero_mean_uniform
from fbsgd.studies.correctors import study as R
from fbsgd.studies.section7 import design as X

ROOT = Path(__file__).parents[3]


def _parameters(chapter: str) -> dict:
    """The defaults of a chapter's parameters cell (the names it assigns), read from the notebook."""
    nb = json.loads((ROOT / "chapters" / f"{chapter}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    out: dict = {}
    exec("".join(cell["source"]), {}, out)
    return out


def test_section7_fields_are_those_of_the_real_mechanisms_and_frequent_chapters():
    for chapter in ("real_mechanisms", "frequent_zero_mean"):
        p = _parameters(chapter)
        assert {k: p[k] for k in R.SECTION7} == R.SECTION7, chapter


def test_shared_runs_have_the_real_mechanisms_chapters_cache_keys():
    """Standard SGD and plain rounding at either place: the RunConfig the real-mechanisms chapter builds
    (MS.mechanism_configs with X.common of its parameters, its own labels) has this chapter's key."""
    from fbsgd.studies.real_mechanisms import study as MS

    p = {**_parameters("real_mechanisms"), "T": 200_000}
    theirs = {c.key(): c for c in MS.mechanism_configs([Round("float8_e4m3fn", m) for m in ("nearest", "stochastic")],
                                                       [0.003], [1], **X.common(p))}
    settings = [s for s in R.compression_settings(200, "float8_e4m3fn")
                if s["perturbation"] == "float8_e4m3fn" and s["corrector"] in ("plain", "stochastic rounding")]
    ours = [R.run_config(s, 0.003, 1, 200_000) for s in settings + [R.baseline_setting()]]
    assert len(ours) == 5 and all(c.key() in theirs for c in ours)
    assert {theirs[c.key()].figure for c in ours} != {c.figure for c in ours}  # other labels, one key
    assert RunConfig(figure="a", panel="b").key() == RunConfig(figure="c", panel="d").key()


def test_settings_place_the_objects_and_the_papers_noise():
    comp = R.compression_settings(200, "float8_e4m3fn")
    assert len(comp) == 20 and {s["place"] for s in comp} == {"forward", "backward"}
    ef = next(s for s in comp if s["place"] == "backward" and s["perturbation"] == "Top-K"
              and s["corrector"] == "error feedback")
    assert R.run_config(ef, 0.1, 0, 40).plan().backward[2] == ErrorFeedback(TopK(200, "batch")) and ef["mechanism"] == ""
    sr = next(s for s in comp if s["place"] == "forward" and s["corrector"] == "stochastic rounding")
    assert R.run_config(sr, 0.1, 0, 40).plan().forward[1] == Round("float8_e4m3fn", "stochastic")
    assert sr["mechanism"] == "float8_e4m3fn stochastic"
    assert {s["mechanism"] for s in comp if s["corrector"] == "plain"} == {"Top-K k=200", "Rand-K k=200",
                                                                         "float8_e4m3fn nearest"}
    deb = R.debias_settings([2.0], 10)
    noise = zero_mean_uniform(2.0, 10)
    plans = {s["corrector"]: R.run_config(s, 0.1, 0, 40).plan() for s in deb}
    assert all(p.forward[1] == noise for p in plans.values())  # RunConfig's σ_f noise is zero_mean_uniform(σ_f, d)
    assert plans["plain"].backward == {} and plans["exact"].backward[2] == UniformDebias(noise.high)
    assert plans["second-order"].backward[2] == SecondOrderDebias(noise.high**2 / 3)


def test_every_corrector_setting_runs_compiled():
    """The de-biasing kinds run in the compiled kernel as element operations; the compressors, plain and
    with memory, as the engine's own compiled kinds."""
    for s in R.compression_settings(200, "float8_e4m3fn") + R.debias_settings([1.0, 2.0], 10) + [R.baseline_setting()]:
        assert not_compiled(R.run_config(s, 0.1, 0, 40)) is None, s


def test_trace_drift_is_the_drift_of_the_full_ewma():
    t = np.arange(0, 4000, 10)
    e = 1 + np.exp(-t / 900.0)
    sub = np.unique(np.concatenate([np.geomspace(1, t.size, 50).astype(int) - 1, np.linspace(0, t.size - 1, 50).astype(int)]))
    assert S7V.trace_drift(t, e, 4000, 10) == pytest.approx(drift_ratio(e), rel=1e-12)
    assert S7V.trace_drift(t[sub], e[sub], 4000, 10) == pytest.approx(drift_ratio(e), rel=2e-4)


SMALL = [next(s for s in R.compression_settings(200, "float8_e4m3fn") if s["place"] == "backward"
              and s["perturbation"] == "Top-K" and s["corrector"] == "error feedback"),
         *[s for s in R.debias_settings([2.0], 10) if s["corrector"] == "exact"], R.baseline_setting()]
BY_HAND = {"error feedback": dict(backward=ErrorFeedback(TopK(200, "batch"))),
           "exact": dict(perturbation="forward", sigma_f=2.0, backward=UniformDebias(2.0 / np.sqrt(10))),
           "none": {}}


def test_gamma_scan_rows_are_the_runs_of_configurations_built_by_hand(tmp_path):
    T, gammas = 200, [0.3, 1.0]
    scan = R.gamma_scan(SMALL, gammas, [2], T, n_jobs=1, cache_dir=tmp_path, progress=False)
    configs = [RunConfig(gamma=r.gamma, seed=2, T=T, **BY_HAND[r.corrector]) for r in scan.itertuples()]
    full = run_sweep(configs, n_jobs=1, cache_dir=tmp_path, trace_points=2 * T // 10, progress=False)
    for r, c, f in zip(scan.itertuples(), configs, full.table.itertuples()):
        assert r.config_id == c.key() and r.stable_grad_norm == f.stable_grad_norm and not r.diverged
        ewma = full.traces[full.traces.config_id == c.key()].sort_values("t").ewma.to_numpy()
        assert ewma.size == T // 10 and r.drift == pytest.approx(drift_ratio(ewma), rel=1e-12)
    assert set(scan.path[scan.corrector == "exact"]) == {"compiled"}


def test_rate_scan_rows_are_the_runs_of_configurations_built_by_hand(tmp_path):
    rates = R.rate_scan(SMALL, [40, 90], [1], 3.0, n_jobs=1, cache_dir=tmp_path, progress=False)
    for r in rates.itertuples():
        assert r.gamma == pytest.approx(3.0 / np.sqrt(r.T), rel=1e-15)
        k = max(1, min(int(0.25 / r.gamma), r.T // 2))
        c = RunConfig(gamma=3.0 / np.sqrt(r.T), seed=1, T=r.T, metric_every=k, **BY_HAND[r.corrector])
        assert r.mean_sq_grad_norm == run_sweep([c], n_jobs=1, cache_dir=tmp_path, trace_points=4,
                                                progress=False).table.mean_sq_grad_norm.iloc[0]


def test_scans_have_the_columns_the_verdicts_read(tmp_path):
    from fbsgd.studies.correctors import verdicts as CA

    settings = [s for s in R.compression_settings(200, "float8_e4m3fn") if s["perturbation"] == "float8_e4m3fn"
                and s["place"] == "forward" and s["corrector"] in ("plain", "stochastic rounding")] + [R.baseline_setting()]
    scan = R.gamma_scan(settings, [0.1, 0.3, 1.0], [0], 40, n_jobs=1, cache_dir=tmp_path, progress=False)
    rates = R.rate_scan(settings, [40, 80], [0], 3.0, n_jobs=1, cache_dir=tmp_path, progress=False)
    assert {"part", "place", "perturbation", "corrector", "mechanism", "gamma", "seed", "T", "stable_grad_norm", "drift",
            "diverged", "path"} <= set(scan.columns)
    assert {"part", "place", "perturbation", "corrector", "T", "seed", "gamma", "mean_sq_grad_norm", "diverged",
            "path"} <= set(rates.columns)
    table = CA.summary(CA.stable_slopes(scan), rates, {})
    assert len(table) == len(settings) and table.effect.notna().all()
    assert list(table.mechanism) == ["float8_e4m3fn nearest", "float8_e4m3fn stochastic", ""]


def test_figure9_radii_plain_panel_unstable_momentum_panel_stable():
    r = R.figure9_radii().set_index("setting")
    # plain: I − γAᵀA with eigenvalues 10 and 490 of AᵀA at γ = 0.1: factors 0 and −48
    assert r.loc["plain", "gamma"] == 0.1 and r.loc["plain", "radius"] == pytest.approx(48.0, rel=1e-9)
    assert not r.loc["plain", "stable"] and r.loc["momentum", "stable"]
    assert r.loc["momentum", "radius"] < 1
