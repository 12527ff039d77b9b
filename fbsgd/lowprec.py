"""Low-precision number formats: rounding and bit flips, written with integer bit operations.

Formats.  A binary floating-point format with ``man_bits`` stored mantissa bits
and exponent bias ``bias`` holds the numbers ``q * 2**(k - man_bits)`` with
integer ``q < 2**(man_bits+1)`` and ``k >= emin = 1 - bias``: normals
``(1.f) * 2**k`` and, below ``2**emin``, the subnormals, whose spacing stays
``2**(emin - man_bits)`` (gradual underflow).  Table :data:`FORMATS` lists
bfloat16, float16, float8_e4m3fn, float8_e5m2 and float32.

Round to nearest, ties to even.  ``x`` is written as an integer significand
times a power of two; the bits below the format's quantum at x's exponent are
dropped and the kept integer is incremented if the dropped part exceeds half a
quantum, or equals it and the kept integer is odd.  A result above
``max_finite`` overflows to ±inf, or to NaN for formats without infinities
(float8_e4m3fn), exactly as ``ml_dtypes`` converts.  In the normal range the
relative error is at most the unit roundoff ``u = 2**-(man_bits+1)``; in
general ``|fl(x) - x| <= u|x| + smallest_subnormal/2``.

Stochastic rounding.  With ``lo <= |x| <= hi`` the two neighbouring format
values, ``|x|`` goes to ``hi`` with probability ``p = (|x| - lo)/(hi - lo)``
and to ``lo`` otherwise, so ``E[fl(x)] = x``.  The decision ``u < p`` for a
uniform draw ``u`` is made exactly with integers (dropped remainder bits
against ``u * 2**drop``), never through a rounded float quotient.  With the
package's draws ``u`` on the grid ``k * 2**-53`` the realised probability is
``ceil(p * 2**53) / 2**53``, i.e. exactly ``p`` whenever ``p`` is a multiple of
``2**-53`` - always the case for float32 inputs no smaller than ``2**-30``
times the format's smallest subnormal - and larger by less than ``2**-53``
otherwise.  Values above ``max_finite`` are rounded as in nearest mode.

Bit flips.  Every eligible bit of a float32 pattern flips independently with
probability ``rate``.  Instead of one draw per bit, the gaps between flipped
positions of the sequence of eligible (entry, bit) positions are drawn
directly: a gap is geometric, ``floor(log1p(-u) / log1p(-rate))`` for uniform
``u``, so the cost is proportional to the number of flips plus one.

Everything random reads :func:`fbsgd.rng.uniform01_scalar`, so the numpy front
ends and njit callers of :func:`round_scalar` / :func:`flip_bits_inplace` get
the same bits.  ``tests/test_lowprec.py`` checks the rounding bit for bit
against ``ml_dtypes`` (needed by the tests only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, types
from numba.extending import overload

from fbsgd import rng
from fbsgd.vecmath import add_i32, and_i32, bits_to_f32, bits_to_f64, f32_to_bits, f64_to_bits, or_i32

__all__ = [
    "Format",
    "FORMATS",
    "format_of",
    "round_scalar",
    "round_array",
    "round_entries",
    "round_subnormal_range",
    "map_elements",
    "map_blocks",
    "block_starts",
    "block_entry",
    "BLOCK_AUTO",
    "BLOCK_ROWS",
    "BLOCK_COLUMNS",
    "FIELDS",
    "flip_bits_inplace",
    "flip_bits",
]


# ----------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """A binary floating-point format (sign bit, ``exp_bits``, ``man_bits`` stored mantissa bits)."""

    name: str
    code: int
    exp_bits: int
    man_bits: int
    bias: int
    max_finite: float
    has_inf: bool

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number, ``1 - bias``."""
        return 1 - self.bias

    @property
    def unit_roundoff(self) -> float:
        """``u = 2**-(man_bits+1)``: bound on ``|fl(x) - x| / |x|`` for round to nearest in the normal range."""
        return 2.0 ** -(self.man_bits + 1)

    @property
    def eps(self) -> float:
        """Spacing of the format's numbers just above 1, ``2**-man_bits``."""
        return 2.0 ** -self.man_bits

    @property
    def smallest_normal(self) -> float:
        """``2**emin``."""
        return 2.0 ** self.emin

    @property
    def smallest_subnormal(self) -> float:
        """``2**(emin - man_bits)``, also the spacing of all numbers below the smallest normal."""
        return 2.0 ** (self.emin - self.man_bits)

    def error_bound(self, x):
        """Bound on the round-to-nearest error: ``u|x| + smallest_subnormal/2`` (for ``|x| <= max_finite``)."""
        return self.unit_roundoff * np.abs(x) + 0.5 * self.smallest_subnormal

    @property
    def args(self) -> tuple[int, int, float, bool]:
        """``(man_bits, emin, max_finite, has_inf)``, the format arguments of :func:`round_scalar`."""
        return self.man_bits, self.emin, self.max_finite, self.has_inf


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("bfloat16", 0, 8, 7, 127, (2.0 - 2.0**-7) * 2.0**127, True),
        Format("float16", 1, 5, 10, 15, 65504.0, True),
        # e4m3fn: the all-ones exponent holds normals except S.1111.111 (NaN); no inf
        Format("float8_e4m3fn", 2, 4, 3, 7, 448.0, False),
        Format("float8_e5m2", 3, 5, 2, 15, 57344.0, True),
        Format("float32", 4, 8, 23, 127, float(np.finfo(np.float32).max), True),
    )
}


