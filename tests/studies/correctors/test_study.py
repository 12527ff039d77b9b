"""The correctors' defining identities (fbsgd.correctors), checked against exact sums and closed forms."""
import numpy as np
import pytest
from scipy.special import expit

from fbsgd.correctors import (DeltaCompression, SecondOrderDebias, UniformDebias, second_order_message,
                              sigmoid_second_derivative, uniform_debias_h)
from fbsgd import rng
from fbsgd.engine.sweeps import NotCompiledWarning
from fbsgd.metrics import drift_ratio, ewma
from fbsgd.studies.correctors import study as R
from fbsgd.studies.correctors.study import ChainMessageFix, problem
from fbsgd.optimizers import SGD, AddNoise, PassGradient, train
from fbsgd.perturbations import ErrorFeedback, Plan, RandK, Round, TopK, zero_mean_uniform


@pytest.mark.parametrize("C", [TopK(2, "batch"), TopK(1), RandK(3, "batch")])
def test_delta_copy_is_the_sum_of_the_sent_deltas_exactly(C):
    """Integer-valued messages (Top-K keeps them integers; Rand-K scales by n/k = 2): the float64 sums are exact."""
    p = DeltaCompression(C)
    rng = np.random.default_rng(0)
    state = p.init(1)
    total = np.zeros((6, 2))
    for t in range(50):
        x = rng.integers(-50, 50, size=(6, 2)).astype(float)
        sent, copy = p.sent(x, state.key, state.step, state.memory)
        out, state = p(x, state)
        total += sent
        assert np.array_equal(out, copy) and np.array_equal(state.memory, copy)
        assert np.array_equal(copy, total)


def test_delta_with_identity_compressor_is_exact_and_tracks_a_constant_message():
    p = DeltaCompression(TopK(10, "batch"))  # k >= n: the compressor is the identity
    x = np.arange(6.0).reshape(6, 1)
    out, s = p(x, p.init(0))
    assert np.array_equal(out, x)
    q = DeltaCompression(TopK(1, "batch"))  # one entry per step: the copy reaches a constant message in n steps
    s = q.init(0)
    for _ in range(6):
        out, s = q(x, s)
    assert np.array_equal(out, x)


def test_sigma_second_derivative_from_v():
    z = np.linspace(-6, 6, 101)
    h = 1e-4
    fd = (expit(z + h) - 2 * expit(z) + expit(z - h)) / h**2
    assert np.allclose(sigmoid_second_derivative(expit(z)), fd, atol=1e-6)


def test_uniform_h_matches_the_long_sum_and_the_small_a_expansion():
    s = np.linspace(-40, 40, 81)
    for a in (0.1, 0.63, 2.0):
        k = np.arange(5000)
        e = expit(s[:, None] - (2 * k + 1) * a)
        assert np.max(np.abs(uniform_debias_h(s, a) - 2 * a * np.sum(e * (1 - e), axis=1))) < 1e-11
    a = 0.05  # h = σ − (a²/6) σ'' + O(a⁴)
    z = np.linspace(-5, 5, 21)
    assert np.allclose(uniform_debias_h(z, a), second_order_message(expit(z), a * a / 3), atol=1e-6)


def _mc(message, a, z, n, seed):
    d = np.random.default_rng(seed).uniform(-a, a, size=(n, 1))
    m = message(expit(z[None, :] + d))
    return m.mean(axis=0), m.std(axis=0, ddof=1) / np.sqrt(n)


@pytest.mark.parametrize("a", [0.316, 0.632])
def test_exact_debias_is_unbiased_and_the_plain_message_is_not(a):
    """|mean − σ(z)| <= 4.5 standard errors (a 4.5-sigma band from the sample variance) at every z for
    the exact correction; the uncorrected message fails the same test."""
    z = np.linspace(-6, 6, 13)
    mean, se = _mc(lambda v: UniformDebias(a).apply(v, 0, 0), a, z, 200_000, 1)
    assert np.all(np.abs(mean - expit(z)) <= 4.5 * se)
    mean, se = _mc(lambda v: v, a, z, 200_000, 1)
    assert not np.all(np.abs(mean - expit(z)) <= 4.5 * se)


