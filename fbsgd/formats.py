"""Scaled low-precision formats as trained: per-tensor FP8 scaling, OCP Microscaling (MX) blocks, NVFP4.

:mod:`fbsgd.lowprec` rounds one number at a time, unscaled.  Low-precision training does not: it
divides a tensor (or a block of it) by a scale chosen from its absolute maximum, rounds the
quotients to a narrow element format and multiplies back.  This module gives the element
formats that recipes use and three scaled kinds, each a :class:`fbsgd.perturbations.Perturbation`
that describes itself (``law``, ``conditional_law``, ``label``).

Element formats
---------------
:data:`ELEMENT_FORMATS`: ``float8_e4m3fn`` (448), ``float8_e5m2`` (57344), ``float6_e2m3fn`` (7.5),
``float6_e3m2fn`` (28), ``float4_e2m1fn`` (6), all with subnormals (the two float8 formats are
lowprec's own; the float6 and float4 formats are :class:`fbsgd.lowprec.Format` values with the
same parameters as ``ml_dtypes``).  :func:`element_round` rounds to any of them, to the formats of
:data:`fbsgd.lowprec.FORMATS`, or to the scale format ``float8_e8m0fnu`` (powers of two 2^-127..2^127):
to nearest, ties to even, or stochastically (up with probability (abs(x) − lo)/(hi − lo), decided
exactly, entry i drawing ``rng.uniform01_scalar(key, step, i)``, as :func:`fbsgd.lowprec.round_array`).

What happens outside the range (``saturate=None``, the format's own cast, as ``ml_dtypes`` casts):

* ``float8_e4m3fn``: abs(x) that rounds above 448, and ±inf, become NaN (the format has no inf);
* ``float8_e5m2``: abs(x) that rounds above 57344 becomes ±inf; ±inf stays ±inf;
* ``float6_e2m3fn``, ``float6_e3m2fn``, ``float4_e2m1fn`` (no inf, no NaN): abs(x) above the largest
  value, and ±inf, saturate to ±max;
* ``float8_e8m0fnu`` (no sign, no zero, no inf): x ≤ 0 (±0 included) and NaN give NaN; 0 < x < 2^-127
  gives 2^-127; x that rounds above 2^127 gives NaN; ties round up (3 → 4, as ml_dtypes).
* NaN stays NaN everywhere.  (ml_dtypes casts NaN to −0 in the float6 and float4 formats, which
  have no NaN; here a NaN stays visible: a diverged run must not turn into zeros.)

``saturate=True`` clamps instead: ±max for every finite overflow and for ±inf (the "satfinite"
conversion of the scaled recipes); ``saturate=False`` is refused for the formats without inf and
NaN.  In stochastic mode values above the largest finite value are rounded as in nearest mode.

The scaled kinds
----------------
Each computes, in float64, a scale per tensor or per block, the scaled values y (clamped to the
element format's ±max: every scaled kind saturates), rounds y to the element format (nearest or
stochastic), and multiplies back; the result is returned in x's dtype (float32 or float64).  A
block is ``block`` consecutive entries along ``axis`` (``axis=-1``: along the features of a
sample; ``axis=0``: across the batch, for a message with one value per sample); a trailing
partial block (the last n mod block entries) has its own scale from its own entries, which is
what padding it with zeros gives (Microsoft's MX emulation pads with zeros).

* :class:`TensorScaled` — per-tensor amax scaling, the FP8 recipes (E4M3 forward, E5M2 backward).
  Rule (Transformer Engine's *current scaling*: ``scale = fp8_max / amax``, ``amax == 0 → scale 1``,
  cast ``x·scale``, dequantised with ``scale⁻¹``; ``tests/pytorch/references/ref_per_tensor_cs.py``
  of NVIDIA/TransformerEngine): with s = amax / max_finite (s = 1 when amax = 0),
  P(x) = round(clamp(x / s)) · s.  ``amax="current"`` takes amax = max abs(x) of the tensor (then no
  value is clamped); a positive number fixes amax (values above it saturate, as a stale amax of
  delayed scaling would).  ``pow2=True``: s = 2^⌈log₂(amax / max_finite)⌉ (TE's ``pow_2_scales``,
  the encode scale rounded down to a power of two), so scaling is exact.  TE computes in float32;
  here in float64.
* :class:`MX` — the OCP Microscaling formats MXFP8 (E4M3, E5M2), MXFP6 (E2M3, E3M2), MXFP4 (E2M1):
  one power-of-two scale X = 2^k (E8M0) per block of ``block`` (32) values.

  - ``scale_rule="ocp"``: k = ⌊log₂ amax⌋ − emax_elem (emax_elem: exponent of the element
    format's largest value: 8, 15, 2, 4, 2), elements clamped to ±max (OCP MX v1.0 §6.3, as
    implemented by Microsoft's reference emulation ``microxcaling`` (``mx/mx_ops.py``:
    ``_shared_exponents``, ``_quantize_mx`` with ``saturate_normals=True``, "must be True for correct
    MX conversion") and by ``gfloat`` 0.5.2 (``compute_scale_amax``, ``quantize_block``)).  amax / X
    lies in [2^emax, 2^(emax+1)), above the largest element when amax's significand exceeds the
    element's largest one (E4M3: 1.75, E2M1: 1.5, the others 2 − 2^-m): those values are clipped,
    a biased error, by up to 1/8 (E4M3) or 1/4 (E2M1) of the value.
  - ``scale_rule="ceil"``: k = ⌈log₂(amax / max_elem)⌉ exactly, the smallest power of two with
    amax / X ≤ max_elem, so no value is clipped (Transformer Engine's MXFP8 ``float_to_e8m0(amax ·
    max_norm_rcp)``, a conversion rounding toward +∞, "RCEIL"; TE rounds the product in float32,
    here the rule is exact).
  - both: the scale's clamping to E8M0's range: k < −127 → −127 (elements of tiny blocks then
    round to subnormals or zero); k > 127 → the block is NaN (E8M0's NaN, as microxcaling; gfloat
    clips to 127 instead).  A block of zeros: k = −127, the zeros keep their signs.  A block with
    a NaN or ±inf: every entry NaN (its scale is NaN; microxcaling).  Elements keep the element
    format's subnormals.
* :class:`NVFP4` — E2M1 elements in blocks of 16 with an E4M3 block scale and an FP32 per-tensor
  scale.  Rule (Transformer Engine's NVFP4 reference quantizer, default 1×16 path,
  ``transformer_engine/pytorch/custom_recipes/quantization_ref_nvfp4.py``; NVIDIA, "Pretraining
  Large Language Models with NVFP4", arXiv:2509.25149), in float64 (TE: float32):
  s_enc = min(6·448 / amax_tensor, DBL_MAX), s_dec = 1 / s_enc; per block d = e4m3(min(amax_b ·
  (s_enc · (1/6)), 448)) (``scale_rule="nearest"``: to nearest, TE's rule; ``"ceil"``: rounded up to
  the next E4M3 value, our variant, which keeps every value in range); e_b = min(1 / (d · s_dec),
  DBL_MAX); P(x) = (e2m1(clamp(x · e_b, ±6)) · d) · s_dec.  With the nearest block scale a block's
  largest values can be clipped (d rounded down by up to 1/16); a block whose scale rounds to 0
  gives zeros.  A tensor with a NaN or ±inf gives NaN everywhere.

Stochastic mode rounds the elements only; the scales are deterministic functions of x.  Given x,
P(x) is therefore exact to describe: each entry takes one of the two element-format neighbours of
its scaled value, times its scale (``conditional_law``).  Zero mean given x (``law.zero_mean``)
holds only where nothing is clipped: stochastic mode with ``amax="current"``, ``scale_rule="ceil"``
(MX and NVFP4); never in nearest mode.  Nearest mode never moves a value by more than itself
(``|δ| ≤ |x|``); stochastic mode has no bound of the form bound + c·abs(x) (the scale depends on the
other entries).

Compiled: ``MX`` describes itself as a :class:`fbsgd.perturbations.BlockOp` whose function,
:func:`mx_block`, gives the bits of its ``apply``, cut as ``apply`` cuts (``axis=0``: BlockOp axis 0,
blocks down each feature over consecutive samples; ``axis=-1``: BlockOp axis -1, blocks along each
sample's features).  ``TensorScaled`` and ``NVFP4`` do not compile (``compiled()`` says why) and run
on the reference path (:mod:`fbsgd.passes`, :func:`fbsgd.optimizers.train`): their scale is one
number for the whole message, which a BlockOp (blocks of one row or one column) cannot express.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from fbsgd import laws, lowprec, rng
from fbsgd import perturbations as P

__all__ = [
    "ELEMENT_FORMATS",
    "E8M0",
    "element_format",
    "element_round",
    "mx_scales",
    "mx_quantize",
    "tensor_scaled_quantize",
    "nvfp4_quantize",
    "TensorScaled",
    "MX",
    "NVFP4",
    "MX_NAMES",
]

_Format = lowprec.Format

ELEMENT_FORMATS: dict[str, lowprec.Format] = {
    "float8_e4m3fn": lowprec.FORMATS["float8_e4m3fn"],
    "float8_e5m2": lowprec.FORMATS["float8_e5m2"],
    # no inf and no NaN: every code is a number (ml_dtypes float6_e2m3fn, float6_e3m2fn, float4_e2m1fn)
    "float6_e2m3fn": _Format("float6_e2m3fn", 5, 2, 3, 1, 7.5, False),
    "float6_e3m2fn": _Format("float6_e3m2fn", 6, 3, 2, 3, 28.0, False),
    "float4_e2m1fn": _Format("float4_e2m1fn", 7, 2, 1, 1, 6.0, False),
}
"""The element formats of the scaled kinds (the MX element formats; E4M3 and E5M2 for the FP8 recipes)."""

E8M0 = "float8_e8m0fnu"
"""The name of the scale format: 2^k for k = −127..127, and NaN (no sign, no zero, no inf)."""

_E8M0_MIN, _E8M0_MAX = -127, 127
_NO_SPECIALS = frozenset({"float6_e2m3fn", "float6_e3m2fn", "float4_e2m1fn"})  # neither inf nor NaN: saturate
_MODES = ("nearest", "stochastic")
_DBL_MAX = float(np.finfo(np.float64).max)

MX_NAMES = {
    "float8_e4m3fn": "MXFP8 E4M3",
    "float8_e5m2": "MXFP8 E5M2",
    "float6_e2m3fn": "MXFP6 E2M3",
    "float6_e3m2fn": "MXFP6 E3M2",
    "float4_e2m1fn": "MXFP4 E2M1",
}
"""The OCP name of the MX format with each element format."""


def element_format(name) -> lowprec.Format:
    """The :class:`fbsgd.lowprec.Format` called ``name`` among :data:`ELEMENT_FORMATS` (a Format is returned unchanged)."""
    if isinstance(name, lowprec.Format):
        return name
    try:
        return ELEMENT_FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"element format must be one of {list(ELEMENT_FORMATS)}, got {name!r}") from None


def _emax(f: lowprec.Format) -> int:
    """Exponent of the largest finite value, ⌊log₂ max_finite⌋ (emax_elem of the MX specification)."""
    return math.frexp(f.max_finite)[1] - 1


def _any_format(fmt):
    """A Format of ELEMENT_FORMATS or lowprec.FORMATS, or the string E8M0."""
    if isinstance(fmt, lowprec.Format) or fmt == E8M0:
        return fmt
    if isinstance(fmt, str) and fmt in ELEMENT_FORMATS:
        return ELEMENT_FORMATS[fmt]
    if isinstance(fmt, str) and fmt in lowprec.FORMATS:
        return lowprec.FORMATS[fmt]
    allowed = sorted(set(ELEMENT_FORMATS) | set(lowprec.FORMATS) | {E8M0})
    raise ValueError(f"fmt must be one of {allowed}, got {fmt!r}")


def _float_array(x, owner: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{owner}: x must be a float32 or float64 array, got dtype {a.dtype}")
    return a


def _mode(owner: str, mode) -> str:
    if mode not in _MODES:
        raise ValueError(f"{owner}: mode must be one of {list(_MODES)}, got {mode!r}")
    return mode


# ---------------------------------------------------------------------------
# element rounding
# ---------------------------------------------------------------------------


def _e8m0_round(x: np.ndarray, mode: str, key, step, saturate: bool) -> np.ndarray:
    """x rounded to E8M0 (see the module), in x's dtype."""
    a = x.astype(np.float64)
    pos = a > 0  # NaN, ±0 and negatives: NaN
    finite = np.isfinite(a)
    with np.errstate(invalid="ignore"):
        f, e = np.frexp(np.where(pos & finite, a, 1.0))  # a = f·2^e, 0.5 <= f < 1: 2^(e-1) <= a < 2^e
    if mode == "stochastic":
        u = rng.uniform(key, step, a.shape)
        up = u < 2.0 * f - 1.0  # p = (a − 2^(e−1)) / 2^(e−1) = 2f − 1, exact
        # above the largest value: as in nearest mode
        up = np.where(a > 2.0**_E8M0_MAX, f >= 0.75, up)
    else:
        up = f >= 0.75  # ties (f = 0.75) up, as ml_dtypes
    k = (e - 1 + up).astype(np.int64)
    k = np.where(a < 2.0**_E8M0_MIN, _E8M0_MIN, k)  # no zero: flushed up to the smallest value
    k = np.where(finite, k, _E8M0_MAX + 1)  # +inf overflows
    over = k > _E8M0_MAX
    if saturate:
        k = np.minimum(k, _E8M0_MAX)
        over = np.zeros_like(over)
    out = np.ldexp(1.0, np.clip(k, _E8M0_MIN, _E8M0_MAX))
    out = np.where(pos & ~over, out, np.nan)
    return out.astype(x.dtype)


