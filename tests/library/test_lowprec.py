"""Low-precision rounding against ml_dtypes, stochastic rounding statistics, bit flips."""
import math

import ml_dtypes
import numpy as np
import pytest
from numba import njit

from fbsgd import lowprec, rng
from fbsgd.lowprec import FIELDS, FORMATS, flip_bits, flip_bits_inplace, format_of, round_array, round_scalar

NAMES = ["bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"]
# numpy's own float16 is the IEEE binary16 reference (ml_dtypes has no float16 type)
REF_TYPE = {
    "bfloat16": ml_dtypes.bfloat16,
    "float16": np.float16,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
    "float32": np.float32,
}
BITS = {"bfloat16": 16, "float16": 16, "float8_e4m3fn": 8, "float8_e5m2": 8}


def ref_round(x, name):
    """ml_dtypes' (numpy's for float16/float32) round-to-nearest, back in x's dtype."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x).astype(REF_TYPE[name]).astype(np.asarray(x).dtype)


def all_values(name):
    """Every finite non-negative value of the format, sorted (float64), from ml_dtypes' bit patterns."""
    nb = BITS[name]
    pats = np.arange(2 ** (nb - 1), dtype=np.uint16 if nb == 16 else np.uint8)
    with np.errstate(invalid="ignore"):
        v = pats.view(REF_TYPE[name]).astype(np.float64)
    return np.sort(v[np.isfinite(v)])


def assert_same(got, ref):
    assert got.dtype == ref.dtype and got.shape == ref.shape
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(np.signbit(got[~nan]), np.signbit(ref[~nan]))  # sign of zero
    ui = np.uint32 if got.dtype == np.float32 else np.uint64
    assert np.array_equal(got[~nan].view(ui), ref[~nan].view(ui))  # bit identical


def nudge32(v, k_max=2):
    """float32 values v and v moved by 1..k_max float32 ulps either way."""
    with np.errstate(over="ignore"):
        v = np.asarray(v, np.float32)
    out = [v]
    up, down = v.copy(), v.copy()
    for _ in range(k_max):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        out += [up, down]
    return np.concatenate(out)


def structured_inputs(name):
    """Format values, midpoints (ties) and the overflow boundary, each nudged by float32 ulps, both signs."""
    f = FORMATS[name]
    v = all_values(name)
    top = 2.0 ** math.floor(math.log2(f.max_finite))
    half_ulp_top = 0.5 * top * f.eps
    special = [
        0.0, f.smallest_subnormal / 2, f.smallest_subnormal, 1.5 * f.smallest_subnormal,
        f.smallest_normal, f.max_finite, f.max_finite + half_ulp_top,  # the exact overflow tie
        f.max_finite + 2 * half_ulp_top, 2 * f.max_finite, 1e30, 3e38, 2.0**-149, 2.0**-126,
    ]
    base = np.concatenate([v, (v[1:] + v[:-1]) / 2, special])  # midpoints are exact in float32
    base = nudge32(base)
    # float32 subnormals and values below half the target's smallest subnormal
    g = np.random.default_rng(1)
    sub32 = g.integers(0, 2**23, 20_000, dtype=np.uint32).view(np.float32)
    tiny = (g.random(20_000) * f.smallest_subnormal).astype(np.float32)
    x = np.concatenate([base, sub32, tiny]).astype(np.float32)
    x = np.concatenate([x, -x, np.float32([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0])])
    return x


RANDOM32 = np.random.default_rng(0).integers(0, 2**32, 10**6, dtype=np.uint32).view(np.float32)


# ----------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES + ["float32"])
def test_format_table_matches_ml_dtypes(name):
    f = format_of(name)
    fi = ml_dtypes.finfo(REF_TYPE[name])
    assert f.name == name and f.man_bits == fi.nmant and f.exp_bits == fi.nexp
    assert f.max_finite == float(fi.max)
    assert f.smallest_normal == float(fi.smallest_normal)
    assert f.smallest_subnormal == float(fi.smallest_subnormal)
    assert f.eps == float(fi.eps) and f.unit_roundoff == float(fi.eps) / 2
    assert f.emin == fi.minexp == 1 - f.bias
    with np.errstate(over="ignore", invalid="ignore"):
        inf_kept = np.isinf(np.float32([np.inf]).astype(REF_TYPE[name]).astype(np.float32))[0]
    assert f.has_inf == inf_kept
    assert format_of(f) is f
    assert len({g.code for g in FORMATS.values()}) == len(FORMATS)