def _lookup(value, argname: str) -> Format:
    if isinstance(value, Format):
        return value
    try:
        return FORMATS[value]
    except (KeyError, TypeError):
        raise ValueError(f"{argname} must be one of {sorted(FORMATS)}, got {value!r}") from None


def format_of(name: str) -> Format:
    """The :class:`Format` called ``name`` (a :class:`Format` is returned unchanged)."""
    return _lookup(name, "name")


# ----------------------------------------------------------------------------
# Bit casts (LLVM bitcast: no float operation, no rounding)
# ----------------------------------------------------------------------------


_f64_to_bits, _bits_to_f64 = f64_to_bits, bits_to_f64
_f32_to_bits, _bits_to_f32 = f32_to_bits, bits_to_f32

_ABS_MASK = np.int64(0x7FFFFFFFFFFFFFFF)
_SIGN_MASK = np.int64(-0x8000000000000000)
_FRAC_MASK = np.int64((1 << 52) - 1)
_HIDDEN = np.int64(1 << 52)
_INF_BITS = np.int64(0x7FF0000000000000)
_QNAN_BITS = np.int64(0x7FF8000000000000)


# ----------------------------------------------------------------------------
# Rounding
# ----------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _split(a):
    """(m, e) with ``m * 2**(e - 52) == value`` for the non-negative finite float64 bit pattern ``a``."""
    field = a >> 52
    if field == 0:  # float64 subnormal (or zero)
        return a & _FRAC_MASK, np.int64(-1022)
    return (a & _FRAC_MASK) | _HIDDEN, field - 1023


@njit(cache=True, inline="always")
def _below(u, r, drop):
    """Exactly ``u < r * 2**-drop`` for a float64 ``0 <= u < 1`` and integers ``0 <= r < 2**53``, ``drop >= 1``."""
    if r == 0:
        return False
    if u == 0.0:
        return True
    mu, eu = _split(_f64_to_bits(u))
    # u * 2**drop = mu * 2**s;  mu * 2**s < r
    s = eu - 52 + drop
    if s >= 54:  # mu * 2**s >= 2**54 > r
        return False
    if s >= 0:  # mu < r / 2**s  <=>  mu < ceil(r / 2**s)
        return mu < ((r + (np.int64(1) << s) - 1) >> s)
    t = -s  # mu / 2**t < r  <=>  floor(mu / 2**t) < r  (r an integer)
    if t >= 63:
        return True
    return (mu >> t) < r