def element_round(x, fmt, mode: str = "nearest", key: int = 0, step: int = 0, *, saturate: bool | None = None) -> np.ndarray:
    """A new array (x's shape and float32/float64 dtype) of ``x`` rounded to the format ``fmt``.

    ``fmt``: a name of :data:`ELEMENT_FORMATS`, of :data:`fbsgd.lowprec.FORMATS`, :data:`E8M0`, or a
    :class:`fbsgd.lowprec.Format`.  ``mode``: "nearest" (ties to even) or "stochastic" (entry i, in C
    order, draws ``rng.uniform01_scalar(key, step, i)``).  ``saturate``: None, the format's own cast
    (ml_dtypes' behaviour, see the module); True, ±max for finite overflow and ±inf; False,
    overflow to inf or NaN (refused for the float6 and float4 formats, which have neither).
    """
    f = _any_format(fmt)
    _mode("element_round", mode)
    x = _float_array(x, "element_round")
    if saturate not in (None, True, False):
        raise ValueError(f"element_round: saturate must be None, True or False, got {saturate!r}")
    if f == E8M0:
        return _e8m0_round(x, mode, key, step, bool(saturate))
    if saturate is False and f.name in _NO_SPECIALS:
        raise ValueError(f"element_round: saturate=False is not possible for {f.name}, which has no inf and no NaN "
                         "to overflow to; use saturate=None or True")
    if saturate or f.name in _NO_SPECIALS:
        x = np.clip(x, -f.max_finite, f.max_finite)  # NaN stays NaN, ±inf becomes ±max
    return lowprec.round_array(x, f, mode, key, step)


