"""Sweep tables, the content cache, configuration checks and the Dask backend."""
import os

import numpy as np
import pandas as pd
import pytest

from fbsgd.engine import sweeps as S
from fbsgd.engine.storage import atomic_write_bytes
from fbsgd.engine.sweeps import RunConfig, run_sweep, stable_summary

SMALL = [RunConfig(T=600, gamma=g, perturbation=p, sigma_f=1.0, sigma_b=1.0, figure="t", panel=p)
         for g in (0.05, 0.2) for p in ("none", "forward", "backward")]

REQUIRED = ["figure", "panel", "regularizer", "rho", "perturbation", "mean", "sigma_f", "sigma_b", "interval",
            "gamma", "seed", "T", "stable_grad_norm", "stable_iteration", "diverged", "fbsgd_version", "runtime_s", "engine_hash"]


def test_table_has_one_row_per_configuration_and_the_required_columns(tmp_path):
    res = run_sweep(SMALL + SMALL[:2], cache_dir=tmp_path, progress=False, n_jobs=1)
    assert len(res.table) == len(SMALL) + 2
    assert set(REQUIRED) <= set(res.table.columns)
    assert res.computed == len(SMALL)


def test_cache_hit_miss_and_invalidation(tmp_path, monkeypatch):
    first = run_sweep(SMALL, cache_dir=tmp_path, progress=False, n_jobs=1)
    assert first.computed == len(SMALL) and not first.table.cached.any()
    second = run_sweep(SMALL, cache_dir=tmp_path, progress=False, n_jobs=1)
    assert second.computed == 0 and second.table.cached.all()
    pd.testing.assert_series_equal(first.table.stable_grad_norm, second.table.stable_grad_norm)
    # a new configuration is a miss, the others stay hits
    third = run_sweep(SMALL + [RunConfig(T=600, gamma=0.07)], cache_dir=tmp_path, progress=False, n_jobs=1)
    assert third.computed == 1
    # a change of the engine's source changes every key
    monkeypatch.setattr(S, "engine_hash", lambda: "a-different-engine")
    fourth = run_sweep(SMALL, cache_dir=tmp_path, progress=False, n_jobs=1)
    assert fourth.computed == len(SMALL)


