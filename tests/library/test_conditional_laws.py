"""The conditional law of a perturbation given its input (fbsgd.laws, ``p.conditional_law(x)``),
against independent facts: ml_dtypes' conversions and the format's bit patterns, enumeration of
subsets and flip patterns, closed forms and numerical integration, and large Monte Carlo samples
of the kinds' own ``apply``."""
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit

from fbsgd import laws, lowprec, rng
from fbsgd import perturbations as P

FORMATS = ["bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"]
ML = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16, "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
      "float8_e5m2": ml_dtypes.float8_e5m2}
UINT = {1: np.uint8, 2: np.uint16}


def _inputs(fmt, n=600, seed=0):
    """Signed values inside the format's finite range, from below its smallest subnormal to its largest value."""
    f = lowprec.format_of(fmt)
    g = np.random.default_rng(seed)
    mags = np.exp(g.uniform(math.log(f.smallest_subnormal / 4), math.log(f.max_finite), n))
    return (mags * g.choice([-1.0, 1.0], n)).reshape(-1, 2)


def _samples(p, x, draws, seed=7):
    """``draws`` calls of apply with fresh keys: shape x.shape + (draws,)."""
    out = np.empty(x.shape + (draws,))
    for j in range(draws):
        out[..., j] = np.asarray(p.apply(x.copy(), rng.derive_key("test.samples", seed, j), 0), dtype=float).reshape(x.shape)
    return out