# ---------------------------------------------------------------------------
# blocks and scales
# ---------------------------------------------------------------------------


def _check_axis(owner: str, axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"{owner}: axis must be an integer in [{-ndim}, {ndim - 1}] for an array with {ndim} "
                         f"dimension(s), got {axis!r}")
    return int(axis) % ndim


def _block_amax(a: np.ndarray, axis: int, block: int, *, per_entry: bool) -> np.ndarray:
    """max abs(a) over blocks of ``block`` consecutive entries along ``axis`` (a trailing partial block over its
    own entries); NaN if the block holds a NaN.  ``per_entry``: broadcast back to a's shape (each entry gets
    its block's amax); else the shape of a with the axis replaced by the number of blocks."""
    m = np.moveaxis(np.abs(a), axis, -1)
    n = m.shape[-1]
    nb = -(-n // block)
    pad = nb * block - n
    if pad:
        m = np.concatenate([m, np.zeros(m.shape[:-1] + (pad,))], axis=-1)
    amax = m.reshape(m.shape[:-1] + (nb, block)).max(axis=-1)  # a NaN propagates
    if per_entry:
        amax = np.repeat(amax, block, axis=-1)[..., :n]
    return np.moveaxis(amax, -1, axis)


def _ceil_exponent(amax: np.ndarray, max_finite: float) -> np.ndarray:
    """⌈log₂(amax / max_finite)⌉ exactly, for amax > 0 finite: with amax = fa·2^ea and max = fm·2^em
    (0.5 ≤ fa, fm < 1) the ratio lies in (2^(ea−em−1), 2^(ea−em)] if fa ≤ fm, else in (2^(ea−em), 2^(ea−em+1))."""
    with np.errstate(invalid="ignore"):
        fa, ea = np.frexp(amax)
    fm, em = math.frexp(max_finite)
    return ea.astype(np.int64) - em + (fa > fm)


def _mx_exponents(amax: np.ndarray, f: lowprec.Format, rule: str):
    """(k, bad): the E8M0 exponent of each block's scale X = 2^k, clamped below at −127, and the blocks
    that are NaN (a NaN or inf in the block, or k > 127)."""
    with np.errstate(invalid="ignore"):
        _, e = np.frexp(amax)
    if rule == "ocp":
        k = e.astype(np.int64) - 1 - _emax(f)  # ⌊log₂ amax⌋ − emax_elem
    else:
        k = _ceil_exponent(amax, f.max_finite)
    k = np.where(amax == 0, _E8M0_MIN, k)
    k = np.maximum(k, _E8M0_MIN)
    bad = ~np.isfinite(amax) | (k > _E8M0_MAX)
    return np.where(bad, 0, k), bad


_SCALE_RULES = ("ocp", "ceil")


def _block_args(owner, element, block, scale_rule):
    if not isinstance(element, str) or element not in ELEMENT_FORMATS:
        raise ValueError(f"{owner}: element must be one of {list(ELEMENT_FORMATS)}, got {element!r}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"{owner}: block must be an integer >= 1, got {block!r}")
    if scale_rule not in _SCALE_RULES:
        raise ValueError(f"{owner}: scale_rule must be one of {list(_SCALE_RULES)}, got {scale_rule!r}")
    return ELEMENT_FORMATS[element]


def mx_scales(x, element: str, block: int = 32, scale_rule: str = "ocp", axis: int = -1) -> np.ndarray:
    """The MX scales X = 2^k (float64) of the blocks of ``x``: x's shape with ``axis`` replaced by the
    number of blocks (⌈n / block⌉); NaN for a NaN block.  See :class:`MX` for the rules."""
    f = _block_args("mx_scales", element, block, scale_rule)
    x = _float_array(x, "mx_scales")
    x = x.reshape(1) if x.ndim == 0 else x
    ax = _check_axis("mx_scales", axis, x.ndim)
    k, bad = _mx_exponents(_block_amax(x.astype(np.float64), ax, int(block), per_entry=False), f, scale_rule)
    return np.where(bad, np.nan, np.ldexp(1.0, k))


class _Plan:
    """What a scaled kind does to a tensor before and after the element rounding:
    P(x) = (round(y) · a) · b, NaN where ``bad``; y is already clamped to the element format's range."""

    __slots__ = ("y", "fmt", "a", "b", "bad")

    def __init__(self, y, fmt, a, b=None, bad=None):
        self.y, self.fmt, self.a, self.b, self.bad = y, fmt, a, b, bad

    def decode(self, q: np.ndarray) -> np.ndarray:
        out = q * self.a
        if self.b is not None:
            out = out * self.b
        if self.bad is not None:
            out = np.where(self.bad, np.nan, out)
        return out

    def round(self, mode: str, key, step) -> np.ndarray:
        return self.decode(lowprec.round_array(self.y, self.fmt, mode, key, step))


def _mx_plan(x64: np.ndarray, f, block: int, rule: str, axis: int) -> _Plan:
    k, bad = _mx_exponents(_block_amax(x64, axis, block, per_entry=True), f, rule)
    X = np.ldexp(1.0, k)  # 2^k, exact
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.clip(x64 / X, -f.max_finite, f.max_finite)  # division by a power of two: exact
    return _Plan(y, f, X, None, bad)


def _tensor_plan(x64: np.ndarray, f, amax, pow2: bool) -> _Plan:
    if amax == "current":
        a = float(np.max(np.abs(x64))) if x64.size else 0.0
        bad = None if math.isfinite(a) else np.ones(x64.shape, dtype=bool)
        a = a if math.isfinite(a) else 0.0
    else:
        a, bad = float(amax), None
    if a == 0.0:
        s = 1.0
    elif pow2:
        k = int(_ceil_exponent(np.array(a), f.max_finite))
        s = math.ldexp(1.0, min(max(k, -1022), 1023))
    else:
        s = a / f.max_finite
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.clip(x64 / s, -f.max_finite, f.max_finite)
    return _Plan(y, f, s, None, bad)


_E4M3 = ELEMENT_FORMATS["float8_e4m3fn"]
_E2M1 = ELEMENT_FORMATS["float4_e2m1fn"]
NVFP4_BLOCK = 16


def _nvfp4_plan(x64: np.ndarray, rule: str, axis: int) -> _Plan:
    amax_t = float(np.max(np.abs(x64))) if x64.size else 0.0
    if not math.isfinite(amax_t):
        return _Plan(np.zeros_like(x64), _E2M1, 0.0, None, np.ones(x64.shape, dtype=bool))
    with np.errstate(divide="ignore"):
        s_enc = min(6.0 * 448.0 / amax_t if amax_t > 0 else math.inf, _DBL_MAX)
    s_dec = 1.0 / s_enc
    amax_b = _block_amax(x64, axis, NVFP4_BLOCK, per_entry=True)
    t = np.minimum(amax_b * (s_enc * (1.0 / 6.0)), 448.0)
    if rule == "nearest":
        d = lowprec.round_array(t, _E4M3, "nearest")
    else:
        d = laws.round_neighbours(t, _E4M3)[1]  # the E4M3 value at or above t
    with np.errstate(divide="ignore"):
        e_b = np.minimum(1.0 / (d * s_dec), _DBL_MAX)
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.clip(x64 * e_b, -6.0, 6.0)
    return _Plan(y, _E2M1, d, s_dec, None)


def mx_quantize(x, element: str, block: int = 32, scale_rule: str = "ocp", mode: str = "nearest", axis: int = -1,
                key: int = 0, step: int = 0) -> np.ndarray:
    """``x`` through the MX format with element format ``element`` (:class:`MX`), in x's dtype."""
    return MX(element, block, scale_rule, mode, axis).apply(x, key, step)


def tensor_scaled_quantize(x, fmt: str, mode: str = "nearest", amax="current", pow2: bool = False, key: int = 0,
                           step: int = 0) -> np.ndarray:
    """``x`` through per-tensor amax scaling to ``fmt`` (:class:`TensorScaled`), in x's dtype."""
    return TensorScaled(fmt, mode, amax, pow2).apply(x, key, step)


_NVFP4_RULES = ("nearest", "ceil")


def nvfp4_quantize(x, mode: str = "nearest", axis: int = -1, scale_rule: str = "nearest", key: int = 0,
                   step: int = 0) -> np.ndarray:
    """``x`` through NVFP4 (:class:`NVFP4`), in x's dtype."""
    return NVFP4(mode, axis, scale_rule).apply(x, key, step)


def _amax_arg(owner, amax):
    if isinstance(amax, str):
        if amax != "current":
            raise ValueError(f"{owner}: amax must be 'current' or a finite number > 0, got {amax!r}")
        return amax
    if isinstance(amax, bool) or not isinstance(amax, (int, float, np.integer, np.floating)) \
            or not math.isfinite(amax) or amax <= 0:
        raise ValueError(f"{owner}: amax must be 'current' or a finite number > 0, got {amax!r}")
    return float(amax)


# ---------------------------------------------------------------------------
# the perturbation kinds
# ---------------------------------------------------------------------------


def _law(mode: str, zero_mean: bool) -> P.Law:
    if mode == "nearest":  # deterministic given x, hence biased; round to nearest never moves a value by more than itself
        return P.Law("input_dependent", False, False, per_sample=True, bound=0.0, relative_bound=1.0)
    return P.Law("input_dependent", False, zero_mean, per_sample=True, bound=None, relative_bound=None)


class _Scaled(P.Perturbation):
    """Shared by the scaled kinds: ``_plan(x64)`` says what they do around the element rounding."""

    mode: str

    def _plan(self, x64: np.ndarray) -> _Plan:
        raise NotImplementedError

    def apply(self, x, key, step):
        x = _float_array(x, type(self).__name__)
        shape = x.shape
        if x.size == 0:
            return x.copy()
        x1 = x.reshape(1) if x.ndim == 0 else x
        out = self._plan(x1.astype(np.float64)).round(self.mode, key, step)
        return out.astype(x.dtype).reshape(shape)

    def compiled(self):
        raise NotImplementedError(
            f"the compiled engine cannot run {self!r}: it rounds one entry at a time, and this kind needs the "
            "absolute maximum of a block or tensor before it rounds; run it on the reference path "
            "(fbsgd.optimizers.train, fbsgd.passes)")

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """Exact.  The scales are functions of x; nearest: one point, P(x); stochastic: each entry is one
        of the two element-format neighbours lo, hi of its scaled value y (:func:`fbsgd.laws.round_neighbours`),
        hi with probability (abs(y) − abs(lo))/(abs(hi) − abs(lo)), times its scale.  Not elementwise: an entry's law
        depends on its block (tensor)."""
        x = laws.as_input(x)
        if self.mode == "nearest":
            return laws.point_law(x, np.reshape(self.apply(x, 0, 0), x.shape), how=f"{self.label}, one point",
                                  elementwise=False)
        plan = self._plan(x.reshape(1) if x.ndim == 0 else x)
        lo, hi, p = laws.round_neighbours(plan.y, plan.fmt)
        pts = np.stack([plan.decode(lo), plan.decode(hi)], axis=-1).reshape(x.shape + (2,))
        prob = np.stack([1.0 - p, p], axis=-1).reshape(x.shape + (2,))
        return laws.FiniteLaw(x, pts, prob, how=f"{self.label}, two points", elementwise=False)


def _axis_field(owner, axis) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"{owner}: axis must be an integer (-1: along the features of a sample, 0: across the batch), "
                         f"got {axis!r}")
    return int(axis)


@dataclass(frozen=True)
class TensorScaled(_Scaled):
    """Per-tensor amax scaling to an FP8 (or narrower) element format: P(x) = round(clamp(x / s)) · s with
    s = amax / max_finite (Transformer Engine's current scaling; see the module for the exact rule).

    ``format``: an element format (:data:`ELEMENT_FORMATS`; the FP8 recipes use "float8_e4m3fn" forward
    and "float8_e5m2" backward).  ``mode``: "nearest" or "stochastic" (the elements; the scale is
    deterministic).  ``amax``: "current" (max abs(x) of the message at this step: nothing is clamped,
    stochastic mode is unbiased given x) or a fixed number > 0 (values above it saturate).  ``pow2``:
    the scale rounded up to a power of two (exact scaling)."""

    format: str
    mode: str = "nearest"
    amax: object = "current"
    pow2: bool = False

    def __post_init__(self):
        if not isinstance(self.format, str) or self.format not in ELEMENT_FORMATS:
            raise ValueError(f"TensorScaled: format must be one of {list(ELEMENT_FORMATS)}, got {self.format!r}")
        _mode("TensorScaled", self.mode)
        object.__setattr__(self, "amax", _amax_arg("TensorScaled", self.amax))
        if not isinstance(self.pow2, (bool, np.bool_)):
            raise ValueError(f"TensorScaled: pow2 must be True or False, got {self.pow2!r}")
        object.__setattr__(self, "pow2", bool(self.pow2))

    def _plan(self, x64):
        return _tensor_plan(x64, ELEMENT_FORMATS[self.format], self.amax, self.pow2)

    @property
    def law(self):
        return _law(self.mode, self.mode == "stochastic" and self.amax == "current")

    @property
    def label(self):
        amax = "" if self.amax == "current" else f" amax={self.amax:g}"
        return f"{self.format} tensor-scaled{' pow2' if self.pow2 else ''}{amax} {self.mode}"


@njit
def mx_block(x, u, numbers, out):
    """One block of :class:`MX` as a :class:`fbsgd.perturbations.BlockOp` function: ``numbers`` = (man_bits,
    emin, max_finite, emax_elem of the element format, scale rule (0: "ocp", 1: "ceil"), stochastic (0/1));
    the block's scale X = 2^k from its amax, the quotients x / X clamped to ±max_finite and rounded with
    :func:`fbsgd.lowprec.round_scalar` (to nearest, or stochastically with u), times X; NaN for a block
    with a NaN or ±inf or with k > 127.  Gives the bits of :class:`MX`'s ``apply`` on the block."""
    man_bits, emin, max_finite = np.int64(numbers[0]), np.int64(numbers[1]), numbers[2]
    emax, ceil, stochastic = np.int64(numbers[3]), numbers[4] != 0.0, numbers[5] != 0.0
    n = x.size
    amax = 0.0
    finite = True
    for i in range(n):
        a = abs(x[i])
        if not (a <= 1.7976931348623157e308):
            finite = False
        elif a > amax:
            amax = a
    if not finite:
        for i in range(n):
            out[i] = np.nan
        return
    if amax == 0.0:
        k = np.int64(_E8M0_MIN)
    else:
        fa, ea = math.frexp(amax)
        if ceil:
            fm, em = math.frexp(max_finite)
            k = np.int64(ea) - np.int64(em) + (1 if fa > fm else 0)
        else:
            k = np.int64(ea) - 1 - emax
        k = max(k, np.int64(_E8M0_MIN))
    if k > _E8M0_MAX:
        for i in range(n):
            out[i] = np.nan
        return
    X = math.ldexp(1.0, k)
    for i in range(n):
        y = min(max(x[i] / X, -max_finite), max_finite)
        out[i] = lowprec.round_scalar(y, man_bits, emin, max_finite, False, u[i] if stochastic else -1.0) * X


@dataclass(frozen=True)
class MX(_Scaled):
    """An OCP Microscaling format: blocks of ``block`` values along ``axis`` share one power-of-two
    scale X = 2^k (E8M0); each value is stored as X · (an ``element`` value).

    ``element``: "float8_e4m3fn", "float8_e5m2" (MXFP8), "float6_e2m3fn", "float6_e3m2fn" (MXFP6),
    "float4_e2m1fn" (MXFP4).  ``scale_rule``: "ocp" (the specification's k = ⌊log₂ amax⌋ − emax_elem,
    the block's largest values can be clipped: biased) or "ceil" (k = ⌈log₂(amax / max_elem)⌉: nothing
    is clipped).  ``mode``: "nearest" or "stochastic" (the elements).  ``axis``: the axis along which
    blocks are formed (-1: the features of a sample; 0: across the batch); a trailing partial block has
    its own scale.  See the module for the scale's clamping, zeros and NaN."""

    element: str
    block: int = 32
    scale_rule: str = "ocp"
    mode: str = "nearest"
    axis: int = -1

    def __post_init__(self):
        _block_args("MX", self.element, self.block, self.scale_rule)
        object.__setattr__(self, "block", int(self.block))
        _mode("MX", self.mode)
        object.__setattr__(self, "axis", _axis_field("MX", self.axis))

    def compiled(self):
        """A :class:`fbsgd.perturbations.BlockOp` with :func:`mx_block` cutting the message as :meth:`apply`
        does: ``axis=0``, blocks of ``block`` consecutive samples down each feature (BlockOp axis 0);
        ``axis=-1`` (or 1), blocks along each sample's features (BlockOp axis -1; on the Section 7 chain's
        one-value-per-sample messages these are single entries).  Other axes (messages of more than two
        dimensions) do not compile."""
        if self.axis not in (0, -1, 1):
            raise NotImplementedError(f"the compiled engine cannot run {self!r}: its messages have two dimensions "
                                      "(samples, features); axis must be 0 or -1")
        f = ELEMENT_FORMATS[self.element]
        numbers = (f.man_bits, f.emin, f.max_finite, _emax(f), float(self.scale_rule == "ceil"),
                   float(self.mode == "stochastic"))
        return P.BlockOp(mx_block, self.block, numbers, axis=0 if self.axis == 0 else -1)

    def _plan(self, x64):
        ax = _check_axis("MX", self.axis, x64.ndim)
        return _mx_plan(x64, ELEMENT_FORMATS[self.element], self.block, self.scale_rule, ax)

    @property
    def law(self):
        return _law(self.mode, self.mode == "stochastic" and self.scale_rule == "ceil")

    @property
    def label(self):
        block = "" if self.block == 32 else f" block {self.block}"
        return f"{MX_NAMES[self.element]}{block} {self.scale_rule} {self.mode}"


@dataclass(frozen=True)
class NVFP4(_Scaled):
    """NVIDIA's NVFP4: E2M1 values in blocks of 16 along ``axis``, each block with an E4M3 scale, the
    tensor with an FP32 scale (Transformer Engine's reference rule; see the module).

    ``mode``: "nearest" or "stochastic" (the elements; NVFP4 recipes round gradients stochastically).
    ``scale_rule``: "nearest" (the block scale rounded to nearest, as TE: a block's largest values can be
    clipped) or "ceil" (rounded up: nothing is clipped)."""

    mode: str = "nearest"
    axis: int = -1
    scale_rule: str = "nearest"

    def __post_init__(self):
        _mode("NVFP4", self.mode)
        object.__setattr__(self, "axis", _axis_field("NVFP4", self.axis))
        if self.scale_rule not in _NVFP4_RULES:
            raise ValueError(f"NVFP4: scale_rule must be one of {list(_NVFP4_RULES)}, got {self.scale_rule!r}")

    def _plan(self, x64):
        return _nvfp4_plan(x64, self.scale_rule, _check_axis("NVFP4", self.axis, x64.ndim))

    @property
    def law(self):
        return _law(self.mode, self.mode == "stochastic" and self.scale_rule == "ceil")

    @property
    def label(self):
        rule = "" if self.scale_rule == "nearest" else f" {self.scale_rule}"
        return f"NVFP4{rule} {self.mode}"