def test_a_corrupt_cache_entry_is_recomputed(tmp_path):
    cfg = SMALL[1]
    path = S._cache_path(tmp_path, S.entry_key(cfg, 600))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a file")
    res = run_sweep([cfg], cache_dir=tmp_path, progress=False, n_jobs=1)
    assert res.computed == 1
    assert S._load(tmp_path, S.entry_key(cfg, 600)) is not None


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "x.npz"
    atomic_write_bytes(target, b"old")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_interrupted_sweep_resumes(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = S._run_chunk

    def flaky(chunk, *rest):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(chunk, *rest)

    monkeypatch.setattr(S, "_run_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SMALL, cache_dir=tmp_path, progress=False, n_jobs=1, chunk_size=2)
    monkeypatch.setattr(S, "_run_chunk", real)
    res = run_sweep(SMALL, cache_dir=tmp_path, progress=False, n_jobs=1, chunk_size=2)
    assert 0 < res.computed < len(SMALL)


def test_stable_summary_closed_form():
    T, k = 1000, 10
    t = np.arange(T // k) * k
    trace = 1.0 + 9.0 * np.exp(-t / 100.0)
    stable, it = stable_summary(trace, T, k)
    expected = trace[t >= T - T // 2].mean()
    assert stable == pytest.approx(expected)
    first = t[np.nonzero(trace < 1.5 * expected)[0][0]]
    assert it == first and trace[t == it][0] < 1.5 * expected <= trace[t == it - k][0]


def test_metric_every_10_moves_reported_numbers_by_less_than_tolerance():
    cfgs = [RunConfig(T=4000, gamma=g, perturbation=p, sigma_f=1.0, sigma_b=1.0, metric_every=1) for g in (0.02, 0.2) for p in ("none", "forward", "backward")]
    every1 = run_sweep(cfgs, cache_dir=False, progress=False, n_jobs=1).table
    every10 = run_sweep([RunConfig(**{**c.__dict__, "metric_every": 10}) for c in cfgs], cache_dir=False, progress=False, n_jobs=1).table
    rel = np.abs(every10.stable_grad_norm - every1.stable_grad_norm) / every1.stable_grad_norm
    assert rel.max() < 0.02
    assert (np.abs(every10.stable_iteration - every1.stable_iteration) <= 10 + 0.05 * every1.stable_iteration).all()


@pytest.mark.parametrize("kw,msg", [
    (dict(perturbation="sideways"), "perturbation must be one of"),
    (dict(gamma=0.0), "gamma must be > 0"),
    (dict(sigma_f=-1.0), "sigma_f must be a finite number >= 0"),
    (dict(interval=0), "interval must be an integer >= 1"),
    (dict(mode="batch"), "mode must be one of"),
    (dict(T=5, metric_every=10), "T must be at least 2 \\* metric_every"),
    (dict(ewma=1.0), "ewma must be in"),
])
def test_bad_configurations_raise_clear_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        RunConfig(**kw)


def test_run_sweep_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least one configuration"):
        run_sweep([], progress=False)
    with pytest.raises(TypeError, match="RunConfig"):
        run_sweep([{"gamma": 0.1}], progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        run_sweep(SMALL, chunk_size=0, progress=False, cache_dir=False)


@pytest.mark.slow
def test_dask_backend_gives_the_serial_results(tmp_path):
    joblib = pytest.importorskip("joblib")
    distributed = pytest.importorskip("distributed")
    serial = run_sweep(SMALL, cache_dir=False, progress=False, n_jobs=1, chunk_size=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        with joblib.parallel_config(backend="dask"):
            remote = run_sweep(SMALL, cache_dir=False, progress=False, chunk_size=2)
    cols = ["stable_grad_norm", "stable_iteration", "diverged"]
    pd.testing.assert_frame_equal(serial.table[cols], remote.table[cols])
    pd.testing.assert_frame_equal(serial.traces.reset_index(drop=True), remote.traces.reset_index(drop=True))


def test_ewma_matches_the_recursion_and_keeps_divergence_nan():
    from fbsgd.metrics import ewma

    g = np.array([4.0, 2.0, 1.0, 3.0, np.nan, np.nan])
    beta, k = 0.9, 10
    b = beta**k
    e = [g[0]]
    for x in g[1:4]:
        e.append(b * e[-1] + (1 - b) * x)
    out = ewma(g, beta, k)
    np.testing.assert_allclose(out[:4], e)
    assert np.isnan(out[4:]).all()


def test_a_worker_with_another_engine_refuses_to_run():
    with pytest.raises(RuntimeError, match="different fbsgd engine"):
        S._run_chunk(SMALL[:1], [SMALL[0].key()], "not-this-engine", None, 10)


def test_a_table_row_gives_back_its_configuration():
    cfg = RunConfig(T=50, gamma=0.05, perturbation="forward", sigma_f=0.5, seed=3)
    row = pd.Series({**cfg.__dict__, "stable_grad_norm": 1.0, "T": np.int64(50), "gamma": np.float64(0.05)})
    back = RunConfig.from_row(row)
    assert back == cfg and back.key() == cfg.key()


def test_a_sweep_runs_perturbation_objects_and_keeps_the_paper_configurations_unchanged(tmp_path):
    from fbsgd import perturbations as P

    plain = RunConfig(T=300, gamma=0.1)
    assert "forward" not in plain.computation()  # unset objects do not change keys or streams
    cfgs = [RunConfig(T=300, gamma=0.1, forward=P.Round("float8_e4m3fn")),
            RunConfig(T=300, gamma=0.1, backward=P.every(2, P.BitFlip(1e-3, "mantissa"))),
            plain]
    res = run_sweep(cfgs, cache_dir=tmp_path, progress=False, n_jobs=1)
    assert res.table.forward.iloc[0] == "Round(format='float8_e4m3fn', mode='nearest')"
    assert len(set(res.table.config_id)) == 3
    assert len(set(res.table.stable_grad_norm)) == 3
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        RunConfig.from_row(res.table.iloc[0])
    assert RunConfig.from_row(res.table.iloc[2]) == plain
    assert S.not_compiled(RunConfig(forward=P.GaussianNoise(0.1)))[0] == "GaussianNoise"  # runs on the reference path
    assert S.not_compiled(RunConfig(forward=P.TopK(3, scope="batch"))) is None  # compiled
    with pytest.raises(ValueError, match="forward: .*cannot be put in canonical form"):
        RunConfig(forward=P.every(2, _Opaque()))
    with pytest.raises(ValueError, match="not both at one place"):
        RunConfig(perturbation="forward", sigma_f=1.0, forward=P.Round("bfloat16"))


def test_chunks_keep_every_worker_busy_and_stay_within_the_chunk_size():
    from fbsgd.engine.sweeps import _chunks

    long = [RunConfig(T=2_000_000, seed=s) for s in range(9)]
    short = [RunConfig(T=200_000, seed=s) for s in range(20)]
    sizes = [len(c) for c in _chunks(long + short, 8, workers=2)]
    assert sizes == [5, 4, 8, 8, 4]  # the nine long runs split 5 + 4, not 8 + 1; the 20 short ones by 8
    assert [len(c) for c in _chunks(long, 8, workers=1)] == [8, 1]
    assert all(len({(x.T, x.d, x.M) for x in c}) == 1 for c in _chunks(long + short, 3, workers=4))


def test_cost_text_sums_the_sweeps():
    from fbsgd.engine.sweeps import SweepResult, cost_text

    a = SweepResult(pd.DataFrame(), pd.DataFrame(), computed=3, from_cache=1, wall_s=10.04)
    b = SweepResult(pd.DataFrame(), pd.DataFrame(), computed=2, from_cache=0, wall_s=2.5)
    assert cost_text(a) == "3 computed, 1 from the cache, 10.0 s"
    assert cost_text(a, b) == "5 computed, 1 from the cache, 12.5 s"


class _Opaque(__import__("fbsgd.perturbations", fromlist=["Perturbation"]).Perturbation):
    """A kind whose field is a lambda: no canonical form, so no key and no stream."""

    def __init__(self):
        self.f = lambda x: x

    def apply(self, x, key, step):
        return self.f(x)


def test_an_uncompiled_kind_runs_on_the_reference_path_with_one_notice(tmp_path):
    """A Section 7 run whose perturbation has no compiled form goes through optimizers.train (the reference
    path): one NotCompiledWarning per sweep naming the kind, the same numbers as lockstep.reference_run, cached."""
    from fbsgd import perturbations as P
    from fbsgd.engine import lockstep as E

    cfgs = [RunConfig(T=60, gamma=0.2, metric_every=2, seed=s, backward=P.GaussianNoise(0.1)) for s in (0, 1)]
    compiled = RunConfig(T=60, gamma=0.2, metric_every=2)
    with pytest.warns(S.NotCompiledWarning) as notes:
        res = run_sweep(cfgs + [compiled], cache_dir=tmp_path, progress=False, n_jobs=1, trace_points=1000)
    mine = [w for w in notes if issubclass(w.category, S.NotCompiledWarning)]
    assert len(mine) == 1
    text = str(mine[0].message)
    assert "2 configurations run on the reference path" in text and "GaussianNoise" in text and "compiled()" in text
    assert "the Section 7 kernel runs " + S.compiled_forms(False) in text  # the refusing kernel's own table
    assert list(res.table.path) == ["reference", "reference", "compiled"]
    for i, cfg in enumerate(cfgs):
        w, norms, div = E.reference_run(cfg.problem(), cfg.plan(), cfg.stream_seed(), cfg.gamma, cfg.T, cfg.noise_std,
                                        E.xi_key(cfg.stream_seed()), metric_every=cfg.metric_every)
        tr = res.traces[res.traces.config_id == cfg.key()].sort_values("t")
        np.testing.assert_array_equal(tr.grad_norm.to_numpy(), norms[tr.t.to_numpy() // cfg.metric_every])
        assert res.table.final_weight_norm.iloc[i] == np.linalg.norm(w)
    again = run_sweep(cfgs, cache_dir=tmp_path, progress=False, n_jobs=1, trace_points=1000)
    assert again.computed == 0 and again.table.cached.all()


def test_the_sweep_returns_each_runs_final_weights_equal_to_the_reference_run(tmp_path):
    # w_T of a float64 configuration, compiled and from the cache, is the reference path's w_T (train)
    import numpy as np

    from fbsgd.engine.sweeps import RunConfig, _section7_reference, _trace_grid, run_sweep
    from fbsgd.perturbations import Round

    cfg = RunConfig(T=400, d=4, M=64, gamma=0.05, metric_every=10, forward=Round("bfloat16"), precision="float64")
    first = run_sweep([cfg], cache_dir=tmp_path, progress=False)
    again = run_sweep([cfg], cache_dir=tmp_path, progress=False)
    assert again.from_cache == 1
    w = first.weights[cfg.key()]
    np.testing.assert_array_equal(w, again.weights[cfg.key()])
    ref_w = _section7_reference(cfg, _trace_grid(cfg.T, cfg.metric_every, 600))[2]
    np.testing.assert_allclose(w, ref_w, rtol=1e-12, atol=0)  # float64: to the summation order of the dot products
    assert np.linalg.norm(w) == pytest.approx(first.table.final_weight_norm.iloc[0], rel=1e-12)


def test_run_sweep_refuses_a_kind_whose_compiled_form_is_not_its_apply(tmp_path):
    """A researcher's kind that adds U(0, 2) but declares the compiled form U(−1, 1): run_sweep refuses it
    before anything is computed, naming the field, and writes nothing to the cache."""
    from dataclasses import dataclass as _dc

    from fbsgd import perturbations as P
    from fbsgd import rng as R

    @_dc(frozen=True)
    class Lies(P.Perturbation):
        def apply(self, x, key, step):
            return x + R.uniform(key, step, np.shape(x), 0.0, 2.0)

        def compiled(self):
            return P.CompiledOp("uniform", (-1.0, 1.0), True)

    cfg = RunConfig(T=20, gamma=0.1, forward=Lies())
    with pytest.raises(ValueError, match=r"run_sweep: the perturbation at forward\[1\].*refused.*\(low, high\)"):
        run_sweep([cfg], n_jobs=1, cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.rglob("*.npz")) and not any(p.is_file() and p.suffix != ".probe" for p in tmp_path.rglob("*"))


def test_run_sweep_refuses_a_bad_kind_inside_error_feedback(tmp_path):
    from dataclasses import dataclass as _dc

    from fbsgd import lowprec
    from fbsgd import perturbations as P

    @_dc(frozen=True)
    class WrongFormat(P.Perturbation):
        def apply(self, x, key, step):
            return lowprec.round_array(np.asarray(x), "float8_e5m2")

        def compiled(self):
            return P.CompiledOp("round", (*lowprec.format_of("float8_e4m3fn").args, False))

    with pytest.raises(ValueError, match=r"refused.*man_bits"):
        run_sweep([RunConfig(T=20, gamma=0.1, backward=P.ErrorFeedback(WrongFormat()))], n_jobs=1, cache_dir=False,
                  progress=False)