def test_documented_values():
    assert FORMATS["float8_e4m3fn"].max_finite == 448 and not FORMATS["float8_e4m3fn"].has_inf
    assert FORMATS["float8_e5m2"].max_finite == 57344 and FORMATS["float8_e5m2"].has_inf
    assert FORMATS["float16"].max_finite == 65504
    assert FORMATS["bfloat16"].max_finite == pytest.approx(3.3895e38, rel=1e-4)


# ----------------------------------------------------------------------------
# Round to nearest, bit for bit against ml_dtypes
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_nearest_matches_ml_dtypes_float32(name):
    x = np.concatenate([RANDOM32, structured_inputs(name)])
    assert x.size >= 10**6
    got = round_array(x, name)
    assert_same(got, ref_round(x, name))
    # float64 inputs that are exactly float32 values: same values, float64 result
    with np.errstate(invalid="ignore"):  # float32 signalling NaNs among the random patterns
        x64, ref64 = x.astype(np.float64), ref_round(x, name).astype(np.float64)
    got64 = round_array(x64, name)
    assert got64.dtype == np.float64
    assert_same(got64, ref64)


@pytest.mark.parametrize("name", NAMES + ["float32"])
def test_nearest_matches_ml_dtypes_float64(name):
    """Arbitrary float64 (random patterns incl. float64 subnormals, and a wide log-uniform range): direct rounding."""
    g = np.random.default_rng(2)
    pats = g.integers(0, 2**64, 200_000, dtype=np.uint64).view(np.float64)
    sub64 = g.integers(0, 2**52, 10_000, dtype=np.uint64).view(np.float64)
    wide = g.standard_normal(200_000) * np.exp2(g.integers(-160, 130, 200_000))
    x = np.concatenate([pats, sub64, -sub64, wide]).reshape(-1, 10)  # any shape
    got = round_array(x, name)
    assert got.shape == x.shape
    assert_same(got, ref_round(x, name))


def test_overflow_and_special_values():
    def r(x, name):
        return round_array(np.float32(x).reshape(1), name)[0]

    # e4m3fn: no inf; the tie max + ulp/2 = 464 goes to 448 (even mantissa), above it NaN; inf -> NaN
    assert r(464.0, "float8_e4m3fn") == 448.0
    assert np.isnan(r(np.nextafter(np.float32(464), np.float32(1e9)), "float8_e4m3fn"))
    assert np.isnan(r(np.inf, "float8_e4m3fn")) and np.isnan(r(-1e6, "float8_e4m3fn"))
    # formats with inf: the overflow tie (max has an odd mantissa) goes to inf
    assert r(61440.0, "float8_e5m2") == np.inf and r(-61440.0, "float8_e5m2") == -np.inf
    assert r(65520.0, "float16") == np.inf and r(np.nextafter(np.float32(65520), np.float32(0)), "float16") == 65504
    for name in NAMES:
        assert np.signbit(r(-0.0, name)) and r(-0.0, name) == 0
        tiny = -FORMATS[name].smallest_subnormal / 4
        assert np.signbit(r(tiny, name)) and r(tiny, name) == 0  # underflow keeps the sign
        assert np.isnan(r(np.nan, name))


@pytest.mark.parametrize("name", NAMES)
def test_error_bound(name):
    f = FORMATS[name]
    g = np.random.default_rng(3)
    x = g.uniform(-1, 1, 100_000) * f.max_finite * np.exp2(-g.integers(0, 60, 100_000))
    y = round_array(x, name)
    assert np.all(np.abs(y - x) <= f.error_bound(x))


# ----------------------------------------------------------------------------
# Stochastic rounding
# ----------------------------------------------------------------------------


def neighbours(x, name):
    """(lo, hi): the largest format value <= |x| and the smallest >= |x|, from ml_dtypes' values."""
    v = all_values(name)
    a = np.abs(x)
    return v[np.searchsorted(v, a, "right") - 1], v[np.searchsorted(v, a, "left")]


def stochastic_inputs(name):
    f = FORMATS[name]
    g = np.random.default_rng(4)
    v = all_values(name)
    v = v[v < f.max_finite]
    exact = g.choice(v, 10)
    between = g.choice(v[1:], 40) * (1 - g.random(40) * f.eps / 2)
    sub = g.random(10) * f.smallest_normal
    tiny = g.random(5) * f.smallest_subnormal
    x = np.concatenate([exact, between, sub, tiny, [f.max_finite * (1 - f.eps / 4)]]).astype(np.float32)
    return np.concatenate([x, -x[::2]]).astype(np.float64)