# -------------------------------------------------------------------------------------------------
# rounding: one point (nearest) and two points (stochastic), for every format
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_nearest_is_one_point_the_ml_dtypes_conversion(fmt):
    x = _inputs(fmt)
    law = P.Round(fmt).conditional_law(x)
    assert isinstance(law, laws.FiniteLaw) and law.points.shape == x.shape + (1,) and law.exact
    expected = x.astype(ML[fmt]).astype(np.float64)
    np.testing.assert_array_equal(law.mean(), expected)
    np.testing.assert_array_equal(law.bias(), expected - x)
    np.testing.assert_array_equal(law.second_moment(), (expected - x) ** 2)
    np.testing.assert_array_equal(law.variance(), 0.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stochastic_rounding_picks_the_two_neighbours_with_exact_probabilities(fmt):
    x = _inputs(fmt)
    law = P.Round(fmt, "stochastic").conditional_law(x)
    lo, hi = law.points[..., 0], law.points[..., 1]
    p_hi = law.probabilities[..., 1]
    ml, ui = ML[fmt], UINT[np.dtype(ML[fmt]).itemsize]
    for a, b, v, q in zip(lo.ravel(), hi.ravel(), x.ravel(), p_hi.ravel()):
        # both are format values (ml_dtypes keeps them), |lo| <= |x| <= |hi|, and nothing lies between them
        assert float(np.array(a).astype(ml)) == a and float(np.array(b).astype(ml)) == b
        assert abs(a) <= abs(v) <= abs(b) and np.sign(a) in (0.0, np.sign(v)) and np.sign(b) == np.sign(v)
        bits_a = int(np.array(abs(a)).astype(ml).view(ui))
        bits_b = int(np.array(abs(b)).astype(ml).view(ui))
        assert bits_b - bits_a == (0 if a == b else 1)
        # the probability of hi: (|x| − |lo|)/(|hi| − |lo|) in exact rational arithmetic
        want = Fraction(0) if a == b else (Fraction(abs(v)) - Fraction(abs(a))) / (Fraction(abs(b)) - Fraction(abs(a)))
        assert Fraction(q) == want
    # E[fl(x) | x] = x (unbiased), up to the rounding of lo + p·(hi − lo)
    np.testing.assert_allclose(law.bias(), 0.0, atol=1e-15 * np.abs(x).max())


@pytest.mark.parametrize("fmt", ["bfloat16", "float8_e4m3fn"])
def test_stochastic_rounding_law_matches_apply_frequencies(fmt):
    x = _inputs(fmt, n=40, seed=3)
    p = P.Round(fmt, "stochastic")
    law = p.conditional_law(x)
    s = _samples(p, x, 4000)
    hi = law.points[..., 1:2]
    freq = np.mean(s == hi, axis=-1)
    q = law.probabilities[..., 1]
    assert np.all((s == law.points[..., :1]) | (s == hi))  # every draw is one of the two points
    assert np.all(np.abs(freq - q) <= 5 * np.sqrt(q * (1 - q) / 4000) + 1e-12)


def test_stochastic_rounding_above_the_range_is_nearest():
    f = lowprec.format_of("float8_e4m3fn")
    x = np.array([f.max_finite * 1.5, -f.max_finite * 3, np.inf])
    law = P.Round("float8_e4m3fn", "stochastic").conditional_law(x)
    assert np.all(np.isnan(law.mean()))  # e4m3fn has no infinity: overflow is NaN, as ml_dtypes
    assert np.all(np.isnan(x.astype(ml_dtypes.float8_e4m3fn).astype(float)))


# -------------------------------------------------------------------------------------------------
# compressors: Top-K (deterministic) and Rand-K (over the random subset)
# -------------------------------------------------------------------------------------------------


def test_topk_is_one_point_the_k_largest():
    x = np.array([[0.3, -2.0, 1.0, 0.5], [4.0, 0.1, -0.2, 4.0]])
    law = P.TopK(2).conditional_law(x)
    np.testing.assert_array_equal(law.mean(), [[0.0, -2.0, 1.0, 0.0], [4.0, 0.0, 0.0, 4.0]])
    assert not law.elementwise and law.independent  # a point: independent given x
    col = P.TopK(1, scope="batch").conditional_law(x)
    np.testing.assert_array_equal(col.mean(), [[0.0, -2.0, 1.0, 0.0], [4.0, 0.0, 0.0, 4.0]])  # per column


@pytest.mark.parametrize("k,n", [(1, 4), (2, 5), (3, 6)])
def test_randk_marginals_match_enumeration_of_subsets(k, n):
    x = np.arange(1.0, n + 1.0)[None, :] * np.array([[1.0], [-0.5]])
    law = P.RandK(k).conditional_law(x)
    subsets = list(itertools.combinations(range(n), k))
    kept = np.array([[i in s for i in range(n)] for s in subsets], dtype=float)  # equally likely subsets
    mean = kept.mean(axis=0) * (n / k) * x
    second = kept.mean(axis=0) * ((n / k - 1) * x) ** 2 + (1 - kept.mean(axis=0)) * x**2
    np.testing.assert_allclose(law.mean(), mean, rtol=1e-14)
    np.testing.assert_allclose(law.mean(), x, rtol=1e-14)  # unbiased
    np.testing.assert_allclose(law.second_moment(), second, rtol=1e-14)
    assert not law.independent and not law.elementwise


def test_randk_law_matches_apply():
    x = np.array([[1.0, -2.0, 3.0, 0.5, 4.0]])
    p = P.RandK(2)
    law = p.conditional_law(x)
    s = _samples(p, x, 20_000)
    freq = np.mean(s != 0, axis=-1)
    np.testing.assert_allclose(freq, 0.4, atol=5 * math.sqrt(0.24 / 20_000))
    assert np.all((s == 0) | (s == law.points[..., 1:2]))


# -------------------------------------------------------------------------------------------------
# bit flips: every pattern of a narrow field exactly, a wide field to first order
# -------------------------------------------------------------------------------------------------


def _flip(v, mask):
    return float(np.array([v], dtype=np.float32).view(np.uint32)[0:1].__xor__(np.uint32(mask)).view(np.float32)[0])


def test_sign_flips_are_two_points():
    x = np.array([1.5, -0.25, 3.0])
    law = P.BitFlip(0.3, "sign").conditional_law(x)
    assert law.exact and law.points.shape == (3, 2)
    np.testing.assert_allclose(law.mean(), 0.7 * x + 0.3 * (-x), rtol=1e-15)
    np.testing.assert_allclose(law.second_moment(), 0.3 * (2 * x) ** 2, rtol=1e-15)


def test_exponent_flips_enumerate_all_256_patterns():
    x = np.array([0.75, -3.0, 1e-3])
    r = 0.05
    law = P.BitFlip(r, "exponent").conditional_law(x)
    assert law.exact and law.points.shape == (3, 256)
    for i, v in enumerate(x):
        finite = 0.0
        for m in range(256):
            k = bin(m).count("1")
            value, prob = (v if m == 0 else _flip(v, m << 23)), r**k * (1 - r) ** (8 - k)
            j = int(np.flatnonzero((law.points[i] == value) | (np.isnan(law.points[i]) & np.isnan(value)))[0])
            assert law.probabilities[i, j] == pytest.approx(prob, rel=1e-12) or np.isnan(value)
            finite += prob * np.isfinite(value)
        # the all-ones exponent gives inf or NaN: the mean is NaN, the probability of a finite value is exact
        assert np.isnan(law.mean()[i])
        assert law.expect(lambda v: np.isfinite(v).astype(float))[i] == pytest.approx(finite, rel=1e-12)


def test_exponent_flip_law_matches_apply():
    x = np.array([[0.75], [-3.0], [0.1]])
    p = P.BitFlip(0.02, "exponent")
    law = p.conditional_law(x)
    s = _samples(p, x, 3000)
    member = np.zeros(s.shape, dtype=bool)
    for k in range(256):
        pt = law.points[..., k:k + 1]
        member |= (s == pt) | (np.isnan(s) & np.isnan(pt))
    assert member.all()
    # the probability of no flip: (1 − r)^8
    np.testing.assert_allclose(np.mean(s == x[..., None], axis=-1), 0.98**8, atol=5 * math.sqrt(0.98**8 * (1 - 0.98**8) / 3000))


def test_mantissa_flips_to_first_order_say_so():
    r, n = 1e-3, 23
    x = np.array([1.25, -7.0])
    law = P.BitFlip(r, "mantissa").conditional_law(x)
    assert not law.exact and "first order" in law.how
    assert law.neglected_mass == pytest.approx(1 - (1 - r) ** n - n * r * (1 - r) ** (n - 1), rel=1e-9)
    assert law.neglected_mass == pytest.approx(math.comb(n, 2) * r * r, rel=0.05)
    # E[δ | x] to first order: Σ_b r(1 − r)^(n−1) (flip_b(x) − x)
    want = [sum(r * (1 - r) ** (n - 1) * (_flip(v, 1 << b) - v) for b in range(n)) for v in x]
    np.testing.assert_allclose(law.bias(), want, rtol=1e-12)


def test_bit_flips_of_a_float64_input_keep_unhit_entries_exact():
    x = np.array([0.1])  # not a float32 value
    law = P.BitFlip(0.5, "sign").conditional_law(x)
    assert law.points[0, 0] == 0.1 and law.points[0, 1] == -float(np.float32(0.1))


# -------------------------------------------------------------------------------------------------
# additive kinds: closed forms
# -------------------------------------------------------------------------------------------------


def test_uniform_law_closed_forms_and_quadrature():
    x = np.linspace(-4, 4, 9)
    lo, hi = -0.3, 1.1
    law = P.UniformNoise(lo, hi).conditional_law(x)
    np.testing.assert_array_equal(law.mean(), x + 0.5 * (lo + hi))
    assert law.second_moment()[0] == pytest.approx((lo * lo + lo * hi + hi * hi) / 3, rel=1e-15)
    assert law.fourth_moment()[0] == pytest.approx((hi**5 - lo**5) / (5 * (hi - lo)), rel=1e-15)
    sbar = (np.logaddexp(0, x + hi) - np.logaddexp(0, x + lo)) / (hi - lo)  # E σ(x + δ) exactly
    np.testing.assert_allclose(law.expect(expit), sbar, rtol=1e-14)


def test_gaussian_law_against_numerical_integration():
    x = np.array([-1.0, 0.5])
    g = P.GaussianNoise(0.7, mean=0.2)
    law = g.conditional_law(x)
    assert law.second_moment()[0] == pytest.approx(0.2**2 + 0.7**2)
    for i, v in enumerate(x):
        want, _ = integrate.quad(lambda d: expit(v + d) * math.exp(-0.5 * ((d - 0.2) / 0.7) ** 2) / (0.7 * math.sqrt(2 * math.pi)),
                                 -12, 12, epsabs=1e-14)
        assert law.expect(expit)[i] == pytest.approx(want, rel=1e-12)


def test_two_point_constant_identity():
    x = np.array([1.0, -2.0])
    t = P.TwoPointNoise(0.5).conditional_law(x)
    np.testing.assert_array_equal(t.mean(), x)
    np.testing.assert_array_equal(t.second_moment(), 0.25)
    c = P.Constant(0.25).conditional_law(x)
    np.testing.assert_array_equal(c.bias(), 0.25)
    np.testing.assert_array_equal(P.Identity().conditional_law(x).second_moment(), 0.0)


# -------------------------------------------------------------------------------------------------
# schedules: the duty cycle is reported separately
# -------------------------------------------------------------------------------------------------


def test_wrapped_kinds_report_their_duty_cycle():
    x = np.array([0.3, 1.7])
    inner = P.Round("float8_e5m2")
    law = P.every(4, inner, offset=3).conditional_law(x)
    np.testing.assert_array_equal(law.mean(), inner.conditional_law(x).mean())  # the law where it acts
    assert law.duty_cycle() == 0.25 and inner.conditional_law(x).duty_cycle() == 1.0
    b = P.budget(10, 1000, P.UniformNoise(0.0, 1.0)).conditional_law(x)
    assert b.duty_cycle(horizon=1000) == 0.01 and b.duty_cycle(horizon=2000) == 0.005
    with pytest.raises(ValueError, match="horizon"):
        b.duty_cycle()


# -------------------------------------------------------------------------------------------------
# any other kind: Monte Carlo from its own apply, with standard errors
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddUniform02(P.Perturbation):
    """A user's kind: x + U(0, 2), known to fbsgd only through its apply."""

    def apply(self, x, key, step):
        return x + rng.uniform(key, step, np.shape(x), 0.0, 2.0)


def test_monte_carlo_default_estimates_with_standard_errors():
    x = np.array([[0.0], [5.0]])
    law = AddUniform02().conditional_law(x, draws=4000, seed=1)
    assert isinstance(law, laws.MonteCarloLaw) and not law.exact and law.draws == 4000
    se = law.mean_se()
    np.testing.assert_allclose(se, math.sqrt(1 / 3) / math.sqrt(4000), rtol=0.1)  # sd of U(0, 2) is 1/√3
    assert np.all(np.abs(law.bias() - 1.0) < 5 * se)
    assert np.all(np.abs(law.second_moment() - 4 / 3) < 5 * law.second_moment_se())
    again = AddUniform02().conditional_law(x, draws=4000, seed=1)
    np.testing.assert_array_equal(again.samples, law.samples)  # common random numbers


def test_monte_carlo_stops_early_for_a_deterministic_kind():
    @dataclass(frozen=True)
    class Halve(P.Perturbation):
        def apply(self, x, key, step):
            return 0.5 * np.asarray(x)

    x = np.array([1.0, -3.0])
    law = Halve().conditional_law(x, draws=1000)
    assert law.draws == laws.DETERMINISTIC_AFTER and "deterministic" in law.how
    np.testing.assert_array_equal(law.mean(), 0.5 * x)
    assert laws.monte_carlo(Halve(), x, 50, stop_if_deterministic=0).draws == 50


def test_norm_moments_independent_formula_and_joint_draws():
    x = np.array([0.3, 1.7, -2.2, 5.1])
    p = P.Round("float8_e4m3fn", "stochastic")
    exact = p.conditional_law(x).norm_moments()
    mc = laws.monte_carlo(p, x, 20_000, seed=2).norm_moments()
    np.testing.assert_allclose(mc[1:], exact[1:], rtol=0.05)
    assert exact[0] == pytest.approx(0.0, abs=1e-25)
    with pytest.raises(NotImplementedError, match="not independent"):
        P.RandK(2).conditional_law(x).norm_moments()


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="x must be a non-empty array of real numbers"):
        P.Round("bfloat16").conditional_law(np.array([]))
    with pytest.raises(ValueError, match="x must be a non-empty array of real numbers"):
        P.UniformNoise(0, 1).conditional_law(np.array(["a"]))
    with pytest.raises(ValueError, match="draws must be an integer >= 2"):
        AddUniform02().conditional_law(np.ones(2), draws=1)