@njit(cache=True, inline="always")
def round_scalar(x, man_bits, emin, max_finite, has_inf, u):
    """``x`` (float64) rounded to the format ``(man_bits, emin = 1 - bias, max_finite, has_inf)``.

    ``u < 0``: round to nearest, ties to even; overflow gives ±inf, or NaN if
    not ``has_inf`` (as ml_dtypes).  ``0 <= u < 1``: stochastic rounding, up to
    the larger-magnitude neighbour iff ``u < (|x| - lo) / (hi - lo)`` (exact
    integer comparison); ``|x|`` above ``max_finite`` is rounded as in nearest
    mode.  Signs, ±0 and NaN are preserved; ±inf stays ±inf, or becomes NaN if
    not ``has_inf``.  The result is a float64 holding a format value.
    """
    x = np.float64(x)
    bits = _f64_to_bits(x)
    sign = bits & _SIGN_MASK
    a = bits & _ABS_MASK
    if a >= _INF_BITS:
        if a == _INF_BITS and not has_inf:
            return _bits_to_f64(sign | _QNAN_BITS)
        return x
    if a == 0:
        return x
    man_bits = np.int64(man_bits)
    emin = np.int64(emin)
    if (a >> 52) - 1023 >= emin:
        # fast paths in the format's normal range, where the quantum is 2**-man_bits ulps of x
        drop = 52 - man_bits
        low = (np.int64(1) << drop) - 1
        if u < 0.0:  # nearest: add half a quantum (minus one, plus the lowest kept bit: ties to even), clear
            r = (a + (low >> 1) + ((a >> drop) & 1)) & ~low
            if _bits_to_f64(r) > max_finite:
                return _bits_to_f64(sign | (_INF_BITS if has_inf else _QNAN_BITS))
            return _bits_to_f64(sign | r)
        if a <= _f64_to_bits(np.float64(max_finite)):  # stochastic: up iff u < rem / 2**drop (exact in float64)
            r = a & ~low
            if u < np.float64(a & low) * _bits_to_f64((1023 - drop) << 52):
                r += low + 1
            return _bits_to_f64(sign | r)
    m, e = _split(a)
    if m < _HIDDEN:  # float64 subnormal: normalise so that e is the exponent of the leading bit
        while m < _HIDDEN:
            m <<= 1
            e -= 1
        # value = m * 2**(e - 52) still holds
    # quantum of the format at x's exponent: 2**(k), k = max(e, emin) - man_bits
    k = max(e, emin) - man_bits
    drop = k - (e - 52)  # number of low bits of m below the quantum, >= 1
    if drop >= 54:  # |x| < 2**(k-1): below half a quantum
        q = np.int64(0)
        r = m
    else:
        q = m >> drop
        r = m & ((np.int64(1) << drop) - 1)
    stochastic = u >= 0.0
    if not stochastic or a > _f64_to_bits(np.float64(max_finite)):
        if drop < 54:
            half = np.int64(1) << (drop - 1)
            if r > half or (r == half and (q & 1) == 1):
                q += 1
    elif _below(u, r, drop):
        q += 1
    # q * 2**k: q < 2**53 converts exactly; the power of two is assembled from bits and
    # the product is exact (or inf, which then overflows below)
    mag = np.float64(q) * _bits_to_f64((k + 1023) << 52)
    if mag > max_finite:
        if has_inf:
            return _bits_to_f64(sign | _INF_BITS)
        return _bits_to_f64(sign | _QNAN_BITS)
    return _bits_to_f64(sign | _f64_to_bits(mag))


_F32_SIGN = np.int32(-0x80000000)
_F32_INF = np.int32(0x7F800000)
_F32_QNAN = np.int32(0x7FC00000)
_F32_MAX = np.float32(np.finfo(np.float32).max)
_I32_0, _I32_1 = np.int32(0), np.int32(1)


@njit(inline="always", error_model="numpy")
def _nearest64(m, n, man_bits, emin, max_finite, has_inf):
    """Round-to-nearest fast path of :func:`round_entries` on float64 bit patterns (either dtype):
    entries in the format's normal range rounded in place; returns how many were left."""
    drop = 52 - man_bits
    low = (np.int64(1) << drop) - 1
    half = low >> 1
    over = _INF_BITS if has_inf else _QNAN_BITS
    left = 0
    for i in range(n):
        bits = _f64_to_bits(np.float64(m[i]))
        sign = bits & _SIGN_MASK
        a = bits & _ABS_MASK
        ok = ((a >> 52) - 1023 >= emin) & (a < _INF_BITS)
        r = (a + half + ((a >> drop) & 1)) & ~low
        r = over if _bits_to_f64(r) > max_finite else r
        m[i] = _bits_to_f64(sign | r) if ok else m[i]
        left += 0 if ok else 1
    return left