def unbiased(x, draws, lo, hi, n_se=5.0):
    """True if the mean of draws (rows: one x) is within n_se standard errors of x, for every x."""
    n = draws.shape[1]
    p = (np.abs(x) - lo) / np.where(hi > lo, hi - lo, 1.0)
    se = np.sqrt(p * (1 - p) / n) * (hi - lo)
    err = np.abs(draws.mean(axis=1) - x)
    return bool(np.all(err <= n_se * se + 1e-12 * np.abs(x)))


@pytest.mark.parametrize("name", NAMES)
def test_stochastic_two_neighbours_and_unbiased(name):
    x = stochastic_inputs(name)
    n = 20_000
    draws = round_array(np.repeat(x, n), name, "stochastic", key=rng.derive_key("sr", name), step=3).reshape(-1, n)
    lo, hi = neighbours(x, name)
    s = np.sign(x)[:, None]
    assert np.all((draws == s * lo[:, None]) | (draws == s * hi[:, None]))
    assert np.all(np.signbit(draws) == np.signbit(x)[:, None])
    exact = lo == hi
    assert np.all(draws[exact] == x[exact, None])
    assert unbiased(x, draws, lo, hi)


@pytest.mark.parametrize("name", NAMES)
def test_stochastic_unbiased_in_aggregate(name):
    """One draw per x over many x: the summed error is within 5 standard deviations of zero."""
    f = FORMATS[name]
    g = np.random.default_rng(5)
    x = (g.uniform(-1, 1, 400_000) * f.max_finite * np.exp2(-g.integers(1, 40, 400_000))).astype(np.float32)
    y = round_array(x, name, "stochastic", key=11, step=0).astype(np.float64)
    lo, hi = neighbours(x.astype(np.float64), name)
    p = (np.abs(x) - lo) / np.where(hi > lo, hi - lo, 1.0)
    var = p * (1 - p) * (hi - lo) ** 2
    z = np.sum(y - x) / np.sqrt(np.sum(var))
    assert abs(z) < 5


def test_unbiasedness_check_can_fail():
    """Round to nearest (biased for a fixed x) fails the same check; so would a rounder using u <= p or 1 - p."""
    name = "bfloat16"
    x = np.array([1.0 + 0.3 * 2.0**-7, -(4.0 + 0.2 * 2.0**-5)])
    n = 20_000
    lo, hi = neighbours(x, name)
    nearest = round_array(np.repeat(x, n), name, "nearest").reshape(-1, n)
    assert not unbiased(x, nearest, lo, hi)
    sr = round_array(np.repeat(x, n), name, "stochastic", key=5, step=0).reshape(-1, n)
    assert unbiased(x, sr, lo, hi)
    flipped = np.where(sr == np.sign(x)[:, None] * lo[:, None], np.sign(x)[:, None] * hi[:, None],
                       np.sign(x)[:, None] * lo[:, None])  # up with probability 1 - p
    assert not unbiased(x, flipped, lo, hi)


def test_stochastic_decision_is_exact():
    """Up iff u < p exactly, at the representable u around p (p with 53 significant bits)."""
    man_bits, emin, mx, has_inf = FORMATS["bfloat16"].args
    q = 2.0**-7
    for p in (0.5, 0.3, 2.0**-40, 1 - 2.0**-45, 0.1234567890123456):
        x = 1.0 + p * q  # rounded to float64; x - 1 is exact
        p_exact = (x - 1.0) / q  # the exact p of this x, 0 < p < 1
        for u, up in ((np.nextafter(p_exact, 0), True), (p_exact, False), (np.nextafter(p_exact, 1), False)):
            assert round_scalar(x, man_bits, emin, mx, has_inf, u) == (1.0 + q if up else 1.0)
            assert round_scalar(-x, man_bits, emin, mx, has_inf, u) == -(1.0 + q if up else 1.0)
    # the remainder below 2**-53 of a quantum: float64 far below the smallest subnormal
    x = 2.0**-1000
    assert round_scalar(x, man_bits, emin, mx, has_inf, 0.0) == 2.0**-133
    assert round_scalar(x, man_bits, emin, mx, has_inf, 2.0**-868) == 2.0**-133
    assert round_scalar(x, man_bits, emin, mx, has_inf, 2.0**-867) == 0.0
    # the smallest float64 subnormal, p = 2**-1074 / 2**-133 = 2**-941
    assert round_scalar(5e-324, man_bits, emin, mx, has_inf, 2.0**-942) == 2.0**-133
    assert round_scalar(5e-324, man_bits, emin, mx, has_inf, 2.0**-941) == 0.0
    assert round_scalar(-5e-324, man_bits, emin, mx, has_inf, 0.5) == 0.0 and np.signbit(
        round_scalar(-5e-324, man_bits, emin, mx, has_inf, 0.5))


