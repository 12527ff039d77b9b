"""Scaled formats (fbsgd.formats) against independent references.

* element rounding: bit for bit against ml_dtypes' casts (and gfloat's saturating rounding) on more
  than 10^6 inputs per format; stochastic rounding bit for bit given the stream's draws, against a
  rule written here from the format's value grid (enumerated from ml_dtypes' bit patterns);
* the block rules (MX "ocp" and "ceil", per-tensor scaling, NVFP4): against references written here
  from the specification / Transformer Engine's formulas, with ml_dtypes' casts, on more than 10^6
  inputs per format and rule, and against gfloat's MX quantize_block where its API covers the rule;
* hand-computed blocks: zeros, power-of-two amax, amax just below a power of two (the OCP rule clips),
  the scale's clamping to E8M0's range, partial blocks, the block axis;
* stochastic rounding unbiased given the input and only ever the two neighbours; the scale-rule
  contrast: the OCP rule's error on a block's largest value is biased, the ceil rule's is not.
"""
import math

import ml_dtypes
import numpy as np
import pytest
from gfloat import RoundMode, compute_scale_amax, quantize_block, round_ndarray
from gfloat import formats as gf

from fbsgd import formats as F
from fbsgd import perturbations as P
from fbsgd import rng

ELEMENTS = ["float8_e4m3fn", "float8_e5m2", "float6_e2m3fn", "float6_e3m2fn", "float4_e2m1fn"]
ML = {name: getattr(ml_dtypes, name) for name in ELEMENTS + ["float8_e8m0fnu"]}
BITS = {"float8_e4m3fn": 8, "float8_e5m2": 8, "float6_e2m3fn": 6, "float6_e3m2fn": 6, "float4_e2m1fn": 4}
# largest finite values and the exponent of the largest value (emax_elem), OCP MX v1.0 / OFP8 tables
MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0, "float6_e2m3fn": 7.5, "float6_e3m2fn": 28.0, "float4_e2m1fn": 6.0}
EMAX = {"float8_e4m3fn": 8, "float8_e5m2": 15, "float6_e2m3fn": 2, "float6_e3m2fn": 4, "float4_e2m1fn": 2}
GF_ELEM = {"float8_e4m3fn": gf.format_info_ocp_e4m3, "float8_e5m2": gf.format_info_ocp_e5m2,
           "float6_e2m3fn": gf.format_info_ocp_e2m3, "float6_e3m2fn": gf.format_info_ocp_e3m2,
           "float4_e2m1fn": gf.format_info_ocp_e2m1}
GF_MX = {"float8_e4m3fn": gf.format_info_mxfp8_e4m3, "float8_e5m2": gf.format_info_mxfp8_e5m2,
         "float6_e2m3fn": gf.format_info_mxfp6_e2m3, "float6_e3m2fn": gf.format_info_mxfp6_e3m2,
         "float4_e2m1fn": gf.format_info_mxfp4_e2m1}
DBL_MAX = float(np.finfo(np.float64).max)


# ---------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------


