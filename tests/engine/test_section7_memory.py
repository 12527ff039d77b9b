"""The Section 7 kernel runs Top-K, Rand-K, error feedback and delta compression (SITE places, the chain
kernel's sites on the whole message): against the readable reference (fbsgd.optimizers.train with the
perturbed passes, lockstep.reference_run) at both places in both precisions, with schedules; batch
invariance; the memory kept from one kernel call to the next.  And the O(n) Top-K / Rand-K selection
(chain_kernel.keep_k, kth_smallest) against numpy's stable argsort and sort."""
import math
import warnings
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from fbsgd import correctors as Co
from fbsgd import perturbations as P
from fbsgd import rng
from fbsgd.engine import chain_kernel as CK
from fbsgd.engine import kernel as K
from fbsgd.engine import lockstep as E
from fbsgd.engine.sweeps import NotCompiledWarning, RunConfig, run_sweep
from fbsgd.lowprec import FORMATS, round_entries

# -- the selection, against numpy --------------------------------------------------------------------


def _messages(g, n):
    """Random messages with many ties, NaN, ±inf and signed zeros."""
    kind = g.integers(4)
    if kind == 0:
        x = g.standard_normal(n)
    elif kind == 1:
        x = g.integers(-3, 4, n).astype(float)  # ties everywhere, |−2| = |2|
    elif kind == 2:
        x = np.round(g.standard_normal(n), 1) * (g.random(n) < 0.5)  # ties and many zeros
    else:
        x = np.full(n, 0.5) * np.where(g.random(n) < 0.5, -1.0, 1.0)  # one magnitude: ties only
    x[g.random(n) < 0.1] = np.nan
    x[g.random(n) < 0.02] = np.inf
    x[g.random(n) < 0.02] = -np.inf
    x[g.random(n) < 0.05] = -0.0
    return x


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_topk_keeps_the_k_first_of_numpys_stable_order(dtype):
    """keep_k's kept set (one column of n entries: the batch scope of a one-feature message) is the k first
    of np.argsort(−|x|, kind="stable") with NaN last, ties to the lower index, for n above and below the
    sampled bracket (4·SAMPLE) and every k."""
    g = np.random.default_rng(11)
    for trial in range(400):
        n = int(g.integers(2, 40)) if trial % 2 else int(g.integers(4 * CK.SAMPLE + 1, 2500))
        k = int(g.integers(1, n))
        x = _messages(g, n).astype(dtype)
        order = np.argsort(-np.abs(x.astype(np.float64)), kind="stable")  # NaN last
        want = np.zeros_like(x)
        want[order[:k]] = x[order[:k]]
        m = x.copy()
        CK.keep_k(m, 1, k, 1, 0, np.uint64(3), False, np.empty((2, n)))
        assert m.tobytes() == want.tobytes(), (trial, n, k)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_randk_keeps_the_k_smallest_draws_scaled(dtype):
    """Rand-K keeps the entries of the k smallest draws uniform01(key, t, i) (ties to the lower index), times
    n/k in the message's precision; rows of a (rows, d) message (scope 0) draw index row·d + i."""
    g = np.random.default_rng(12)
    for trial in range(60):
        rows, d = int(g.integers(1, 4)), int(g.integers(2, 900))
        k = int(g.integers(1, d))
        x = _messages(g, rows * d).astype(dtype)
        want = x.reshape(rows, d).copy()
        for r in range(rows):
            u = rng.uniform(7, trial, rows * d).reshape(rows, d)[r]
            keep = np.zeros(d, bool)
            keep[np.argsort(u, kind="stable")[:k]] = True
            want[r] = np.where(keep, want[r] * dtype(d / k), 0.0)
        m = x.copy()
        CK.keep_k(m, d, k, 0, trial, np.uint64(7), True, np.empty((2, d)))
        assert m.tobytes() == want.astype(dtype).tobytes(), trial


