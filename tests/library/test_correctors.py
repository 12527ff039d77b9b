"""fbsgd.correctors: the correctors' defining identities, checked against exact sums, closed forms and
quadrature, and their compiled forms (numba element functions) against the readable formulas."""
import math

import numpy as np
import pytest
from scipy.special import expit, logit

from fbsgd import perturbations as P
from fbsgd.correctors import (DeltaCompression, SecondOrderDebias, UniformDebias, second_order_message,
                              sigmoid_second_derivative, uniform_debias_h, uniform_debias_numbers)
from fbsgd.perturbations import RandK, Round, TopK, zero_mean_uniform


# -- delta compression ----------------------------------------------------------------------------

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


# -- the de-biasing formulas ----------------------------------------------------------------------

def test_sigma_second_derivative_from_v():
    z = np.linspace(-6, 6, 101)
    h = 1e-4
    fd = (expit(z + h) - 2 * expit(z) + expit(z - h)) / h**2
    assert np.allclose(sigmoid_second_derivative(expit(z)), fd, atol=1e-6)


def _long_sum(s, a):
    """2a Σ_{k≥0} σ'(s − (2k + 1)a) term by term (math.fsum), far past where the terms vanish."""
    k = np.arange(int(80 / a) + 20)
    out = []
    for si in np.atleast_1d(s):
        x = si - (2 * k + 1) * a
        e = np.exp(-np.abs(x))
        out.append(2 * a * math.fsum((e / (1 + e) ** 2).tolist()))
    return np.array(out)


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


def test_second_order_removes_most_of_the_bias_and_the_exact_one_all():
    a = 0.632
    z = np.linspace(-4, 4, 9)
    d = np.polynomial.legendre.leggauss(64)
    avg = lambda g: sum(w / 2 * g(expit(z + a * x)) for x, w in zip(*d))
    plain = np.abs(avg(lambda v: v) - expit(z)).max()
    second = np.abs(avg(lambda v: SecondOrderDebias(a * a / 3).apply(v, 0, 0)) - expit(z)).max()
    exact = np.abs(avg(lambda v: UniformDebias(a).apply(v, 0, 0)) - expit(z)).max()
    assert second < 0.1 * plain and exact < 1e-10


def test_for_noise_reads_the_law():
    noise = zero_mean_uniform(2.0, 10)
    assert SecondOrderDebias.for_noise(noise).second_moment == pytest.approx(noise.high**2 / 3)
    assert UniformDebias.for_noise(noise).a == noise.high
    with pytest.raises(ValueError):
        UniformDebias.for_noise(Round("bfloat16"))
    with pytest.raises(ValueError, match="a > 0"):
        UniformDebias(0.0)


# -- the compiled forms ---------------------------------------------------------------------------

def _messages():
    """Messages σ(z̃) over the whole range (z̃ from −40 to 40 and uniform draws in (0, 1)), the ends 0, ½ and 1,
    and entries outside [0, 1] and NaN (clipped / passed on as apply does)."""
    v = np.concatenate([expit(np.linspace(-40, 40, 4001)), np.random.default_rng(3).uniform(0, 1, 2000),
                        [0.0, 0.5, 1.0, -0.25, 1.5, np.nan]])
    return v.reshape(-1, 1)


@pytest.mark.parametrize("a", [0.01, 0.1, 0.316, 0.632, 2.0, 10.0])
def test_uniform_debias_compiled_is_h_of_logit_to_the_long_sum(a):
    """The compiled h(logit v) against the long sum of (D) at s = logit v (to 2e-14, far inside the 2e-12
    of the readable uniform_debias_h, which it also matches); v ≤ 0 → 0, v ≥ 1 → 1, NaN → NaN."""
    v = _messages()
    got = UniformDebias(a).apply(v, key=5, step=3)
    assert got.shape == v.shape and got.dtype == np.float64
    inside = (v > 0) & (v < 1)
    assert np.max(np.abs(got[inside] - _long_sum(logit(v[inside]), a))) < 2e-14
    with np.errstate(divide="ignore"):
        ref = uniform_debias_h(logit(np.clip(v, 0, 1)), a)
    ok = ~np.isnan(v)
    assert np.max(np.abs(got[ok] - ref[ok])) < 2e-12
    assert set(got[v <= 0.0].tolist()) == {0.0} and set(got[v >= 1.0].tolist()) == {1.0}
    assert np.isnan(got[np.isnan(v)]).all()


def test_uniform_debias_numbers_cover_the_series_and_the_periodic_part():
    a = 0.632
    n = uniform_debias_numbers(a)
    assert n[:3] == (a, math.exp(-a), math.exp(-2 * a))
    H = int(n[4])
    c = n[5:5 + H]
    assert c[0] == pytest.approx(1 / (1 - math.exp(-2 * a)), rel=1e-15) and c[1] == pytest.approx(-2 / (1 - math.exp(-4 * a)))
    Pn = int(n[5 + H])
    q = math.pi**2 / a
    assert Pn >= 1 and n[6 + H] == pytest.approx(2 * q / math.sinh(q), rel=1e-14)
    assert int(uniform_debias_numbers(0.1)[5 + int(uniform_debias_numbers(0.1)[4])]) == 0  # π²/a > 40: no periodic part
    with pytest.raises(ValueError, match="a > 0"):
        uniform_debias_numbers(-1.0)


@pytest.mark.parametrize("m2", [0.0, 0.01, 0.1333, 2.0])
def test_second_order_compiled_is_the_readable_formula(m2):
    """float64: bit for bit second_order_message (the same operations in the same order); float32 messages
    give float32, the formula evaluated in float64 and rounded once."""
    v = _messages()
    got = SecondOrderDebias(m2).apply(v, 0, 0)
    np.testing.assert_array_equal(got, second_order_message(v, m2))
    v32 = v.astype(np.float32)
    got32 = SecondOrderDebias(m2).apply(v32, 0, 0)
    assert got32.dtype == np.float32
    np.testing.assert_array_equal(got32, second_order_message(v32.astype(np.float64), m2).astype(np.float32))


@pytest.mark.parametrize("p", [SecondOrderDebias(0.1333), SecondOrderDebias(3.0), UniformDebias(0.632),
                               UniformDebias(0.05), UniformDebias(5.0)], ids=repr)
def test_debias_kinds_compile_and_pass_check_compiled(p):
    """compiled() is an element operation (the engine runs it in its kernel), and it computes the kind's own
    apply on the probe inputs and on messages in (0, 1), in float64 and float32."""
    op = p.compiled()
    assert isinstance(op, P.ElementOp) and op.kind == "element"
    P.check_compiled(p)
    P.check_compiled(p, _messages()[:-1])