def test_second_order_removes_most_of_the_bias():
    a = 0.632
    z = np.linspace(-4, 4, 9)
    d = np.polynomial.legendre.leggauss(64)
    avg = lambda g: sum(w / 2 * g(expit(z + a * x)) for x, w in zip(*d))
    plain = np.abs(avg(lambda v: v) - expit(z)).max()
    second = np.abs(avg(lambda v: second_order_message(v, a * a / 3)) - expit(z)).max()
    exact = np.abs(avg(lambda v: UniformDebias(a).apply(v, 0, 0)) - expit(z)).max()
    assert second < 0.1 * plain and exact < 1e-10


def test_for_noise_reads_the_law():
    noise = zero_mean_uniform(2.0, 10)
    assert SecondOrderDebias.for_noise(noise).second_moment == pytest.approx(noise.high**2 / 3)
    assert UniformDebias.for_noise(noise).a == noise.high
    with pytest.raises(ValueError):
        UniformDebias.for_noise(Round("bfloat16"))


def _chain(plan):
    c = R.chain_config(plan, 0.1, 0, 20)
    return c.net, c.data


@pytest.mark.parametrize("plan", [Plan(), Plan(forward={1: TopK(200, "batch")}), Plan(forward={1: RandK(300, "batch")}),
                                  Plan(forward={1: Round("float8_e4m3fn")}), Plan(backward={2: TopK(200, "batch")}),
                                  Plan(backward={2: Round("float8_e4m3fn")}), Plan(backward={2: DeltaCompression(TopK(200, "batch"))}),
                                  Plan(forward={1: ErrorFeedback(RandK(300, "batch"))})])