def test_kth_smallest_is_the_sorted_value_and_leaves_its_input():
    g = np.random.default_rng(13)
    cases = [np.sort(g.standard_normal(3000)), np.sort(g.standard_normal(3000))[::-1].copy(), np.zeros(2000),
             np.repeat(g.standard_normal(7), 400), np.tile(np.arange(50.0), 60)]
    cases += [g.integers(0, int(g.integers(1, 100)), int(g.integers(1, 4000))).astype(float) for _ in range(40)]
    for a in cases:
        a[: a.size // 50] = np.inf
        n = a.size
        for r in sorted({0, n - 1, n // 2, n // 10, int(g.integers(n))}):
            before = a.copy()
            assert CK.kth_smallest(a, n, r, np.empty(n)) == np.sort(a)[r]
            assert a.tobytes() == before.tobytes()


# -- whole runs against the reference ------------------------------------------------------------------

COMPRESSORS = {"topk": P.TopK(30, "batch"), "randk": P.RandK(40, "batch"), "round": P.Round("float8_e4m3fn"),
               "round sr": P.Round("bfloat16", "stochastic")}
KINDS = {
    "topk batch": P.TopK(30, "batch"), "topk per sample": P.TopK(1), "randk batch": P.RandK(40, "batch"),
    "randk per sample": P.RandK(2),
    **{f"ef {n}": P.ErrorFeedback(c) for n, c in COMPRESSORS.items()},
    **{f"delta {n}": Co.DeltaCompression(c) for n, c in COMPRESSORS.items()},
    "every 3 ef topk": P.every(3, P.ErrorFeedback(P.TopK(20, "batch"))),
    "every 2 delta randk": P.every(2, Co.DeltaCompression(P.RandK(25, "batch")), offset=1),
    "budget delta round": P.budget(6, 40, Co.DeltaCompression(P.Round("float8_e5m2"))),
    "every 4 randk": P.every(4, P.RandK(10, "batch")),
    "ef uniform": P.ErrorFeedback(P.UniformNoise(-0.2, 0.1)), "delta bitflip": Co.DeltaCompression(P.BitFlip(0.01, "mantissa")),
}


def _kernel_vs_reference(plan, precision, T=40, gamma=0.5, M=300, seed=7):
    cfg = RunConfig(T=T, gamma=gamma, M=M, precision=precision)
    prob = cfg.problem()
    AT64 = np.ascontiguousarray(prob.signed_features.T)
    AT = AT64.astype(precision)
    row = E.compile_plan(P.Plan(**plan), seed)
    row.update(gamma=gamma, rho=prob.rho, reg=0, noise_std=cfg.noise_std, xi_key=E.xi_key(seed), f_star=0.0, metric64=0)
    W = np.zeros((1, cfg.d))
    norms = np.full((1, T), np.nan)
    div = np.full(1, -1, np.int64)
    E.kernel(cfg.d, precision)(AT, AT64, W, 0, T, 1, E.kernel_params([row]), norms, np.zeros(0, np.int64),
                               np.zeros((1, 0)), div)
    w_ref, norms_ref, div_ref = E.reference_run(prob, P.Plan(**plan), seed, gamma, T, cfg.noise_std, E.xi_key(seed))
    assert int(div[0]) == div_ref == -1
    return W[0], norms[0], w_ref, norms_ref


@pytest.mark.parametrize("where", ["forward", "backward"])
@pytest.mark.parametrize("name", list(KINDS))
def test_the_kernel_runs_each_kind_as_the_reference_does(name, where):
    """float64: the reference's run up to the summation order of the dot products (as every compiled kind,
    tests/engine/test_lockstep.py); float32: within the float32 pass's rounding.  The kind acts (the run
    differs from the clean one) except where it is the identity (per sample, one entry per row)."""
    plan = {where: {1 if where == "forward" else 2: KINDS[name]}}
    assert E.compile_plan(P.Plan(**plan), 0)[f"{where[0]}_kind"] == K.SITE or name.startswith(("ef uniform",))
    w, norms, w_ref, norms_ref = _kernel_vs_reference(plan, "float64")
    np.testing.assert_allclose(w, w_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(norms, norms_ref, rtol=1e-10)
    clean = _kernel_vs_reference({}, "float64")[0]
    if "per sample" in name:  # the identity: the clean run bit for bit (the memory kernel sums as the tile path)
        np.testing.assert_array_equal(w, clean)
    else:
        assert not np.allclose(w, clean, rtol=1e-9)
    w32, norms32, *_ = _kernel_vs_reference(plan, "float32")
    np.testing.assert_allclose(norms32, norms_ref, rtol=2e-2, atol=1e-4)


def test_the_memory_is_kept_across_inactive_steps_and_from_call_to_call():
    """every(3, ErrorFeedback(TopK)) keeps its residual between active steps (the reference's _Gated keeps
    it; a memoryless every(3, TopK) gives another run); a run cut into two kernel calls (t0..t1, t1..T)
    gives the bits of one call, the memories kept in the KernelParams."""
    kept = _kernel_vs_reference(dict(backward={2: P.every(3, P.ErrorFeedback(P.TopK(20, "batch")))}), "float64")
    reset = _kernel_vs_reference(dict(backward={2: P.every(3, P.TopK(20, "batch"))}), "float64")
    assert not np.allclose(kept[0], reset[0], rtol=1e-6)
    cfgs = [RunConfig(T=60, gamma=0.3, M=300, forward=Co.DeltaCompression(P.RandK(30, "batch")),
                      backward=P.ErrorFeedback(P.Round("float8_e4m3fn", "stochastic")), precision=pr)
            for pr in ("float32", "float64")]
    for cfg in cfgs:
        AT64 = np.ascontiguousarray(cfg.problem().signed_features.T)
        AT = AT64.astype(cfg.precision)
        runs = []
        for cuts in ((0, 60), (0, 23, 60)):
            params = E.kernel_params([cfg.kernel_row()])
            W = np.zeros((1, cfg.d))
            norms = np.full((1, 60), np.nan)
            for t0, t1 in zip(cuts[:-1], cuts[1:]):
                E.kernel(cfg.d, cfg.precision)(AT, AT64, W, t0, t1, 1, params, norms, np.zeros(0, np.int64),
                                               np.zeros((1, 0)), np.full(1, -1, np.int64))
            runs.append((W.tobytes(), norms.tobytes()))
        assert runs[0] == runs[1]


def test_a_configuration_gives_the_same_bits_alone_and_in_any_chunk():
    """A configuration with memory kinds at both places: alone, among others (clean, rounding on the tile
    kernel, Top-K, delta, a researcher's element kind through the whole-message kernel with functions), in
    any order and chunking: the same bits."""
    from tests.engine.test_compiled_forms import RoundBits

    for precision in ("float32", "float64"):
        target = RunConfig(T=300, gamma=0.1, seed=2, precision=precision,
                           forward=P.ErrorFeedback(P.TopK(200, "batch")),
                           backward=Co.DeltaCompression(P.Round("float8_e4m3fn")))
        others = [RunConfig(T=300, gamma=g, precision=precision, forward=f, backward=b) for g in (0.05, 0.2)
                  for f, b in ((None, None), (P.Round("bfloat16"), None), (P.RandK(100, "batch"), RoundBits(5)),
                               (None, P.every(2, P.ErrorFeedback(P.RandK(50, "batch")))))]

        def fingerprint(configs, chunk):
            with warnings.catch_warnings():
                warnings.simplefilter("error", NotCompiledWarning)  # every configuration compiled
                res = run_sweep(configs, cache_dir=False, progress=False, n_jobs=1, chunk_size=chunk,
                                trace_points=10_000)
            tr = res.traces[res.traces.config_id == target.key()].sort_values("t")
            return res.weights[target.key()].tobytes(), tr.grad_norm.to_numpy().tobytes()

        alone = fingerprint([target], 1)
        assert fingerprint(others[:3] + [target] + others[3:], 9) == alone
        assert fingerprint(list(reversed(others)) + [target], 4) == alone


def test_what_stays_on_the_reference_path_is_named():
    from fbsgd.engine import sweeps as S

    for p in (P.ErrorFeedback(P.every(2, P.TopK(1))), Co.DeltaCompression(P.ErrorFeedback(P.TopK(1))),
              P.ErrorFeedback(P.GaussianNoise(0.1))):
        why = S.not_compiled(RunConfig(T=100, forward=p))
        assert why is not None and why[0] == type(p).__name__, why
    for p in KINDS.values():
        assert S.not_compiled(RunConfig(T=100, backward=p)) is None
    text = S.compiled_forms(False)
    for kind, code in E.KINDS.items():  # the Section 7 kernel's own table, every kind named
        assert f"{E.FORMS[kind]} ({kind!r})" in text


# -- rounding below the format's normal range (delta compression's small changes), against ml_dtypes --------


def _below_normal(g, n):
    """Values from far below a format's smallest subnormal up to its normal range (each sign), the halfway
    points between subnormals (ties), float64 subnormals, ±0, ±inf and NaN."""
    x = g.standard_normal(n) * 10.0 ** g.uniform(-14, 0, n)
    ties = (g.integers(0, 64, 40) + 0.5) * 2.0**-9 * np.where(g.random(40) < 0.5, -1, 1)  # e4m3: spacing 2**-9
    return np.concatenate([x, ties, [0.0, -0.0, 5e-324, -5e-324, 2.0**-10, -2.0**-10, 2.0**-6, np.inf, -np.inf, np.nan]])


@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2", "bfloat16", "float16"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rounding_to_nearest_below_the_normal_range_is_ml_dtypes(fmt, dtype):
    """round_message (the chain kernel's sites: delta compression's changes) and round_entries (the tile
    kernel) round to nearest, ties to even, as ml_dtypes' cast does, down to values far below the smallest
    subnormal (→ ±0, the sign kept)."""
    f = FORMATS[fmt]
    ref_type = np.float16 if fmt == "float16" else getattr(ml_dtypes, fmt)
    with np.errstate(over="ignore"):
        x = _below_normal(np.random.default_rng(5), 3000).astype(dtype)
        want = x.astype(np.float64).astype(ref_type).astype(np.float64).astype(dtype)
    for fn in ("message", "entries"):
        m = x.copy()
        if fn == "message":
            CK.round_message(m, f.man_bits, f.emin, f.max_finite, f.has_inf, False, np.uint64(1), 0)
        else:
            round_entries(m, m.size, 0, f.man_bits, f.emin, f.max_finite, f.has_inf, False, np.uint64(1), 0)
        same = (m == want) & (np.signbit(m) == np.signbit(want)) | np.isnan(m) & np.isnan(want)
        assert same.all(), (fn, x[~same][:5], m[~same][:5], want[~same][:5])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stochastic_rounding_below_the_normal_range_is_the_exact_rule(dtype):
    """Stochastic rounding to e4m3 below its normal range: up to the next multiple of the subnormal spacing
    2**-9 iff u < (|x| − lo)/2**-9, computed exactly with fractions (u the entry's draw of the stream), the
    sign kept; at or above the normal range the same rule with that binade's spacing."""
    f = FORMATS["float8_e4m3fn"]
    x = _below_normal(np.random.default_rng(6), 1500)
    x = x[np.isfinite(x)].astype(dtype)
    u = rng.uniform(9, 4, x.size)
    want = []
    for xi, ui in zip(x.astype(np.float64).tolist(), u.tolist()):
        a = Fraction(abs(xi))
        e = max(a.numerator.bit_length() - a.denominator.bit_length() - (a < Fraction(2) ** (a.numerator.bit_length() - a.denominator.bit_length())), f.emin) if a else f.emin
        q = Fraction(2) ** (e - f.man_bits)  # the spacing at |x|
        lo = (a // q) * q
        r = lo + q if Fraction(ui) < (a - lo) / q else lo
        want.append(math.copysign(float(r), xi))
    want = np.array(want).astype(dtype)
    for fn in ("message", "entries"):
        m = x.copy()
        if fn == "message":
            CK.round_message(m, f.man_bits, f.emin, f.max_finite, f.has_inf, True, np.uint64(9), 4)
        else:
            round_entries(m, m.size, 0, f.man_bits, f.emin, f.max_finite, f.has_inf, True, np.uint64(9), 4)
        same = (m == want) & (np.signbit(m) == np.signbit(want))
        assert same.all(), (fn, x[~same][:5], m[~same][:5], want[~same][:5])
