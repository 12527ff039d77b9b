"""The correctors' defining identities (fbsgd.correctors), checked against exact sums and closed forms."""
import numpy as np
import pytest
from scipy.special import expit

from fbsgd.correctors import (DeltaCompression, SecondOrderDebias, UniformDebias, second_order_message,
                              sigmoid_second_derivative, uniform_debias_h)
from fbsgd.studies.correctors.study import LogisticChainGradient, problem
from fbsgd.optimizers import PassGradient
from fbsgd.perturbations import Plan, RandK, Round, TopK, zero_mean_uniform


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


def test_lean_chain_gradient_equals_the_passes():
    pr = problem()
    w = np.random.default_rng(0).standard_normal(pr.d)
    noise = zero_mean_uniform(2.0, pr.d)
    for plan in (Plan(), Plan(forward={1: noise}, backward={2: UniformDebias.for_noise(noise)}),
                 Plan(backward={2: DeltaCompression(TopK(200, "batch"))})):
        g1, _ = LogisticChainGradient(plan)(w, pr.data, plan.init(3))
        g2, _ = PassGradient(pr.net, plan)(w, pr.data, plan.init(3))
        assert np.allclose(g1, g2, rtol=1e-12, atol=1e-15)


def test_figure9_radii_plain_panel_unstable_momentum_panel_stable():
    from fbsgd.studies.correctors.study import figure9_radii
    r = figure9_radii().set_index("setting")
    # plain: I − γAᵀA with eigenvalues 10 and 490 of AᵀA at γ = 0.1: factors 0 and −48
    assert r.loc["plain", "gamma"] == 0.1 and r.loc["plain", "radius"] == pytest.approx(48.0, rel=1e-9)
    assert not r.loc["plain", "stable"] and r.loc["momentum", "stable"]
    assert r.loc["momentum", "radius"] < 1