def test_chain_gradient_equals_section7s_pass(plan):
    """The chain Linear → LogisticLoss carries s = hᵀw and ∂ℓ/∂s = −y σ(−y s̃) where Section 7's
    (LogisticScore → Softplus) carries z = −y hᵀw and σ(z̃): same magnitudes, signs by y, so
    Top-K / Rand-K (same samples), rounding to nearest and the memories give the same gradient."""
    pr = problem()
    net, data = _chain(plan)
    w = 0.3 * np.random.default_rng(0).standard_normal(pr.d)
    s1, s2 = plan.init(3), plan.init(3)
    for _ in range(3):  # a few steps: the memories and the streams move alike
        g1, s1 = PassGradient(pr.net, plan)(w, pr.data, s1)
        g2, s2 = PassGradient(net, plan)(w, data, s2)
        np.testing.assert_allclose(g2, g1, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("fix", [SecondOrderDebias(0.3), UniformDebias(0.6)])
def test_chain_message_fix_is_section7s_fix_with_the_labels_sign(fix):
    """On the chain's message u = −y σ(z̃) (z̃ = −y s̃) it gives −y·fix(σ(z̃)); on (0, 1) it is fix itself."""
    pr = problem()
    s = np.random.default_rng(1).normal(0, 3, pr.M)
    y = pr.labels
    z = -y * s
    u = -y * expit(z)
    np.testing.assert_allclose(ChainMessageFix(fix).apply(u, 0, 0), -y * fix.apply(expit(z), 0, 0), rtol=1e-13, atol=1e-15)
    v = expit(z)
    np.testing.assert_array_equal(ChainMessageFix(fix).apply(v, 0, 0), fix.apply(v, 0, 0))


def _direct(plan, gamma, seed, T, every):
    """The readable reference: train(PassGradient(net, plan)) with ρ∇R, AddNoise and the exact ‖∇f‖ of the problem."""
    pr = problem()
    net, data = _chain(plan)
    opt = AddNoise(SGD(gamma), R.NOISE_STD, rng.derive_key("fbsgd.chain.xi", seed))
    with np.errstate(all="ignore"):
        run = train(PassGradient(net, plan), np.zeros(pr.d), opt, T, data, seed=seed,
                    regularizer_grad=lambda w: pr.rho * pr.regularizer.gradient(w), record_every=every,
                    metrics={"g": lambda w: float(np.linalg.norm(pr.gradient(w)))})
    return run.t[run.t < T], run["g"][run.t < T]


SMALL = [dict(part="compression", place="backward", perturbation="Top-K", corrector="error feedback",
              plan=Plan(backward={2: ErrorFeedback(TopK(200, "batch"))})),
         *[s for s in R.debias_settings([2.0], 10) if s["corrector"] == "exact"], R.baseline_setting()]


def test_gamma_scan_row_equals_a_direct_train_run(tmp_path):
    T, gammas = 60, [0.3, 1.0]
    with pytest.warns(NotCompiledWarning, match="ChainMessageFix"):  # one notice for the reference path
        scan = R.gamma_scan(SMALL, gammas, [2], T, n_jobs=1, cache_dir=tmp_path, progress=False)
    assert set(scan.path) == {"compiled", "reference"}  # the exact de-biasing has no compiled form
    for r in scan.itertuples():
        s = next(x for x in SMALL if x["corrector"] == r.corrector)
        t, g = _direct(s["plan"], r.gamma, 2, T, R.METRIC_EVERY)
        trace = ewma(g, R.EWMA, R.METRIC_EVERY)
        assert r.stable_grad_norm == pytest.approx(np.mean(trace[t >= T - T // 2]), rel=1e-9)
        assert r.drift == pytest.approx(drift_ratio(trace), rel=1e-9) and not r.diverged


def test_rate_scan_row_equals_a_direct_train_run(tmp_path):
    rates = R.rate_scan(SMALL[:1] + SMALL[2:], [40, 90], [1], 3.0, n_jobs=1, cache_dir=tmp_path, progress=False)
    for r in rates.itertuples():
        s = next(x for x in SMALL if x["corrector"] == r.corrector)
        assert r.gamma == pytest.approx(3.0 / np.sqrt(r.T), rel=1e-15)
        k = max(1, min(int(0.25 / r.gamma), r.T // 2))
        t, g = _direct(s["plan"], r.gamma, 1, r.T, k)
        assert list(t) == list(range(0, r.T, k))
        assert r.mean_sq_grad_norm == pytest.approx(np.mean(g**2), rel=1e-9)


def test_scans_have_the_columns_the_verdicts_read(tmp_path):
    from fbsgd.studies.correctors import verdicts as CA

    settings = [s for s in R.compression_settings(200, "float8_e4m3fn") if s["perturbation"] == "Top-K"
                and s["place"] == "backward"] + [R.baseline_setting()]
    scan = R.gamma_scan(settings, [0.1, 0.3, 1.0], [0], 40, n_jobs=1, cache_dir=tmp_path, progress=False)
    rates = R.rate_scan(settings, [40, 80], [0], 3.0, n_jobs=1, cache_dir=tmp_path, progress=False)
    assert {"part", "place", "perturbation", "corrector", "gamma", "seed", "T", "stable_grad_norm", "drift",
            "diverged", "path"} <= set(scan.columns)
    assert {"part", "place", "perturbation", "corrector", "T", "seed", "gamma", "mean_sq_grad_norm", "diverged",
            "path"} <= set(rates.columns)
    table = CA.summary(CA.stable_slopes(scan), rates, {})
    assert len(table) == len(settings) and table.effect.notna().all()


def test_figure9_radii_plain_panel_unstable_momentum_panel_stable():
    from fbsgd.studies.correctors.study import figure9_radii
    r = figure9_radii().set_index("setting")
    # plain: I − γAᵀA with eigenvalues 10 and 490 of AᵀA at γ = 0.1: factors 0 and −48
    assert r.loc["plain", "gamma"] == 0.1 and r.loc["plain", "radius"] == pytest.approx(48.0, rel=1e-9)
    assert not r.loc["plain", "stable"] and r.loc["momentum", "stable"]
    assert r.loc["momentum", "radius"] < 1