def test_stochastic_special_values_and_overflow_as_nearest():
    for name in NAMES:
        f = FORMATS[name]
        top = 2.0 ** math.floor(math.log2(f.max_finite))
        x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, f.max_finite * (1 + f.eps / 8),
                      f.max_finite + top * f.eps / 2, 2 * f.max_finite, -2 * f.max_finite])
        for step in range(20):
            y = round_array(x, name, "stochastic", key=1, step=step)
            assert_same(y, round_array(x, name, "nearest"))


# ----------------------------------------------------------------------------
# Bit flips
# ----------------------------------------------------------------------------


def field_mask(field):
    lo, nb = FIELDS[field]
    return np.uint32(((1 << nb) - 1) << lo)


def flipped_bits(x32, y32):
    return np.asarray(x32, np.float32).view(np.uint32) ^ np.asarray(y32, np.float32).view(np.uint32)


X32 = np.random.default_rng(6).standard_normal(100_000).astype(np.float32)


@pytest.mark.parametrize("rate", [1e-3, 0.1])
@pytest.mark.parametrize("field", list(FIELDS))
def test_flip_frequency_and_field(field, rate):
    lo, nb = FIELDS[field]
    y = flip_bits(X32, rate, field, key=rng.derive_key("flip", field), step=1)
    d = flipped_bits(X32, y)
    assert np.all(d & ~field_mask(field) == 0)  # only the field's bits change
    per_bit = np.array([np.count_nonzero(d & np.uint32(1 << b)) for b in range(lo, lo + nb)])
    n = X32.size
    assert np.all(np.abs(per_bit - n * rate) <= 5 * np.sqrt(n * rate * (1 - rate)))
    total = per_bit.sum()
    assert abs(total - n * nb * rate) <= 5 * np.sqrt(n * nb * rate * (1 - rate))
    # the count returned by the kernel is the number of changed bits
    z = X32.copy()
    assert flip_bits_inplace(z, np.uint64(rng.derive_key("flip", field)), 1, rate, lo, nb) == total
    assert z.tobytes() == y.tobytes()


def test_flip_rate_zero_and_one():
    for field in FIELDS:
        assert flip_bits(X32, 0.0, field, key=1, step=0).tobytes() == X32.tobytes()
        y = flip_bits(X32, 1.0, field, key=1, step=0)
        assert np.all(flipped_bits(X32, y) == field_mask(field))
    z = X32[:1000].copy()
    assert flip_bits_inplace(z, 1, 0, 0.0, 0, 32) == 0
    assert flip_bits_inplace(z, 1, 0, 1.0, 0, 32) == 32_000
    assert flip_bits_inplace(z[:0], 1, 0, 0.5, 0, 32) == 0
    assert flip_bits_inplace(z, 1, 0, 1e-300, 0, 32) == 0  # tiny rate: log1p keeps it finite
    assert flip_bits(np.zeros(0), 0.5, "any").shape == (0,)


def test_flip_reproducible_by_key_and_step():
    a = flip_bits(X32, 0.01, "any", key=7, step=2)
    assert a.tobytes() == flip_bits(X32, 0.01, "any", key=7, step=2).tobytes()
    assert a.tobytes() != flip_bits(X32, 0.01, "any", key=7, step=3).tobytes()
    assert a.tobytes() != flip_bits(X32, 0.01, "any", key=8, step=2).tobytes()


def test_flip_dtype_shape_and_nonfinite_results():
    x = X32[:6000].astype(np.float64).reshape(20, 300)
    y = flip_bits(x, 0.2, "exponent", key=3, step=0)
    assert y.dtype == np.float64 and y.shape == x.shape
    ref = flip_bits(X32[:6000], 0.2, "exponent", key=3, step=0)
    finite = np.isfinite(ref)
    assert not finite.all()  # flips made inf/NaN, no error
    assert np.array_equal(y.ravel()[finite], ref[finite].astype(np.float64))
    assert np.array_equal(np.isnan(y.ravel()), np.isnan(ref))