@njit(inline="always", error_model="numpy")
def _nearest32(m, n, man_bits, emin, max_finite, has_inf):
    """:func:`_nearest64` on the float32 bit patterns of a float32 message, for a format whose numbers
    are float32 numbers with fewer mantissa bits (all of :data:`FORMATS` but float32 itself): the same
    results in 32-bit lanes (twice as many per instruction; the integer operations are
    :func:`fbsgd.vecmath.add_i32` etc., which numba does not widen).  In the format's normal range
    (2**emin <= |x| <= float32 max) the quantum is q = 2**(23 - man_bits) units of x's pattern, so
    adding q/2 − 1, plus 1 if the lowest kept bit is set (ties to even), and clearing the bits below q
    rounds |x| to nearest; the carry may reach the exponent, never the sign bit."""
    if man_bits >= 23 or emin < -126 or np.float64(np.float32(max_finite)) != max_finite:
        return _nearest64(m, n, man_bits, emin, max_finite, has_inf)
    q = np.int32(1 << (23 - man_bits))
    half = np.int32((q >> 1) - 1)
    half_up = np.int32(q >> 1)
    keep = np.int32(~(q - 1))
    tiny = np.float32(2.0**emin)
    mf = np.float32(max_finite)
    over = _F32_INF if has_inf else _F32_QNAN
    left = _I32_0
    for i in range(n):
        x = m[i]
        ok = (abs(x) >= tiny) & (abs(x) <= _F32_MAX)
        bits = _f32_to_bits(x)
        r = and_i32(add_i32(bits, half_up if and_i32(bits, q) != _I32_0 else half), keep)
        r = or_i32(over, and_i32(bits, _F32_SIGN)) if abs(_bits_to_f32(r)) > mf else r
        m[i] = _bits_to_f32(r) if ok else x
        left = or_i32(left, _I32_0 if ok else _I32_1)
    return left


def _nearest(m, n, man_bits, emin, max_finite, has_inf):  # pragma: no cover - typed by the overload below
    """The round-to-nearest fast path for m's dtype (:func:`_nearest32` or :func:`_nearest64`)."""


@overload(_nearest, inline="always")
def _nearest_typed(m, n, man_bits, emin, max_finite, has_inf):
    if m.dtype == types.float32:
        return lambda m, n, man_bits, emin, max_finite, has_inf: _nearest32(m, n, man_bits, emin, max_finite, has_inf)
    return lambda m, n, man_bits, emin, max_finite, has_inf: _nearest64(m, n, man_bits, emin, max_finite, has_inf)


@njit(inline="always", error_model="numpy")
def round_subnormal_range(m, n, first, man_bits, emin, max_finite, stochastic, key, step):
    """The entries of ``m[0..n-1]`` below the format's normal range (0 < |x| < 2**emin: its subnormals, and
    values below its smallest subnormal, which round to ±0 or, stochastically, to ±0 or ± the smallest
    subnormal) rounded in place, each as :func:`round_scalar` rounds it, in a loop without branches (a
    select per entry) that LLVM vectorizes; returns how many entries were neither there nor in the normal
    range (±inf, NaN; stochastic: above ``max_finite``): those are :func:`round_scalar`'s.

    There the format's quantum is 2**k, k = emin − man_bits, so with y = |x|·2**−k (a power-of-two scaling:
    exact) round_scalar's q and remainder are ⌊y⌋ and y − ⌊y⌋ (exact); nearest: q = rint(y) (ties to
    even, as round_scalar), stochastic: q = ⌊y⌋ + 1 iff u < y − ⌊y⌋ (round_scalar's exact comparison
    :func:`_below`); the result ±q·2**k (exact, at most 2**emin: no overflow).  Entries in the normal range
    (rounded by the fast path before, they stay there) are left as they are.  For a format with
    k < −1022 (2**−k not a float64) nothing is rounded here: every entry not in the normal range is left."""
    man_bits = np.int64(man_bits)
    emin = np.int64(emin)
    max_bits = _f64_to_bits(np.float64(max_finite))
    k = emin - man_bits
    if k < -1022:
        left = 0
        for i in range(n):
            a = _f64_to_bits(np.float64(m[i])) & _ABS_MASK
            left += 0 if ((a >> 52) - 1023 >= emin) & (a < _INF_BITS) & (not stochastic or a <= max_bits) else 1
        return left
    up = _bits_to_f64((1023 - k) << 52)  # 2**−k
    quantum = _bits_to_f64((1023 + k) << 52)  # 2**k
    normal_bits = (emin + 1023) << 52  # the pattern of 2**emin
    left = 0
    for i in range(n):
        x = np.float64(m[i])
        bits = _f64_to_bits(x)
        sign = bits & _SIGN_MASK
        a = bits & _ABS_MASK
        sub = a < normal_bits
        y = _bits_to_f64(a) * up
        if stochastic:
            fl = math.floor(y)
            q = fl + (1.0 if rng.uniform01_scalar(key, step, first + i) < y - fl else 0.0)
        else:
            q = np.rint(y)
        res = _bits_to_f64(sign | _f64_to_bits(q * quantum))
        m[i] = res if sub else m[i]
        left += 0 if sub or (a < _INF_BITS) & (not stochastic or a <= max_bits) else 1
    return left