def grid(name):
    """Every finite non-negative value of the format, sorted, from ml_dtypes' bit patterns (sign bit clear)."""
    codes = np.arange(2 ** (BITS[name] - 1), dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        v = codes.view(ML[name]).astype(np.float64)
    return np.unique(v[np.isfinite(v)])


def cast(x, name):
    """ml_dtypes' cast (round to nearest even) and back to float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x, dtype=np.float64).astype(ML[name]).astype(np.float64)


def ref_stochastic(y, name, key, step):
    """Stochastic rounding of y (|y| <= max) from the grid: up to the next value iff u < (|y| − lo)/(hi − lo),
    u the stream's draw for entry i (C order); the comparison is made as u·gap < |y| − lo, exact in float64
    (the gap is a power of two, and |y| − lo is exact by Sterbenz's lemma)."""
    g = grid(name)
    a = np.abs(y)
    i = np.clip(np.searchsorted(g, a, side="right") - 1, 0, g.size - 1)
    lo, hi = g[i], g[np.minimum(i + 1, g.size - 1)]
    u = rng.uniform(key, step, np.shape(y))
    up = (a > lo) & (u * (hi - lo) < a - lo)
    out = np.copysign(np.where(up, hi, lo), y)
    return np.where(np.isnan(y), np.nan, out)


def round_ref(y, name, mode, key=0, step=0):
    return cast(y, name) if mode == "nearest" else ref_stochastic(y, name, key, step)


def floor_log2(a):
    """⌊log₂ a⌋ for a > 0 finite (−inf for 0), corrected exactly after a floating log2."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log2(a))
    pos = np.isfinite(e)
    e = np.where(pos, e, 0).astype(np.int64)
    e = np.where(pos & (np.ldexp(1.0, e) > a), e - 1, e)
    e = np.where(pos & (np.ldexp(1.0, e + 1) <= a), e + 1, e)
    return np.where(pos, e, -100_000)


def ref_mx(x, name, rule, block=32, axis=-1, mode="nearest", key=0, step=0):
    """MX from the specification: per block of `block` entries along `axis` (a trailing partial block by itself),
    X = 2^k with k = ⌊log₂ amax⌋ − emax ("ocp") or the least k with amax ≤ max·2^k ("ceil"); amax = 0 → k = −127;
    k < −127 → −127; k > 127, or a NaN/inf in the block → NaN; elements clamped to ±max and rounded."""
    x = np.asarray(x, dtype=np.float64)
    xm = np.moveaxis(x, axis, -1)
    K = np.zeros(xm.shape)
    for s in range(0, xm.shape[-1], block):
        amax = np.max(np.abs(xm[..., s:s + block]), axis=-1)
        bad = ~np.isfinite(amax)
        a = np.where(bad, 1.0, amax)
        e = floor_log2(a)
        if rule == "ocp":
            k = e - EMAX[name]
        else:
            k = e - EMAX[name] + 1
            for _ in range(3):  # step down while max·2^(k−1) still holds amax (ldexp of a float is exact)
                k = np.where(a <= np.ldexp(MAX[name], k - 1), k - 1, k)
        k = np.where(a == 0, -127, k)
        k = np.maximum(k, -127)
        bad |= k > 127
        K[..., s:s + block] = np.where(bad, np.nan, k)[..., None]
    K = np.moveaxis(K, -1, axis)
    kk = np.where(np.isnan(K), 0, K).astype(np.int64)
    with np.errstate(invalid="ignore"):
        y = np.clip(np.ldexp(x, -kk), -MAX[name], MAX[name])
    out = np.ldexp(round_ref(y, name, mode, key, step), kk)
    return np.where(np.isnan(K), np.nan, out)


def ref_tensor(x, name, mode="nearest", amax="current", pow2=False, key=0, step=0):
    """Per-tensor scaling: s = amax/max (a power of two at least that with pow2), x → round(clamp(x/s))·s."""
    x = np.asarray(x, dtype=np.float64)
    a = float(np.max(np.abs(x))) if amax == "current" else float(amax)
    if not math.isfinite(a):
        return np.full(x.shape, np.nan)
    if a == 0:
        s = 1.0
    elif pow2:
        k = int(floor_log2(np.array(a / MAX[name]))) - 1
        while a > math.ldexp(MAX[name], k):
            k += 1
        s = math.ldexp(1.0, k)
    else:
        s = a / MAX[name]
    y = np.clip(x / s, -MAX[name], MAX[name])
    return round_ref(y, name, mode, key, step) * s


def ref_nvfp4(x, axis=-1, rule="nearest", mode="nearest", key=0, step=0):
    """NVFP4 as Transformer Engine's reference quantizer (1×16 tiles), in float64: s_enc = 6·448/amax (≤ DBL_MAX),
    block scale d = e4m3(min(amax_b·(s_enc/6), 448)) (nearest; "ceil": the least E4M3 value ≥ it),
    e_b = min(1/(d·s_dec), DBL_MAX), P(x) = e2m1(clamp(x·e_b, ±6))·d·s_dec."""
    x = np.asarray(x, dtype=np.float64)
    amax_t = float(np.max(np.abs(x)))
    if not math.isfinite(amax_t):
        return np.full(x.shape, np.nan)
    s_enc = min(2688.0 / amax_t, DBL_MAX) if amax_t > 0 else DBL_MAX
    s_dec = 1.0 / s_enc
    xm = np.moveaxis(x, axis, -1)
    D = np.zeros(xm.shape)
    g = grid("float8_e4m3fn")
    for s in range(0, xm.shape[-1], 16):
        t = np.minimum(np.max(np.abs(xm[..., s:s + 16]), axis=-1) * (s_enc * (1.0 / 6.0)), 448.0)
        d = cast(t, "float8_e4m3fn") if rule == "nearest" else g[np.searchsorted(g, t, side="left")]
        D[..., s:s + 16] = d[..., None]
    D = np.moveaxis(D, -1, axis)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        e_b = np.minimum(1.0 / (D * s_dec), DBL_MAX)
        y = np.clip(x * e_b, -6.0, 6.0)
    return round_ref(y, "float4_e2m1fn", mode, key, step) * D * s_dec


def assert_bits(got, ref):
    """Bit for bit (float64 patterns), NaN equal to NaN, signs of zeros included."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape
    nan = np.isnan(ref)
    bad_nan = np.isnan(got) != nan
    assert not bad_nan.any(), f"NaN mismatch at {np.flatnonzero(bad_nan)[:5]}"
    diff = got[~nan].view(np.uint64) != ref[~nan].view(np.uint64)
    if diff.any():
        i = np.flatnonzero(diff)[:5]
        raise AssertionError(f"{int(diff.sum())} of {diff.size} differ, e.g. got {got[~nan][i]} want {ref[~nan][i]}")


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------


def nudged(v, k=2):
    """v and v moved by 1..k float64 ulps either way."""
    out, up, down = [v], v.copy(), v.copy()
    for _ in range(k):
        with np.errstate(over="ignore"):
            up, down = np.nextafter(up, np.inf), np.nextafter(down, -np.inf)
        out += [up, down]
    return np.concatenate(out)


def element_inputs(name, seed=0):
    """> 10^6 float64 inputs: every value of the format, every tie between neighbours, zeros, ±subnormals,
    powers of two across the range, the largest finite value and values just above it (and its tie to
    overflow), ±inf, each nudged by 1–2 ulps; log-uniform values from a sixteenth of the smallest subnormal
    to 4·max; random float32 bit patterns (all magnitudes)."""
    g = np.random.default_rng(seed)
    v = grid(name)
    sub, top = v[1], v[-1]
    ties = (v[1:] + v[:-1]) / 2
    gap_top = v[-1] - v[-2]
    above = top + gap_top * np.array([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 1e3])
    pows = np.ldexp(1.0, np.arange(int(np.log2(sub)) - 6, int(np.log2(top)) + 6))
    special = np.array([0.0, sub / 2, sub / 4, 3 * sub / 4, np.inf, 5e-324, DBL_MAX])
    base = np.concatenate([v, ties, above, pows, special])
    base = nudged(base)
    logu = np.exp(g.uniform(np.log(sub / 16), np.log(4 * top), 720_000))
    with np.errstate(invalid="ignore"):
        bits = g.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32).astype(np.float64)
    bits = bits[np.isfinite(bits)]
    x = np.concatenate([base, logu, bits])
    sign = np.where(g.random(x.size) < 0.5, -1.0, 1.0)
    x = np.concatenate([base, -base, x * sign])
    assert x.size > 1_000_000
    return x


# ---------------------------------------------------------------------------
# element rounding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ELEMENTS)
def test_element_nearest_matches_ml_dtypes_bit_for_bit(name):
    x = element_inputs(name)
    # the format's own cast: float8 overflows to NaN (e4m3fn) or inf (e5m2); float6/float4 saturate
    assert_bits(F.element_round(x, name), cast(x, name))
    # saturating: ±max for finite overflow and ±inf, against ml_dtypes after a clamp and against gfloat
    sat = F.element_round(x, name, saturate=True)
    assert_bits(sat, cast(np.clip(x, -MAX[name], MAX[name]), name))
    with np.errstate(over="ignore"):
        assert_bits(sat, round_ndarray(GF_ELEM[name], x, RoundMode.TiesToEven, sat=True))
    # float32 inputs are rounded once, from float32, as ml_dtypes casts them
    x32 = x[np.abs(x) < 3e38].astype(np.float32)
    got32 = F.element_round(x32, name)
    assert got32.dtype == np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        assert_bits(got32, x32.astype(ML[name]).astype(np.float32))


@pytest.mark.parametrize("name", ELEMENTS)
def test_element_specials(name):
    x = np.array([np.nan, np.inf, -np.inf, 2 * MAX[name], -2 * MAX[name], 0.0, -0.0])
    got = F.element_round(x, name)
    assert np.isnan(got[0])  # NaN stays NaN (ml_dtypes gives −0 in the formats without NaN; we keep NaN)
    if name == "float8_e4m3fn":
        assert np.isnan(got[1:5]).all()
    elif name == "float8_e5m2":
        assert list(got[1:5]) == [np.inf, -np.inf, np.inf, -np.inf]
    else:
        assert list(got[1:5]) == [MAX[name], -MAX[name], MAX[name], -MAX[name]]
        with pytest.raises(ValueError, match="saturate=False"):
            F.element_round(x, name, saturate=False)
    assert list(F.element_round(x, name, saturate=True)[1:5]) == [MAX[name], -MAX[name], MAX[name], -MAX[name]]
    assert not np.signbit(got[5]) and np.signbit(got[6])


def e8m0_inputs(seed=0):
    g = np.random.default_rng(seed)
    pows = np.ldexp(1.0, np.arange(-135, 131))
    base = np.concatenate([pows, 1.5 * pows, 0.75 * pows, 1.25 * pows, [0.0, 5e-324, 1e-300, np.inf, DBL_MAX]])
    base = nudged(base)
    logu = np.exp2(g.uniform(-140, 130, 1_000_000))
    x = np.concatenate([base, logu, -logu[:1000], -base[:100]])
    assert x.size > 1_000_000
    return x


def test_e8m0_matches_ml_dtypes_bit_for_bit():
    x = e8m0_inputs()
    assert_bits(F.element_round(x, F.E8M0), cast(x, "float8_e8m0fnu"))
    # saturating: 2^127 instead of NaN above the range; NaN still for x <= 0
    sat = F.element_round(x, F.E8M0, saturate=True)
    ref = np.where(x > 2.0**127, 2.0**127, cast(x, "float8_e8m0fnu"))
    assert_bits(sat, ref)


def test_e8m0_stochastic_exact_given_draws():
    g = np.random.default_rng(3)
    x = np.exp2(g.uniform(-126, 126, 200_000))
    x[:64] = np.ldexp(1.0, np.arange(-63, 1))  # exact values never move
    got = F.element_round(x, F.E8M0, "stochastic", key=11, step=5)
    lo = np.ldexp(1.0, floor_log2(x))
    u = rng.uniform(11, 5, x.shape)
    assert_bits(got, np.where(u * lo < x - lo, 2 * lo, lo))  # up iff u < (x − lo)/lo


@pytest.mark.parametrize("name", ELEMENTS)
def test_element_stochastic_exact_given_draws(name):
    """Stochastic rounding decides u < (|y| − lo)/(hi − lo) exactly with the stream's draw u of entry i."""
    x = element_inputs(name, seed=1)[::4]
    y = np.clip(x, -MAX[name], MAX[name])
    got = F.element_round(x, name, "stochastic", key=7, step=3, saturate=True)
    assert_bits(got, ref_stochastic(y, name, 7, 3))
    assert got.size > 250_000


@pytest.mark.parametrize("name", ELEMENTS)
def test_element_stochastic_unbiased(name):
    g = np.random.default_rng(5)
    x = np.concatenate([g.uniform(-MAX[name], MAX[name], 48), grid(name)[1:5] * 0.37, grid(name)[-4:]])
    n = 4000
    draws = np.stack([F.element_round(x, name, "stochastic", key=9, step=t) for t in range(n)])
    mean, se = draws.mean(axis=0), draws.std(axis=0) / math.sqrt(n)
    on_grid = se == 0
    assert np.all(draws[:, on_grid] == x[on_grid])  # format values never move
    assert np.all(np.abs(mean - x)[~on_grid] < 5 * se[~on_grid])
    gv = np.unique(np.concatenate([-grid(name), grid(name)]))  # the signed grid
    i = np.searchsorted(gv, x[~on_grid])  # gv[i − 1] < x < gv[i]
    d = draws[:, ~on_grid]
    assert np.all((d == gv[i - 1]) | (d == gv[i]))  # only the two neighbours


# ---------------------------------------------------------------------------
# MX against the specification and gfloat
# ---------------------------------------------------------------------------


def mx_data(seed, rows=2048, cols=515):
    """rows × cols (cols = 16 blocks of 32 + a partial block of 3), each row at its own magnitude, and special
    blocks: zeros, power-of-two amax, amax one ulp below a power of two, tiny blocks (scale clamped at 2^-127),
    huge blocks (scale above 2^127: NaN), NaN and inf entries, blocks spanning many decades (element subnormals)."""
    g = np.random.default_rng(seed)
    x = g.standard_normal((rows, cols)) * 10.0 ** g.uniform(-30, 30, (rows, 1))
    x[0, :32] = 0.0
    x[1, :32] = -0.0
    x[2, 32:64] *= 2.0 ** 5 / np.max(np.abs(x[2, 32:64]))  # amax a power of two
    x[3, 64:96] *= np.nextafter(2.0 ** 7, 0) / np.max(np.abs(x[3, 64:96]))  # just below one
    x[4, :] = g.standard_normal(cols) * 2.0 ** -135
    x[5, :] = g.standard_normal(cols) * 1e-300
    x[6, :] = g.standard_normal(cols) * 2.0 ** 140
    x[7, 5] = np.nan
    x[8, 40] = np.inf
    x[9, 514] = -np.inf  # in the partial block
    x[10, :] = g.standard_normal(cols) * 10.0 ** g.uniform(-12, 0, cols)  # many decades in each block
    x[11, 512:] = 1e-3  # a partial block by itself
    x[12, :] = np.ldexp(1.0, g.integers(-10, 10, cols)) * g.choice([-1.0, 1.0], cols)
    return x


@pytest.mark.parametrize("name", ELEMENTS)
@pytest.mark.parametrize("rule", ["ocp", "ceil"])
def test_mx_matches_spec_reference(name, rule):
    x = mx_data(1)
    assert x.size > 1_000_000
    with np.errstate(invalid="ignore"):
        assert_bits(F.mx_quantize(x, name, scale_rule=rule), ref_mx(x, name, rule))
        # across the batch (axis 0), with 2048 = 64 blocks of 32 per column
        y = x[:, :40]
        assert_bits(F.MX(name, scale_rule=rule, axis=0).apply(y, 0, 0), ref_mx(y, name, rule, axis=0))
        # stochastic: bit for bit given the draws (entry i, C order, the stream's draw i)
        z = x[:400]
        got = F.MX(name, scale_rule=rule, mode="stochastic").apply(z, 123, 4)
        assert_bits(got, ref_mx(z, name, rule, mode="stochastic", key=123, step=4))


@pytest.mark.parametrize("name", ELEMENTS)
def test_mx_ocp_matches_gfloat(name):
    """gfloat's quantize_block with compute_scale_amax is the OCP rule (its scale from a floating log2, so the
    comparison leaves out blocks whose amax is within an ulp of a power of two, and the out-of-range ones)."""
    g = np.random.default_rng(2)
    blocks = g.standard_normal((300, 32)) * 10.0 ** g.uniform(-20, 20, (300, 1))
    blocks[::7] *= 10.0 ** g.uniform(-6, 0, (43, 32))  # spread over decades: element subnormals
    got = F.mx_quantize(blocks, name)
    for b, row in zip(blocks, got):
        assert_bits(row, quantize_block(GF_MX[name], b, compute_scale_amax))


@pytest.mark.parametrize("name", ELEMENTS)
def test_mx_scales_match_spec_and_gfloat(name):
    g = np.random.default_rng(4)
    x = g.standard_normal((64, 96)) * 10.0 ** g.uniform(-30, 30, (64, 1))
    s = F.mx_scales(x, name)
    assert s.shape == (64, 3)
    for i in range(64):
        for j in range(3):
            assert s[i, j] == compute_scale_amax(EMAX[name], x[i, 32 * j:32 * j + 32])


def test_mx_hand_blocks_e2m1():
    """MXFP4 (E2M1: values 0, 0.5, 1, 1.5, 2, 3, 4, 6; emax 2) worked by hand."""
    # amax a power of two: both rules give X = 2^(3−2) = 2, the largest value maps to 4 exactly
    b = np.array([8.0, 3.0, -1.0, 0.3] + [0.0] * 28)
    for rule in ("ocp", "ceil"):
        assert F.mx_scales(b, "float4_e2m1fn", scale_rule=rule)[0] == 2.0
        assert F.mx_quantize(b, "float4_e2m1fn", scale_rule=rule)[:4].tolist() == [8.0, 3.0, -1.0, 0.0]
    # amax just below a power of two: OCP X = 2^(2−2) = 1 and 7.9 is clipped to 6; ceil X = 2^⌈log₂(7.9/6)⌉ = 2
    b = np.array([7.9, 2.9] + [0.0] * 30)
    assert F.mx_scales(b, "float4_e2m1fn", scale_rule="ocp")[0] == 1.0
    assert F.mx_quantize(b, "float4_e2m1fn", scale_rule="ocp")[:2].tolist() == [6.0, 3.0]
    assert F.mx_scales(b, "float4_e2m1fn", scale_rule="ceil")[0] == 2.0
    assert F.mx_quantize(b, "float4_e2m1fn", scale_rule="ceil")[:2].tolist() == [8.0, 3.0]
    # amax/max exactly a power of two: ceil gives X = amax/6, the largest value exact
    b = np.array([12.0, 1.0] + [0.0] * 30)
    assert F.mx_scales(b, "float4_e2m1fn", scale_rule="ceil")[0] == 2.0
    assert F.mx_quantize(b, "float4_e2m1fn", scale_rule="ceil")[:2].tolist() == [12.0, 1.0]
    # zeros keep their signs; the scale of an all-zero block is 2^-127
    z = np.array([0.0, -0.0] * 16)
    out = F.mx_quantize(z, "float4_e2m1fn")
    assert np.all(out == 0) and np.array_equal(np.signbit(out), np.signbit(z))
    assert F.mx_scales(z, "float4_e2m1fn")[0] == 2.0 ** -127
    # a partial block (33 entries: 32 + 1) has its own scale: 1e-3 alone is rounded relative to itself
    b = np.concatenate([np.full(32, 100.0), [1e-3]])
    out = F.mx_quantize(b, "float4_e2m1fn")
    assert out[32] == 2.0 ** -10  # X = 2^(⌊log₂ 1e-3⌋ − 2) = 2^-12, 1e-3/X = 4.096 → 4


def test_mx_scale_clamped_to_e8m0():
    e4m3 = "float8_e4m3fn"
    # amax 2^-130: k = −130 − 8 = −138 → clamped to −127; x·2^127 = 2^-3 and 2^-6 are E4M3 values
    b = np.array([2.0 ** -130, 2.0 ** -133, 2.0 ** -140] + [0.0] * 29)
    assert F.mx_scales(b, e4m3)[0] == 2.0 ** -127
    assert F.mx_quantize(b, e4m3)[:3].tolist() == [2.0 ** -130, 2.0 ** -133, 0.0]  # 2^-13 < half of 2^-9: 0
    # amax 2^135: k = 127 (the largest scale); 2^136: k = 128 → the block is NaN
    assert F.mx_scales(np.array([2.0 ** 135]), e4m3)[0] == 2.0 ** 127
    assert F.mx_quantize(np.array([2.0 ** 135, 1.0]), e4m3).tolist() == [2.0 ** 135, 0.0]
    assert np.isnan(F.mx_quantize(np.array([2.0 ** 136, 1.0]), e4m3)).all()
    # a NaN or inf anywhere in a block makes that block NaN, and only that block
    x = np.ones(64)
    x[3] = np.inf
    out = F.mx_quantize(x, e4m3)
    assert np.isnan(out[:32]).all() and np.all(out[32:] == 1.0)


def test_mx_axis_and_dtype():
    g = np.random.default_rng(6)
    x = g.standard_normal((70, 5))
    for rule in ("ocp", "ceil"):
        a0 = F.MX("float6_e3m2fn", scale_rule=rule, axis=0).apply(x, 0, 0)
        a1 = F.MX("float6_e3m2fn", scale_rule=rule, axis=-1).apply(x.T.copy(), 0, 0).T
        assert_bits(a0, a1)
    x32 = x.astype(np.float32)
    out32 = F.mx_quantize(x32, "float8_e5m2")
    assert out32.dtype == np.float32
    assert_bits(out32, F.mx_quantize(x32.astype(np.float64), "float8_e5m2"))  # exact either way
    # a message with one value per sample: along the features each block has one entry
    v = g.standard_normal((50, 1))
    ax1 = F.MX("float4_e2m1fn", axis=-1).apply(v, 0, 0)
    assert_bits(ax1, ref_mx(v, "float4_e2m1fn", "ocp", block=32, axis=-1))
    assert F.MX("float4_e2m1fn", axis=0).apply(np.float64(3.0), 0, 0) == 3.0


# ---------------------------------------------------------------------------
# per-tensor scaling and NVFP4 against their references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ELEMENTS)
def test_tensor_scaled_matches_reference(name):
    g = np.random.default_rng(8)
    x = g.standard_normal((1024, 1030)) * np.exp(g.uniform(-8, 8, (1024, 1030)))
    assert x.size > 1_000_000
    assert_bits(F.tensor_scaled_quantize(x, name), ref_tensor(x, name))
    assert_bits(F.tensor_scaled_quantize(x, name, pow2=True), ref_tensor(x, name, pow2=True))
    small = x[:64] * 1e-3
    assert_bits(F.tensor_scaled_quantize(small, name, amax=1.5), ref_tensor(small, name, amax=1.5))
    assert_bits(F.tensor_scaled_quantize(small, name, amax=0.75, pow2=True), ref_tensor(small, name, amax=0.75, pow2=True))
    z = x[:100]
    assert_bits(F.TensorScaled(name, "stochastic").apply(z, 5, 6), ref_tensor(z, name, "stochastic", key=5, step=6))
    # the largest value maps to max exactly with pow2 off (amax/s = max), and nothing saturates
    top = np.unravel_index(np.argmax(np.abs(x)), x.shape)
    assert abs(F.tensor_scaled_quantize(x, name)[top]) == pytest.approx(abs(x[top]), rel=1e-15)
    # zeros, and a NaN or inf in the tensor
    assert np.array_equal(F.tensor_scaled_quantize(np.zeros(4), name), np.zeros(4))
    assert np.isnan(F.tensor_scaled_quantize(np.array([1.0, np.inf]), name)).all()
    assert F.tensor_scaled_quantize(np.array([1.0, np.inf, np.nan]), name, amax=2.0)[1] == pytest.approx(2.0, rel=1e-15)


@pytest.mark.parametrize("rule", ["nearest", "ceil"])
def test_nvfp4_matches_reference(rule):
    g = np.random.default_rng(9)
    x = g.standard_normal((1024, 1030)) * 10.0 ** g.uniform(-6, 3, (1024, 1))
    x[0, :16] = 0.0  # a zero block
    x[1, :16] *= 1e-12  # a block whose E4M3 scale underflows (nearest: 0, the block becomes zeros)
    x[2, 16:32] = g.standard_normal(16) * 1e-4  # small against the tensor: subnormal block scales
    assert x.size > 1_000_000
    got = F.nvfp4_quantize(x, scale_rule=rule)
    assert_bits(got, ref_nvfp4(x, rule=rule))
    if rule == "nearest":
        assert np.all(got[1, :16] == 0)
    y = x[:64, :50].T.copy()  # across the batch, 64 = 4 blocks of 16 per column, and a partial block
    assert_bits(F.NVFP4(axis=0, scale_rule=rule).apply(y, 0, 0), ref_nvfp4(y, axis=0, rule=rule))
    z = x[:200]
    got = F.NVFP4("stochastic", scale_rule=rule).apply(z, 3, 2)
    assert_bits(got, ref_nvfp4(z, rule=rule, mode="stochastic", key=3, step=2))
    assert np.isnan(F.nvfp4_quantize(np.array([1.0, np.nan]))).all()


def test_nvfp4_block_scale_clips_with_nearest_only():
    """amax_b·s_enc/6 = 1.0625·2^k is an E4M3 tie, rounded down to 2^k: the largest value scales to 6.375,
    clipped to 6 (nearest); rounded up to 1.125·2^k it scales to 5.67 and is kept (ceil)."""
    x = np.array([448.0 * 6.0] + [0.0] * 15 + [6.0 * 1.0625 * 2.0 ** -3] + [0.0] * 15)
    # tensor amax 2688 → s_enc = 1; the second block's amax 0.796875: t = 0.1328125 = 1.0625·2^-3
    near = F.nvfp4_quantize(x)
    ceil = F.nvfp4_quantize(x, scale_rule="ceil")
    assert near[16] == 6.0 * 2.0 ** -3  # d = 2^-3: 0.796875·8 = 6.375 clipped to 6: −5.9 %
    assert ceil[16] == 6.0 * 1.125 * 2.0 ** -3  # d = 1.125·2^-3: 5.67, rounded to 6 in E2M1 (not clipped)
    assert near[0] == x[0] and ceil[0] == x[0]


# ---------------------------------------------------------------------------
# the kinds as perturbations: their laws, stochastic rounding, the scale-rule contrast
# ---------------------------------------------------------------------------


KINDS = [F.TensorScaled("float8_e4m3fn"), F.TensorScaled("float8_e5m2", "stochastic"),
         F.TensorScaled("float8_e4m3fn", "stochastic", amax=1.0),
         F.MX("float8_e4m3fn"), F.MX("float4_e2m1fn", mode="stochastic"),
         F.MX("float6_e2m3fn", scale_rule="ceil", mode="stochastic"), F.MX("float6_e3m2fn", block=8, axis=0, mode="stochastic"),
         F.NVFP4(), F.NVFP4("stochastic"), F.NVFP4("stochastic", scale_rule="ceil")]


@pytest.mark.parametrize("p", KINDS, ids=lambda p: p.label)
def test_kinds_are_what_they_say(p):
    """fbsgd.perturbations.check: the exact conditional law against 600 draws of apply, the declared law
    (zero mean where it says so, the bound) against the exact law, the schedule."""
    g = np.random.default_rng(10)
    x = g.standard_normal((16, 40)) * np.exp(g.uniform(-3, 3, (16, 40)))
    report = P.check(p, x, draws=600)
    assert report.ok, str(report)
    assert isinstance(p.law, P.Law) and p.law.family == "input_dependent" and not p.law.additive
    assert p.law.zero_mean == (p.mode == "stochastic" and getattr(p, "scale_rule", "ceil") == "ceil"
                               and getattr(p, "amax", "current") == "current")
    if isinstance(p, F.MX):  # a BlockOp cut along p's axis (test_mx_compiled_*)
        assert isinstance(p.compiled(), P.BlockOp) and p.compiled().block == p.block
        assert p.compiled().axis == (0 if p.axis == 0 else -1)
    else:
        with pytest.raises(NotImplementedError, match="reference path"):
            p.compiled()
    assert P.canonical(p) == (repr(p) if getattr(p, "amax", "current") == "current" else repr(p).replace("1.0", "1"))
    assert P.canonical(F.TensorScaled("float8_e4m3fn", amax=2)) == P.canonical(F.TensorScaled("float8_e4m3fn", amax=2.0))


@pytest.mark.parametrize("p", [F.MX("float8_e4m3fn", scale_rule="ceil", mode="stochastic"),
                               F.MX("float4_e2m1fn", scale_rule="ceil", mode="stochastic", axis=0),
                               F.TensorScaled("float4_e2m1fn", "stochastic"),
                               F.TensorScaled("float8_e5m2", "stochastic", pow2=True),
                               F.NVFP4("stochastic", scale_rule="ceil")], ids=lambda p: p.label)
def test_stochastic_unbiased_given_input(p):
    g = np.random.default_rng(11)
    x = g.standard_normal((64, 32)) * np.exp(g.uniform(-2, 2, (64, 32)))
    n = 2000
    key = rng.derive_key("test_formats", p.label)
    draws = np.stack([p.apply(x, key, t) for t in range(n)])
    law = p.conditional_law(x)  # exact: the two neighbours, with the probabilities that make the mean x
    assert np.allclose(law.mean(), x, rtol=1e-13, atol=0)
    pts, prob = law.points, law.probabilities
    # the mean of the draws within 5 standard errors of x, where the count of "up" draws is close to normal
    # (n·p·(1 − p) >= 10; rarer moves are covered by the exact law above and the bit-for-bit tests)
    p_up = prob[..., 1]
    normal = n * p_up * (1 - p_up) >= 10
    assert normal.mean() > 0.5
    se = np.abs(pts[..., 1] - pts[..., 0]) * np.sqrt(p_up * (1 - p_up) / n)
    mean = draws.mean(axis=0)
    assert np.all(np.abs(mean - x)[normal] < 5 * se[normal])
    assert np.all((draws == pts[..., 0]) | (draws == pts[..., 1]))  # only the two neighbours


def top_entry_relative_bias(p, x, draws):
    """(exact mean, Monte Carlo mean, its standard error) of the relative error (P(x) − x)/x of each block's
    largest entry (blocks of 32 along the last axis), averaged over the blocks."""
    top = np.argmax(np.abs(x), axis=-1)
    rows = np.arange(x.shape[0])
    law = p.conditional_law(x)
    exact = (law.mean()[rows, top] - x[rows, top]) / x[rows, top]
    key = rng.derive_key("test_formats.bias", p.label)
    rel = np.stack([(p.apply(x, key, t)[rows, top] - x[rows, top]) / x[rows, top] for t in range(draws)])
    per_block = rel.mean(axis=0)
    return float(exact.mean()), float(per_block.mean()), float(per_block.std() / math.sqrt(per_block.size))


@pytest.mark.parametrize("name", ["float4_e2m1fn", "float8_e4m3fn"])
def test_scale_rule_contrast(name):
    """Stochastic rounding, Gaussian blocks of 32: with the OCP scale the largest value of a block is biased
    towards zero (clipped), by many standard errors; with the ceil scale its error has mean zero."""
    g = np.random.default_rng(12)
    x = g.standard_normal((2048, 32))
    ocp = top_entry_relative_bias(F.MX(name, scale_rule="ocp", mode="stochastic"), x, 200)
    ceil = top_entry_relative_bias(F.MX(name, scale_rule="ceil", mode="stochastic"), x, 200)
    print(f"\n{name}: relative bias of the block maximum, OCP {ocp[0]:.5f} (MC {ocp[1]:.5f} ± {ocp[2]:.5f}), "
          f"ceil {ceil[0]:.2e} (MC {ceil[1]:.5f} ± {ceil[2]:.5f})")
    assert ocp[0] < 0 and ocp[1] < -10 * ocp[2]  # biased, and measurably so
    assert abs(ocp[1] - ocp[0]) < 5 * ocp[2]  # the draws agree with the exact law
    assert abs(ceil[0]) < 1e-14 and abs(ceil[1]) < 5 * ceil[2]  # unbiased


# ---------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("build, match", [
    (lambda: F.MX("float8_e4m3"), "element must be one of"),
    (lambda: F.MX("float4_e2m1fn", block=0), "block must be an integer >= 1"),
    (lambda: F.MX("float4_e2m1fn", scale_rule="floor"), "scale_rule must be one of"),
    (lambda: F.MX("float4_e2m1fn", mode="up"), "mode must be one of"),
    (lambda: F.MX("float4_e2m1fn", axis=1.5), "axis must be an integer"),
    (lambda: F.TensorScaled("bfloat16"), "format must be one of"),
    (lambda: F.TensorScaled("float8_e4m3fn", amax=0.0), "amax must be 'current' or a finite number > 0"),
    (lambda: F.TensorScaled("float8_e4m3fn", amax="delayed"), "amax must be 'current'"),
    (lambda: F.NVFP4(scale_rule="ocp"), "scale_rule must be one of"),
    (lambda: F.MX("float4_e2m1fn", axis=2).apply(np.ones((3, 4)), 0, 0), r"axis must be an integer in \[-2, 1\]"),
    (lambda: F.MX("float4_e2m1fn").apply(np.ones(4, dtype=int), 0, 0), "float32 or float64"),
    (lambda: F.element_round(np.ones(3), "float5"), "fmt must be one of"),
])
def test_refusals_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# ---------------------------------------------------------------------------
# the compiled form of MX: a BlockOp cut along MX's axis, the bits of the references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ELEMENTS)
@pytest.mark.parametrize("rule", ["ocp", "ceil"])
def test_mx_compiled_gives_the_bits_of_the_spec_reference(name, rule):
    """MX(axis=0).compiled() — a BlockOp whose numba function is fbsgd.formats.mx_block — on one-column
    messages (the Section 7 chain's: one value per sample) against the specification reference written
    here (with ml_dtypes' casts), nearest and stochastic, float64 and float32, blocks of 32, 7 and 1, on
    the special blocks of mx_data (zeros, powers of two, tiny and huge scales, NaN, inf, partial blocks)."""
    x = mx_data(3, rows=400, cols=515)
    for block in (32, 7, 1):
        for mode in ("nearest", "stochastic"):
            op = F.MX(name, block, rule, mode, axis=0).compiled()
            assert isinstance(op, P.BlockOp) and op.block == block and op.per_sample
            for dtype in (np.float64, np.float32):
                with np.errstate(over="ignore", invalid="ignore"):
                    col = x.reshape(-1, 1)[: 60_000 if block > 1 else 20_000].astype(dtype)
                    got = op.apply(col, 17, 5)
                    ref = ref_mx(col.astype(np.float64), name, rule, block, axis=0, mode=mode, key=17, step=5)
                assert got.dtype == dtype
                assert_bits(got, ref.astype(dtype))
            P.check_compiled(F.MX(name, block, rule, mode, axis=0))  # and against the kind's own apply


def test_mx_compiled_cuts_wide_messages_as_apply_does_along_either_axis():
    """On (samples, features) messages wider than one column, the BlockOp of MX(axis=0) blocks down each
    feature and that of MX(axis=-1) along each sample, as MX.apply and the specification reference do."""
    x = mx_data(5, rows=97, cols=515)  # 16 blocks of 32 and a partial one along a row; 3 + 1 down a column
    for axis in (0, -1):
        for mode in ("nearest", "stochastic"):
            p = F.MX("float8_e4m3fn", 32, "ocp", mode, axis=axis)
            with np.errstate(over="ignore", invalid="ignore"):
                got = p.compiled().apply(x, 9, 3)
                ref = ref_mx(x, "float8_e4m3fn", "ocp", 32, axis=axis, mode=mode, key=9, step=3)
            assert_bits(got, ref)
            assert_bits(got, p.apply(x, 9, 3))
            P.check_compiled(p)


def test_the_per_tensor_kinds_do_not_compile():
    for p in (F.TensorScaled("float8_e4m3fn"), F.NVFP4(axis=0)):
        with pytest.raises(NotImplementedError, match="reference path"):
            p.compiled()