# ----------------------------------------------------------------------------
# The same bits from inside another njit function
# ----------------------------------------------------------------------------


@njit
def _njit_round(x, man_bits, emin, max_finite, has_inf, stochastic, key, step):
    out = np.empty_like(x)
    for i in range(x.size):
        u = rng.uniform01_scalar(key, step, i) if stochastic else -1.0
        out[i] = round_scalar(np.float64(x[i]), man_bits, emin, max_finite, has_inf, u)
    return out


@njit
def _njit_flip(x, key, step, rate, lo_bit, n_bits):
    y = x.copy()
    n = flip_bits_inplace(y, key, step, rate, lo_bit, n_bits)
    return y, n


@pytest.mark.parametrize("name", NAMES)
def test_njit_callers_get_the_same_bits(name):
    x = np.concatenate([RANDOM32[:50_000], structured_inputs(name)[:50_000]])
    f = FORMATS[name]
    for stochastic in (False, True):
        got = _njit_round(x, f.man_bits, f.emin, f.max_finite, f.has_inf, stochastic, 99, 4)
        ref = round_array(x, name, "stochastic" if stochastic else "nearest", key=99, step=4)
        assert got.dtype == np.float32
        assert_same(got, ref)
    for field, (lo, nb) in FIELDS.items():
        y, n = _njit_flip(X32, 42, 5, 0.01, lo, nb)
        assert y.tobytes() == flip_bits(X32, 0.01, field, key=42, step=5).tobytes()
        assert n == np.unpackbits(flipped_bits(X32, y).view(np.uint8)).sum()


@pytest.mark.parametrize("name", NAMES)
def test_round_entries_in_place_is_round_scalar_entry_by_entry(name):
    """The vectorized in-place rounding of the kernels: entries 0..n-1 only, the draw of entry i at
    first + i, every special value; nearest against ml_dtypes, stochastic against round_scalar."""
    f = FORMATS[name]
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, f.max_finite, -f.max_finite, 2 * f.max_finite, f.smallest_subnormal,
                -0.5 * f.smallest_subnormal, f.smallest_normal, 0.75 * f.smallest_normal, 1e-45, 3e38]
    for dtype in (np.float32, np.float64):
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.concatenate([np.array(specials, dtype), RANDOM32[:20_000].astype(dtype),
                                structured_inputs(name)[:20_000].astype(dtype)])
        n, first, key, step = x.size - 7, 1000, 77, 3
        for stochastic in (False, True):
            got = x.copy()
            with np.errstate(over="ignore", invalid="ignore"):
                lowprec.round_entries(got, n, first, f.man_bits, f.emin, f.max_finite, f.has_inf, stochastic, key, step)
            assert got[n:].tobytes() == x[n:].tobytes()  # entries from n on are left alone
            if not stochastic:
                assert_same(got[:n], ref_round(x[:n], name))
            ref = np.array([round_scalar(np.float64(v), f.man_bits, f.emin, f.max_finite, f.has_inf,
                                         rng.uniform01_scalar(np.uint64(key), step, first + i) if stochastic else -1.0)
                            for i, v in enumerate(x[:n])], dtype)
            assert_same(got[:n], ref)


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"name must be one of .*bfloat16"):
        format_of("float7")
    with pytest.raises(ValueError, match=r"fmt must be one of .*float8_e4m3fn"):
        round_array(np.ones(3), "float7")
    with pytest.raises(ValueError, match="mode"):
        round_array(np.ones(3), "float16", mode="up")
    with pytest.raises(ValueError, match="x must be"):
        round_array(np.ones(3, dtype=np.int64), "float16")
    with pytest.raises(ValueError, match="step"):
        round_array(np.ones(3), "float16", "stochastic", step=-1)
    for bad in (-0.1, 1.5, float("nan"), float("inf"), "high"):
        with pytest.raises(ValueError, match="rate"):
            flip_bits(np.ones(3), bad, "any")
    with pytest.raises(ValueError, match="field must be one of .*exponent"):
        flip_bits(np.ones(3), 0.1, "fraction")
    with pytest.raises(ValueError, match="rate"):
        flip_bits_inplace(np.ones(3, np.float32), 0, 0, 2.0, 0, 32)
    with pytest.raises(ValueError, match="lo_bit"):
        flip_bits_inplace(np.ones(3, np.float32), 0, 0, 0.5, 20, 20)


def test_module_has_no_runtime_ml_dtypes_dependency():
    import inspect

    assert "import ml_dtypes" not in inspect.getsource(lowprec)