@njit(cache=True, error_model="numpy")
def round_entries(m, n, first, man_bits, emin, max_finite, has_inf, stochastic, key, step):
    """Entries ``0..n-1`` of the float32 or float64 array ``m`` rounded in place, each exactly as
    ``round_scalar(m[i], man_bits, emin, max_finite, has_inf, u)`` with ``u`` the draw
    ``rng.uniform01_scalar(key, step, first + i)`` (``stochastic``) or −1 (nearest).

    Why not a loop over :func:`round_scalar`: its branches (inf and NaN, zero, the format's
    subnormals, a ``while`` loop for float64 subnormals) keep LLVM from vectorizing such a loop,
    which then costs ~1.5 ns per entry.  Here a first loop takes every entry in the format's normal
    range with ``round_scalar``'s own fast-path integer arithmetic, written without branches (a
    select per entry), which LLVM vectorizes (on AVX-512: 16 float32 patterns, :func:`_nearest32`,
    or 8 float64 patterns per instruction); a second loop, run only when the first left some entry,
    takes those below the normal range (zeros, the format's subnormals, values below its smallest
    subnormal), also without branches (:func:`round_subnormal_range`); a third, run only when entries
    are left (inf and NaN, stochastic values above ``max_finite``), hands them to ``round_scalar`` itself.
    An entry the first loops rounded stays in the normal range or became ±inf / NaN, or is a format
    value, which ``round_scalar`` returns unchanged, so the third loop may see it again without harm.
    """
    man_bits = np.int64(man_bits)
    emin = np.int64(emin)
    max_bits = _f64_to_bits(np.float64(max_finite))
    if stochastic:
        drop = 52 - man_bits
        low = (np.int64(1) << drop) - 1
        scale = _bits_to_f64((1023 - drop) << 52)  # 2**-drop
        left = 0
        for i in range(n):
            bits = _f64_to_bits(np.float64(m[i]))
            sign = bits & _SIGN_MASK
            a = bits & _ABS_MASK
            ok = ((a >> 52) - 1023 >= emin) & (a <= max_bits)
            up = rng.uniform01_scalar(key, step, first + i) < np.float64(a & low) * scale
            r = (a & ~low) + (low + 1 if up else 0)
            m[i] = _bits_to_f64(sign | r) if ok else m[i]
            left += 0 if ok else 1
    else:
        left = _nearest(m, n, man_bits, emin, max_finite, has_inf)
    if left == 0:
        return
    left = round_subnormal_range(m, n, first, man_bits, emin, max_finite, stochastic, key, step)
    if left == 0:
        return
    for i in range(n):  # ±inf, NaN, stochastic above max_finite (an entry rounded above is a format value: unchanged)
        x = np.float64(m[i])
        a = _f64_to_bits(x) & _ABS_MASK
        if (a >> 52) - 1023 >= emin and a < _INF_BITS and (not stochastic or a <= max_bits):
            continue  # rounded by the first loop
        u = rng.uniform01_scalar(key, step, first + i) if stochastic else -1.0
        m[i] = round_scalar(x, man_bits, emin, max_finite, has_inf, u)


@njit
def map_elements(fn, src, out, numbers, per_sample, key, step):
    """``out[i] = fn(float64(src[i]), u_i, numbers)`` for the flat arrays ``src`` and ``out`` (float32 or
    float64), with ``u_i = rng.uniform01_scalar(key, step, i)`` (per sample) or the draw 0 (shared):
    a researcher's element operation (:class:`fbsgd.perturbations.ElementOp`) on a message, as the
    compiled engine applies it.  ``fn`` is a numba function; one machine code per ``fn``, per process."""
    for i in range(src.size):
        out[i] = fn(np.float64(src[i]), rng.uniform01_scalar(key, step, i if per_sample else 0), numbers)


BLOCK_AUTO, BLOCK_ROWS, BLOCK_COLUMNS = 0, 1, 2  # how map_blocks cuts a message (BlockOp.axis None, -1, 0)


@njit
def block_entry(b0, i, width, mode):
    """The flat index of entry i of the block that starts at flat index b0 (down a column when mode is
    BLOCK_COLUMNS: consecutive rows, ``width`` apart; else consecutive entries of a row)."""
    return b0 + i * width if mode == BLOCK_COLUMNS else b0 + i


@njit
def block_starts(rows, width, block, mode):
    """The flat index of the first entry and the length of every block of a (rows, width) message, in the
    order the blocks are applied: ``mode`` BLOCK_ROWS cuts each row into blocks of ``block`` entries,
    BLOCK_COLUMNS each column, BLOCK_AUTO the rows, except for a one-column message (its column)."""
    if mode == BLOCK_AUTO:
        mode = BLOCK_COLUMNS if width == 1 else BLOCK_ROWS
    if mode == BLOCK_COLUMNS:
        per, outer, step_in, step_out = rows, width, width, 1
    else:
        per, outer, step_in, step_out = width, rows, 1, width
    nb = (per + block - 1) // block
    starts = np.empty(outer * nb, np.int64)
    lengths = np.empty(outer * nb, np.int64)
    k = 0
    for o in range(outer):
        for b in range(nb):
            starts[k] = o * step_out + b * block * step_in
            lengths[k] = min(block, per - b * block)
            k += 1
    return starts, lengths, mode


@njit
def map_blocks(fn, src, out, numbers, block, rows, width, mode, per_sample, key, step):
    """A researcher's block operation (:class:`fbsgd.perturbations.BlockOp`) on a message, as the
    compiled engines apply it: the flat arrays ``src`` and ``out`` (float32 or float64, a (rows, width)
    message in C order) are cut into blocks of at most ``block`` entries (:func:`block_starts`: along
    each row, ``mode`` BLOCK_ROWS; down each column, BLOCK_COLUMNS; BLOCK_AUTO: along the rows, down
    the column of a one-column message); for each block of n entries ``fn(x, u, numbers, y)`` gets
    the float64 copies x of its entries, u the draws ``rng.uniform01_scalar(key, step, i)`` at each
    entry's flat index i (per sample) or the draw 0 (shared), and writes y (n float64 numbers), stored
    into ``out`` in out's dtype.  ``fn`` is a numba function; one machine code per ``fn``, per process."""
    starts, lengths, mode = block_starts(rows, width, block, mode)
    cap = max(1, min(block, max(rows, width)))
    x = np.empty(cap)
    u = np.empty(cap)
    y = np.empty(cap)
    for k in range(starts.size):
        b0, n = starts[k], lengths[k]
        for i in range(n):
            e = block_entry(b0, i, width, mode)
            x[i] = np.float64(src[e])
            u[i] = rng.uniform01_scalar(key, step, e if per_sample else 0)
        fn(x[:n], u[:n], numbers, y[:n])
        for i in range(n):
            out[block_entry(b0, i, width, mode)] = y[i]


@njit(cache=True)
def _round_loop(src, out, man_bits, emin, max_finite, has_inf, stochastic, key, step):
    for i in range(src.size):
        out[i] = src[i]
    round_entries(out, out.size, 0, man_bits, emin, max_finite, has_inf, stochastic, key, step)


def _check_key_step(key, step) -> tuple[np.uint64, int]:
    if not 0 <= int(step) < 2**31:
        raise ValueError(f"step must be in [0, 2**31), got {step}")
    return np.uint64(int(key) % 2**64), int(step)


_MODES = ("nearest", "stochastic")


def round_array(x, fmt, mode: str = "nearest", key: int = 0, step: int = 0) -> np.ndarray:
    """A new array (x's shape and float32/float64 dtype) of ``x`` rounded to the format ``fmt``.

    ``fmt``: a name in :data:`FORMATS` or a :class:`Format`.  ``mode``:
    ``"nearest"`` (ties to even) or ``"stochastic"``; in stochastic mode entry
    ``i`` (C order) uses the draw ``rng.uniform01_scalar(key, step, i)``.
    """
    f = _lookup(fmt, "fmt")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"x must be a float32 or float64 array, got dtype {x.dtype}")
    k, s = _check_key_step(key, step)
    if mode == "stochastic" and x.size > 2**32:
        raise ValueError("x: at most 2**32 stochastic draws per stream and step")
    src = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(x.shape, dtype=x.dtype)
    _round_loop(src, out.reshape(-1), f.man_bits, f.emin, float(f.max_finite), bool(f.has_inf),
                mode == "stochastic", k, s)
    return out


# ----------------------------------------------------------------------------
# Bit flips
# ----------------------------------------------------------------------------

FIELDS: dict[str, tuple[int, int]] = {
    "sign": (31, 1),
    "exponent": (23, 8),
    "mantissa": (0, 23),
    "any": (0, 32),
}
"""Field name -> (lowest eligible bit, number of eligible bits) of a float32 pattern."""


@njit(cache=True)
def flip_bits_inplace(x32, key, step, rate, lo_bit, n_bits):
    """Flip, in place, each of bits ``lo_bit .. lo_bit+n_bits-1`` of every entry of the contiguous
    1-D float32 (or int32) array ``x32`` independently with probability ``rate``; return the number of flips.

    The flipped positions ``p = entry * n_bits + (bit - lo_bit)`` are found by
    geometric skipping: the j-th flip (j = 0, 1, ...) is ``floor(log1p(-u_j) /
    log1p(-rate))`` eligible positions after the previous one, with ``u_j =
    rng.uniform01_scalar(key, step, j)``.  ``rate == 0`` draws nothing,
    ``rate == 1`` flips every eligible bit.
    """
    if not (0.0 <= rate <= 1.0):
        raise ValueError("rate must be in [0, 1]")
    if lo_bit < 0 or n_bits < 1 or lo_bit + n_bits > 32:
        raise ValueError("bits lo_bit .. lo_bit+n_bits-1 must lie in 0 .. 31")
    w = x32.view(np.uint32)
    n = w.size
    total = np.int64(n) * n_bits
    if rate == 0.0 or total == 0:
        return np.int64(0)
    if rate == 1.0:
        mask = np.uint32(((np.int64(1) << n_bits) - 1) << lo_bit)
        for e in range(n):
            w[e] ^= mask
        return total
    denom = math.log1p(-rate)
    p = np.int64(0)
    j = np.int64(0)
    while True:
        if j >= np.int64(1) << 32:
            raise ValueError("more than 2**32 flips per stream and step")
        u = rng.uniform01_scalar(key, step, j)
        j += 1
        gap = np.floor(math.log1p(-u) / denom)  # a float: may exceed the int64 range
        if gap >= total - p:
            break
        p += np.int64(gap)
        e = p // n_bits
        b = p - e * n_bits + lo_bit
        w[e] ^= np.uint32(np.int64(1) << b)
        p += 1
    return j - 1


def flip_bits(x, rate: float, field: str = "any", key: int = 0, step: int = 0) -> np.ndarray:
    """A copy of ``x`` (same shape and dtype) with the float32 bits of ``field`` flipped at ``rate``.

    The entries are cast to float32, flattened in C order and passed to
    :func:`flip_bits_inplace`; the result is cast back to x's dtype (for
    float64 input: float64 of the flipped float32 values; a signalling NaN
    made by a flip comes back quieted by that cast).  NaN and inf produced by
    a flip are results, not errors.
    """
    if field not in FIELDS:
        raise ValueError(f"field must be one of {list(FIELDS)}, got {field!r}")
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"rate must be a finite number in [0, 1], got {rate!r}") from None
    if not (math.isfinite(r) and 0.0 <= r <= 1.0):
        raise ValueError(f"rate must be a finite number in [0, 1], got {rate!r}")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x must be a float array, got dtype {x.dtype}")
    k, s = _check_key_step(key, step)
    lo_bit, n_bits = FIELDS[field]
    x32 = np.array(x, dtype=np.float32, order="C", copy=True).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        flip_bits_inplace(x32, k, s, r, lo_bit, n_bits)
        return x32.reshape(x.shape).astype(x.dtype, copy=False)
