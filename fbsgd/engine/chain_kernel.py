"""The compiled kernel of :mod:`fbsgd.engine.chains`: C configurations of one chain, in lockstep.

One call of :func:`run_chains` advances C configurations that share a chain's shape (operators
and widths), its data, the batch size and the pass precision through iterations t0..t1−1.  For
each configuration c and step t it computes what :func:`fbsgd.optimizers.train` computes with
:class:`fbsgd.optimizers.PassGradient` and a :class:`fbsgd.perturbations.Plan`:

* the minibatch rows ``min(⌊u_b · n⌋, n − 1)``, u_b the draw b of the stream
  ``derive_key("fbsgd.train.batch", seed)`` at counter t (:func:`fbsgd.optimizers.minibatch_indices`;
  batch 0: every row);
* the perturbed pass of :func:`fbsgd.passes.perturbed_passes` (eq. 5): each operator's output,
  then δ_i at forward site i; from the loss back, each message ∇₁f_iᵀṽ_i, then ε_i at backward site
  i; the batch mean of the weight gradient;
* the update of :class:`fbsgd.optimizers.SGD`, :class:`~fbsgd.optimizers.HeavyBall` or
  :class:`~fbsgd.optimizers.Adam` in float64, written in the same order of operations
  (:func:`update`), and the divergence rule of :func:`fbsgd.optimizers.diverged` (the run is then
  frozen and marked);

and every ``metric_every`` steps, before the update, the clean full-data pass in float64: the
exact gradient norm and the mean loss.

The matrix products are BLAS calls (``np.dot`` with an ``out`` array: 0.64 µs for a 32×32×32
float32 product, 100 GFlop/s, ``benchmarks/chain_speed.py``; the loops tried while writing this
file, axpy and register-blocked forms, took 4–10 µs); everything else is loops that LLVM vectorizes.  A configuration's
arithmetic never depends on the others (its own weights, draws and buffers, the same code path),
so its bits are the same alone or in any chunk.

Perturbations arrive as numbers read from their protocol (:func:`fbsgd.engine.chains.compile_sites`):
per site a kind (1 uniform noise, 2 rounding, 3 bit flips), five numbers, per-sample or shared
draws, the schedule (first, interval, until) and the stream key of ``Plan.init(seed)``.  Rounding
and bit flips call :func:`fbsgd.lowprec.round_scalar` and :func:`fbsgd.lowprec.flip_bits_inplace`;
the rounding loop first takes the format's normal range in a vectorized loop with the same integer
arithmetic as ``round_scalar``'s own fast path (:func:`round_message`), then hands every other
entry to ``round_scalar``.

Machine code: numba caches this file's functions in ``kernel_dir()/chains-<hash>``
(``$FBSGD_KERNEL_DIR``, else ``~/.cache/fbsgd/kernels``; :func:`fbsgd.engine.provenance.cache_machine_code`), stamped with the hash of the source of every fbsgd module this
file reaches (:func:`fbsgd.engine.provenance.source_hash`), so an edit to the random streams or the
rounding can never run old machine code (numba's own stamp covers only the file that defines a
function).  The site functions other kernels call (:func:`perturb_plain` and the dispatchers below it:
:func:`perturb`, :func:`round_message`, :func:`_flip64`, :func:`keep_k`, :func:`kth_smallest`,
:func:`quickselect`) say ``fastmath=False`` explicitly: a dispatcher without its own setting inherits
its first caller's (numba's ``inherit_if_not_set``), and the disk cache keeps whichever machine code was
compiled first, so called first from the fast-math Section 7 kernel their cached code reassociated error
feedback's sums and a later chain run loaded other bits (1 ulp).  Set explicitly, their bits are the
same whoever calls them first.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from fbsgd import rng
from fbsgd.engine.provenance import cache_machine_code, kernel_dir
from fbsgd.lowprec import flip_bits_inplace, map_blocks, round_scalar, round_subnormal_range
from fbsgd.optimizers import DIVERGENCE_THRESHOLD
from fbsgd.vecmath import _exp, _exp32, bits_to_f64, f32_to_bits, f64_to_bits

__all__ = ["run_chains", "run_chains_fns", "final_metrics", "perturb_site", "perturb_plain", "perturb_with", "keep_k",
           "kth_smallest", "quickselect", "update",
           "engine_order", "tanh64", "tanh32", "round_message", "kernel_dir",
           "AFFINE", "TANH", "SIGMOID", "RELU", "IDENTITY", "SOFTPLUS", "LOGISTIC", "SOFTMAX",
           "UNIFORM", "ROUND", "BITFLIP", "TOPK", "RANDK", "ELEMENT", "BLOCK", "PLAIN", "FEEDBACK", "DELTA",
           "SGD", "HEAVYBALL", "ADAM", "OP_COLUMNS", "SITE_INTS"]


# ---------------------------------------------------------------------------
# numba's cache for this file: in the kernel folder, stamped with the package's source hash
# ---------------------------------------------------------------------------


cache_machine_code(__name__, __file__, "chains")


# ---------------------------------------------------------------------------
# codes shared with fbsgd.engine.chains
# ---------------------------------------------------------------------------

AFFINE, TANH, SIGMOID, RELU, IDENTITY, SOFTPLUS, LOGISTIC, SOFTMAX = 1, 2, 3, 4, 5, 6, 7, 8
ELEMENTWISE = (TANH, SIGMOID, RELU, IDENTITY, SOFTPLUS)
# one row per operator: code, input width, output width, weight offset, bias (0/1), offset of the
# output in the activation buffer (per sample), offset of the derivative buffer (per sample)
OP_COLUMNS = ("code", "din", "dout", "woff", "bias", "yoff", "doff")
UNIFORM, ROUND, BITFLIP, TOPK, RANDK, ELEMENT, BLOCK = 1, 2, 3, 4, 5, 6, 7
PLAIN, FEEDBACK, DELTA = 0, 1, 2  # the memory around a site's operation: none, error feedback, delta compression
# per site: kind, per_sample, first, interval, until (the last step + 1), the memory around it (wrap), k (Top-K,
# Rand-K; the block of a block kind), scope (0 rows per sample, 1 columns over the batch; a block kind: how its
# message is cut, fbsgd.lowprec.BLOCK_AUTO / BLOCK_ROWS / BLOCK_COLUMNS), the offset of its memory
# in the configuration's memory, how many numbers its element/block function reads, the slot of that function
SITE_INTS = ("kind", "per_sample", "first", "interval", "until", "wrap", "k", "scope", "mem", "numbers", "slot")
SGD, HEAVYBALL, ADAM = 0, 1, 2

_F32_ONE = np.float32(1.0)
_F32_ZERO = np.float32(0.0)


# ---------------------------------------------------------------------------
# element functions, vectorizable (a polynomial or rational form after range reduction)
# ---------------------------------------------------------------------------

_exp64 = _exp  # e^x for x in [−700, 700] (clamped), about 1 ulp, vectorizable: the library's own


# Cephes tanh: a rational form below |x| = 0.625, 1 − 2/(e^{2|x|} + 1) above
_TP0, _TP1, _TP2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
_TQ0, _TQ1, _TQ2 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3


@njit(inline="always", cache=True, error_model="numpy")
def tanh64(x):
    """tanh(x) in float64, within 4 ulps of numpy's (tests/engine/test_chains.py); vectorizable."""
    a = abs(x)
    s = x * x
    small = x + x * s * (((_TP0 * s + _TP1) * s + _TP2) / (((s + _TQ0) * s + _TQ1) * s + _TQ2))
    e = _exp64(2.0 * min(a, 40.0))
    big = 1.0 - 2.0 / (e + 1.0)
    big = big if x >= 0.0 else -big
    return small if a < 0.625 else big


_T32 = (np.float32(-5.70498872745e-3), np.float32(2.06390887954e-2), np.float32(-5.37397155531e-2),
        np.float32(1.33314422036e-1), np.float32(-3.33332819422e-1))


@njit(inline="always", cache=True, error_model="numpy")
def tanh32(x):
    """tanh(x) in float32 (Cephes tanhf), within 3 float32 ulps; vectorizable."""
    a = abs(x)
    z = x * x
    small = ((((_T32[0] * z + _T32[1]) * z + _T32[2]) * z + _T32[3]) * z + _T32[4]) * z * x + x
    e = _exp32(np.float32(2.0) * min(a, np.float32(20.0)))
    big = _F32_ONE - np.float32(2.0) / (e + _F32_ONE)
    big = big if x >= _F32_ZERO else -big
    return small if a < np.float32(0.625) else big


def _tanh(x):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_tanh, inline="always")
def _tanh_typed(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    return lambda x: tanh64(x)


def _one(x):  # pragma: no cover
    raise NotImplementedError


@overload(_one, inline="always")
def _one_typed(x):
    if x == types.float32:
        return lambda x: _F32_ONE
    return lambda x: 1.0


@njit(inline="always", cache=True, error_model="numpy")
def _sigmoid(z):
    """1 / (1 + e^{−z}) in float64 with libm's exp (the bits of scipy's expit)."""
    return 1.0 / (1.0 + math.exp(-z))


@njit(inline="always", cache=True, error_model="numpy")
def _softplus(z):
    """ln(1 + e^z) as numpy's logaddexp(0, z)."""
    if z == 0.0:
        return math.log(2.0)
    if z < 0.0:
        return math.log1p(math.exp(z))
    return z + math.log1p(math.exp(-z))


# ---------------------------------------------------------------------------
# perturbations on a message (a flat view of a (B, d) array), in place
# ---------------------------------------------------------------------------

_ABS_MASK = np.int64(0x7FFFFFFFFFFFFFFF)
_SIGN_MASK = np.int64(-0x8000000000000000)
_INF_BITS = np.int64(0x7FF0000000000000)
_QNAN_BITS = np.int64(0x7FF8000000000000)


@njit(cache=True, error_model="numpy", fastmath=False)
def round_message(m, man_bits, emin, max_finite, has_inf, stochastic, key, t):
    """Every entry i of ``m`` rounded to the format as ``round_scalar(m[i], ..., u_i)`` with u_i the
    draw i of the stream at step t (stochastic) or −1 (nearest).

    First a vectorized loop over the entries in the format's normal range, with round_scalar's own
    fast-path arithmetic; then one over those below it (zeros, the format's subnormals, values below its
    smallest subnormal: :func:`fbsgd.lowprec.round_subnormal_range`, vectorized, the same bits); then
    round_scalar itself for the rest (inf and NaN, stochastic values above max_finite)."""
    man_bits = np.int64(man_bits)
    emin = np.int64(emin)
    drop = 52 - man_bits
    low = (np.int64(1) << drop) - 1
    scale = bits_to_f64((1023 - drop) << 52)
    max_bits = f64_to_bits(np.float64(max_finite))
    over_bits = _INF_BITS if has_inf else _QNAN_BITS
    slow = 0
    for i in range(m.size):
        x = np.float64(m[i])
        bits = f64_to_bits(x)
        sign = bits & _SIGN_MASK
        a = bits & _ABS_MASK
        ok = a < _INF_BITS and (a >> 52) - 1023 >= emin
        if stochastic:
            u = rng.uniform01_scalar(key, t, i)
            ok = ok and a <= max_bits
            r = a & ~low
            r = r + (low + 1) if u < np.float64(a & low) * scale else r
            res = bits_to_f64(sign | r)
        else:
            r = (a + (low >> 1) + ((a >> drop) & 1)) & ~low
            res = bits_to_f64(sign | over_bits) if bits_to_f64(r) > max_finite else bits_to_f64(sign | r)
        m[i] = res if ok else m[i]
        slow += 0 if ok else 1
    if slow == 0:
        return
    if round_subnormal_range(m, m.size, 0, man_bits, emin, max_finite, stochastic, key, t) == 0:
        return
    for i in range(m.size):  # an entry rounded above is a format value: round_scalar leaves it as it is
        x = np.float64(m[i])
        a = f64_to_bits(x) & _ABS_MASK
        if a < _INF_BITS and (a >> 52) - 1023 >= emin and (not stochastic or a <= max_bits):
            continue  # rounded above (a rounded value stays in the normal range, or became ±inf / NaN)
        u = rng.uniform01_scalar(key, t, i) if stochastic else -1.0
        m[i] = round_scalar(x, man_bits, emin, max_finite, has_inf, u)


@njit(cache=True, error_model="numpy", fastmath=False)
def _flip64(m, key, t, rate, lo_bit, n_bits, scratch):
    """Bit flips in a float64 message as :class:`fbsgd.perturbations.BitFlip` applies them: on the
    float32 patterns of the entries (flattened in C order), and only the entries hit by a flip change."""
    s = scratch[: m.size]
    for i in range(m.size):
        s[i] = np.float32(m[i])
    flip_bits_inplace(s, key, t, rate, lo_bit, n_bits)
    for i in range(m.size):
        if f32_to_bits(s[i]) != f32_to_bits(np.float32(m[i])):
            m[i] = np.float64(s[i])


def _flip_message(m, key, t, rate, lo_bit, n_bits, scratch):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_flip_message, inline="always")
def _flip_message_typed(m, key, t, rate, lo_bit, n_bits, scratch):
    if m.dtype == types.float32:  # a float32 message: the flips in place
        return lambda m, key, t, rate, lo_bit, n_bits, scratch: flip_bits_inplace(m, key, t, rate, lo_bit, n_bits)
    return lambda m, key, t, rate, lo_bit, n_bits, scratch: _flip64(m, key, t, rate, lo_bit, n_bits, scratch)


@njit(inline="always", cache=True)
def _acts(t, si):
    """Whether the perturbation of a site (its integers: kind, per_sample, first, interval, until) acts at t."""
    return si[0] != 0 and si[2] <= t < si[4] and (t - si[2]) % si[3] == 0


@njit(cache=True, error_model="numpy", fastmath=False)
def perturb(m, d, t, si, sf, key, scratch):
    """Apply one site's perturbation to the flat message ``m`` of rows of ``d`` entries, in place."""
    kind = si[0]
    if kind == UNIFORM:
        lo, wd = sf[0], sf[1] - sf[0]
        if si[1] != 0:
            for i in range(m.size):
                m[i] = m[i] + (rng.uniform01_scalar(key, t, i) * wd + lo)
        else:  # one draw per feature, shared by the batch
            for i in range(m.size):
                m[i] = m[i] + (rng.uniform01_scalar(key, t, i % d) * wd + lo)
    elif kind == ROUND:
        round_message(m, np.int64(sf[0]), np.int64(sf[1]), sf[2], sf[3] != 0.0, sf[4] != 0.0, key, t)
    elif kind == BITFLIP:
        _flip_message(m, key, t, sf[0], np.int64(sf[1]), np.int64(sf[2]), scratch)


def _like(m, v):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_like, inline="always")
def _like_typed(m, v):
    """v in the precision of the message m (numpy's float32 array × Python float is a float32 product)."""
    if m.dtype == types.float32:
        return lambda m, v: np.float32(v)
    return lambda m, v: v


SELECT_ROUNDS = 64  # partition rounds of :func:`quickselect` before it sorts what is left (its worst case)


@njit(inline="always")
def _partition_below(a, lo, hi, p, strict):
    """Branchless Lomuto partition of a[lo:hi]: the entries < p (``strict``) or <= p first, in place;
    returns where the others begin."""
    j = lo
    for i in range(lo, hi):
        v = a[i]
        a[i] = a[j]
        a[j] = v
        j += (v < p) if strict else (v <= p)
    return j


@njit(cache=True, error_model="numpy", fastmath=False)
def quickselect(a, lo, hi, r):
    """The value of rank ``r`` (0: the smallest of the whole array) of a[lo:hi] (float64, no NaN;
    lo <= r < hi), in expected O(n): a median-of-three pivot and branchless partitions (the entries < p,
    then those == p, so many ties cost one more pass, not a quadratic time); after :data:`SELECT_ROUNDS`
    rounds it sorts what is left.  Reorders a[lo:hi]."""
    for _ in range(SELECT_ROUNDS):
        if hi - lo <= 1:
            return a[lo]
        x, y, z = a[lo], a[lo + (hi - lo) // 2], a[hi - 1]
        p = max(min(x, y), min(max(x, y), z))  # the median of the three
        j = _partition_below(a, lo, hi, p, True)
        if r < j:
            hi = j
            continue
        j2 = _partition_below(a, j, hi, p, False)  # the entries == p: a[j:j2] (p itself among them)
        if r < j2:
            return p
        lo = j2
    a[lo:hi].sort()
    return a[r]


SAMPLE, SPREAD = 32, 5  # kth_smallest: entries sampled to bracket the rank, and the bracket's half-width in them
FEW = 48  # kth_smallest narrows its bracket until at most this many entries are left


@njit(inline="always")
def _bracket(src, m, r, smp):
    """Two values of src[:m] that likely bracket its value of rank r: the entries SPREAD ranks below and
    above r's place in an evenly spaced sample of SAMPLE entries (sorted by insertion in ``smp``), ±inf
    past the sample's ends."""
    S = smp.size
    for j in range(S):
        smp[j] = src[(2 * j + 1) * m // (2 * S)]
    for i in range(1, S):
        v = smp[i]
        j = i - 1
        while j >= 0 and smp[j] > v:
            smp[j + 1] = smp[j]
            j -= 1
        smp[j + 1] = v
    rs = (r * S) // m
    p_lo = smp[rs - SPREAD] if rs >= SPREAD else -np.inf
    p_hi = smp[rs + SPREAD] if rs + SPREAD < S else np.inf
    return p_lo, p_hi


@njit(cache=True, error_model="numpy", fastmath=False)
def kth_smallest(a, n, r, work):
    """The value of rank ``r`` (0: the smallest) of a[:n] (float64, no NaN), in expected O(n), ``a`` left
    as it is (``work``: a float64 buffer of ≥ n entries).  Above 4·:data:`SAMPLE` entries, two pivots
    from an evenly spaced sample bracket the rank; one branchless pass counts the entries below the
    bracket and gathers those within it (about a third of them) into ``work``; the same narrows
    ``work`` in place while more than :data:`FEW` entries remain (each round keeps about a third), then
    :func:`quickselect` finds the rank among the few left.  When a bracket misses the rank, or ties keep
    it from narrowing, :func:`quickselect` on what is known to hold it (all of a[:n] after a miss)."""
    r0 = r
    if n > 4 * SAMPLE:
        smp = np.empty(SAMPLE)
        p_lo, p_hi = _bracket(a, n, r, smp)
        below = 0
        j = 0
        for i in range(n):
            v = a[i]
            below += np.int64(v < p_lo)
            work[j] = v
            j += np.int64(v >= p_lo) & np.int64(v <= p_hi)
        if below <= r < below + j:
            r -= below
            while j > FEW:
                p_lo, p_hi = _bracket(work, j, r, smp)
                below = 0
                m = 0
                for i in range(j):  # in place: m <= i
                    v = work[i]
                    below += np.int64(v < p_lo)
                    work[m] = v
                    m += np.int64(v >= p_lo) & np.int64(v <= p_hi)
                if not below <= r < below + m:  # missed: work[:j] is overwritten, start from a[:n]
                    break
                r -= below
                if 2 * m > j:  # ties: the bracket no longer narrows
                    return quickselect(work, 0, m, r)
                j = m
            else:
                return quickselect(work, 0, j, r)
            r = r0
    for i in range(n):
        work[i] = a[i]
    return quickselect(work, 0, n, r)


@njit(cache=True, error_model="numpy", fastmath=False)
def keep_k(m, d, k, scope, t, key, random, keys):
    """Top-K (``random`` False) or Rand-K (True) on the flat message ``m`` of rows of ``d`` entries, in place,
    as :class:`fbsgd.perturbations.TopK` / ``RandK`` apply them: each group (scope 0: a row; 1: a column,
    the batch of one feature) of n > k entries keeps the k first of the stable order of −|x| (NaN last) or
    of the draws ``uniform01_scalar(key, t, group · n + i)`` (scaled by n/k), and zeroes the rest.

    In O(n) per group (numpy's stable argsort, which TopK.apply uses, is O(n log n)): the k-th smallest key
    v (:func:`kth_smallest`; NaN taken as +inf, above every key −|x| ≤ 0), then the entries whose key is
    below v and, in index order, those equal to v until k are kept: the same set as the k first of the
    stable order (ties to the lower index, NaN last).  ``keys``: a float64 buffer (2, ≥ n)."""
    rows = m.size // d
    if scope == 0:
        G, n, gstride, estride = rows, d, d, 1
    else:
        G, n, gstride, estride = d, rows, 1, d
    if k >= n:
        return
    kv = keys[0, :n]
    scale = _like(m, n / k)
    for g in range(G):
        base = g * gstride
        if random:  # two loops, each vectorized
            for i in range(n):
                kv[i] = rng.uniform01_scalar(key, t, g * n + i)
        else:
            for i in range(n):
                v = -abs(np.float64(m[base + i * estride]))
                kv[i] = np.inf if v != v else v  # NaN last
        kth = kth_smallest(kv, n, k - 1, keys[1])
        below = 0
        equal = 0
        for i in range(n):
            below += kv[i] < kth
            equal += kv[i] == kth
        last = n  # the entries equal to kth are kept up to index last − 1: the first k − below of them
        if below + equal > k:
            seen = 0
            for i in range(n):
                if kv[i] == kth:
                    seen += 1
                    if seen == k - below:
                        last = i + 1
                        break
        if estride == 1:  # a contiguous group (a row, or the batch of a one-entry row): LLVM vectorizes it
            mg = m[base: base + n]
            if random:
                for i in range(n):  # without branches (which entries are kept is data)
                    v = kv[i]
                    keep = (v < kth) | ((v == kth) & (i < last))
                    mg[i] = mg[i] * scale if keep else _like(m, 0.0)  # a dropped entry: +0 (0 · n/k)
            else:
                for i in range(n):
                    v = kv[i]
                    keep = (v < kth) | ((v == kth) & (i < last))
                    mg[i] = mg[i] if keep else _like(m, 0.0)
            continue
        for i in range(n):  # without branches (which entries are kept is data)
            q = base + i * estride
            v = kv[i]
            keep = (v < kth) | ((v == kth) & (i < last))
            m[q] = m[q] if keep else 0.0
        if random:
            for i in range(n):
                q = base + i * estride
                m[q] = m[q] * scale


def _elements(fn, m, numbers, per_sample, key, t):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_elements, inline="always")
def _elements_typed(fn, m, numbers, per_sample, key, t):
    """``m[i] = fn(float64(m[i]), u_i, numbers)``: :func:`fbsgd.lowprec.map_elements` in place; nothing for
    a slot without a function (None: the cached kernel holds no function object, so numba can cache it)."""
    if isinstance(fn, types.NoneType):
        return lambda fn, m, numbers, per_sample, key, t: None
    return lambda fn, m, numbers, per_sample, key, t: _map_elements(fn, m, numbers, per_sample, key, t)


@njit(inline="always")
def _map_elements(fn, m, numbers, per_sample, key, t):
    for i in range(m.size):
        m[i] = fn(np.float64(m[i]), rng.uniform01_scalar(key, t, i if per_sample else 0), numbers)


def _blocks(fn, m, numbers, block, width, mode, per_sample, key, t, keys):  # pragma: no cover - typed below
    raise NotImplementedError


@overload(_blocks, inline="always")
def _blocks_typed(fn, m, numbers, block, width, mode, per_sample, key, t, keys):
    """:func:`fbsgd.lowprec.map_blocks` in place on the flat message ``m`` (rows of ``width``), cut as
    ``mode`` says (each block is copied out before ``fn`` writes it back); nothing for a slot without a
    function (None)."""
    if isinstance(fn, types.NoneType):
        return lambda fn, m, numbers, block, width, mode, per_sample, key, t, keys: None
    return lambda fn, m, numbers, block, width, mode, per_sample, key, t, keys: map_blocks(
        fn, m, m, numbers, block, m.size // width, width, mode, per_sample, key, t)


@njit(inline="always")
def _operate(m, d, t, si, sf, key, scratch, keys, e0, e1, b0, b1):
    """The memoryless operation of a site on the flat message ``m`` (rows of ``d``), in place."""
    kind = si[0]
    if kind <= BITFLIP:
        perturb(m, d, t, si, sf, key, scratch)
    elif kind == TOPK or kind == RANDK:
        keep_k(m, d, si[6], si[7], t, key, kind == RANDK, keys)
    elif kind == ELEMENT:
        nums = sf[: si[9]]
        if si[10] == 0:
            _elements(e0, m, nums, si[1] != 0, key, t)
        else:
            _elements(e1, m, nums, si[1] != 0, key, t)
    elif kind == BLOCK:
        nums = sf[: si[9]]
        if si[10] == 0:
            _blocks(b0, m, nums, si[6], d, si[7], si[1] != 0, key, t, keys)
        else:
            _blocks(b1, m, nums, si[6], d, si[7], si[1] != 0, key, t, keys)


@njit(inline="always")
def perturb_site(m, d, t, si, sf, key, scratch, mem, work, keys, e0, e1, b0, b1):
    """One site's perturbation on the flat message ``m`` (rows of ``d`` entries), in place: its operation
    alone, or inside error feedback (s = C(x + e), e ← x + e − s) or delta compression (r ← r + C(x − r),
    output r) with the memory ``mem[si[8]:][:m.size]`` (float64, kept between calls), as
    :class:`fbsgd.perturbations.ErrorFeedback` and :class:`fbsgd.correctors.DeltaCompression` compute
    them in float64.  ``work`` (2, ≥ m.size), ``keys`` (3, ≥ the longest row, column or block) float64 buffers; e0, e1 / b0, b1 the
    element / block functions of the slots."""
    wrap = si[5]
    if wrap == PLAIN:
        _operate(m, d, t, si, sf, key, scratch, keys, e0, e1, b0, b1)
        return
    n = m.size
    e = mem[si[8]: si[8] + n]
    wb = work[0, :n]
    tg = work[1, :n]
    if wrap == FEEDBACK:  # one loop per kind of memory, each without branches (LLVM vectorizes them)
        for i in range(n):
            v = np.float64(m[i]) + e[i]  # x + e
            tg[i] = v
            wb[i] = v
    else:
        for i in range(n):
            wb[i] = np.float64(m[i]) - e[i]  # the change x − r
    _operate(wb, d, t, si, sf, key, scratch, keys, e0, e1, b0, b1)
    if wrap == FEEDBACK:
        for i in range(n):
            e[i] = tg[i] - wb[i]
            m[i] = wb[i]
    else:
        for i in range(n):
            r = e[i] + wb[i]
            e[i] = r
            m[i] = r


@njit(cache=True, error_model="numpy", fastmath=False)
def perturb_plain(m, d, t, si, sf, key, scratch, mem, work, keys):
    """:func:`perturb_site` without element or block functions (one machine code per message type, cached)."""
    perturb_site(m, d, t, si, sf, key, scratch, mem, work, keys, None, None, None, None)


def perturb_with(m, d, t, si, sf, key, scratch, mem, work, keys, e0, e1, b0, b1):  # pragma: no cover - typed below
    raise NotImplementedError


def _no_functions(fns) -> bool:
    return all(isinstance(f, types.NoneType) for f in fns)


@overload(perturb_with, inline="always")
def _perturb_with_typed(m, d, t, si, sf, key, scratch, mem, work, keys, e0, e1, b0, b1):
    """:func:`perturb_plain` when there are no functions (None), else :func:`perturb_site` with them."""
    if _no_functions((e0, e1, b0, b1)):
        return lambda m, d, t, si, sf, key, scratch, mem, work, keys, e0, e1, b0, b1: perturb_plain(
            m, d, t, si, sf, key, scratch, mem, work, keys)
    return lambda m, d, t, si, sf, key, scratch, mem, work, keys, e0, e1, b0, b1: perturb_site(
        m, d, t, si, sf, key, scratch, mem, work, keys, e0, e1, b0, b1)


# ---------------------------------------------------------------------------
# one pass through the chain
# ---------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def chain_pass(ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, perturbing, si, sf, skey, scratch, loss, mem, work,
               keys):
    """The (perturbed) passes of eq. (5) for the B rows of ``y0``; G receives the batch *sum* of the
    weight gradient (the caller divides by B).  ``loss`` (B,) receives the per-sample loss when it has
    B entries (metrics).  ``w`` and ``G`` are in the engine's layout (:func:`engine_order`: each affine
    matrix transposed, so the forward product is untransposed, the fastest for BLAS).

    ``ops`` rows as :data:`OP_COLUMNS`; ``Y`` and ``DG`` hold each operator's output and the
    derivative of an elementwise operator at its input (or the loss's gradient in its scores);
    ``si``/``sf``/``skey`` (2, N+1, ...) the sites' integers, numbers and keys (0 forward, 1 backward);
    ``mem``, ``work``, ``keys``: as :func:`perturb_site` takes them (no element or block functions:
    :func:`_pass_with` compiles them in)."""
    _pass(ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, perturbing, si, sf, skey, scratch, loss, mem, work, keys,
          None, None, None, None)


def _pass_with(ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, perturbing, si, sf, skey, scratch, loss, mem, work, keys,
               e0, e1, b0, b1):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_pass_with, inline="always")
def _pass_with_typed(ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, perturbing, si, sf, skey, scratch, loss, mem, work,
                     keys, e0, e1, b0, b1):
    """The pass with the element/block functions e0, e1, b0, b1: :func:`chain_pass` (one machine code, cached)
    when there are none (None), else :func:`_pass` with them compiled in."""
    if _no_functions((e0, e1, b0, b1)):
        return lambda ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, perturbing, si, sf, skey, scratch, loss, mem, \
            work, keys, e0, e1, b0, b1: chain_pass(ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, perturbing, si, sf,
                                                    skey, scratch, loss, mem, work, keys)
    return lambda ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, perturbing, si, sf, skey, scratch, loss, mem, work, \
        keys, e0, e1, b0, b1: _pass(ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, perturbing, si, sf, skey, scratch,
                                    loss, mem, work, keys, e0, e1, b0, b1)


@njit(inline="always")
def _pass(ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, perturbing, si, sf, skey, scratch, loss, mem, work, keys,
          e0, e1, b0, b1):
    """:func:`chain_pass` with the element / block functions of the slots."""
    N = ops.shape[0]
    B = y0.shape[0]
    prev = y0
    for i in range(1, N + 1):
        code, din, dout, woff, bias, yoff, doff = ops[i - 1, 0], ops[i - 1, 1], ops[i - 1, 2], ops[i - 1, 3], \
            ops[i - 1, 4], ops[i - 1, 5], ops[i - 1, 6]
        out = Y[yoff * B: (yoff + dout) * B].reshape((B, dout))
        if code == AFFINE:
            np.dot(prev, w[woff: woff + dout * din].reshape((din, dout)), out)  # y Wᵀ, Wᵀ stored
            if bias != 0:
                b = w[woff + dout * din: woff + dout * din + dout]
                for r in range(B):
                    for o in range(dout):
                        out[r, o] += b[o]
        elif code == LOGISTIC or code == SOFTMAX:
            g = DG[doff * B: (doff + din) * B].reshape((B, din))
            for r in range(B):
                row = rows[r]
                if code == LOGISTIC:
                    lab = yb[row]
                    s = np.float64(prev[r, 0])
                    g[r, 0] = -lab * _sigmoid(-lab * s)
                    if loss.size == B:
                        loss[r] = _softplus(-lab * s)
                else:
                    top = 0
                    for k in range(1, din):
                        if prev[r, k] > prev[r, top]:
                            top = k
                    mx = np.float64(prev[r, top])
                    tot = 0.0
                    for k in range(din):
                        e = math.exp(np.float64(prev[r, k]) - mx)
                        g[r, k] = e
                        tot += e
                    for k in range(din):
                        g[r, k] = g[r, k] / tot
                    g[r, yc[row]] -= 1.0
                    if loss.size == B:
                        rest = 0.0
                        for k in range(din):
                            if k != top:
                                rest += math.exp(np.float64(prev[r, k]) - mx)
                        loss[r] = math.log1p(rest) - (np.float64(prev[r, yc[row]]) - mx)
                out[r, 0] = loss[r] if loss.size == B else 0.0
        else:
            x = prev.ravel()
            o1 = out.ravel()
            g1 = DG[doff * B: (doff + din) * B]
            one = _one(o1[0])
            if code == TANH:
                for k in range(x.size):
                    v = _tanh(x[k])
                    o1[k] = v
                    g1[k] = one - v * v
            elif code == SIGMOID:
                for k in range(x.size):
                    v = _sigmoid(np.float64(x[k]))
                    o1[k] = v
                    g1[k] = v * (1.0 - v)
            elif code == RELU:
                for k in range(x.size):
                    v = x[k]
                    o1[k] = v if v > 0.0 else 0.0
                    g1[k] = 1.0 if v > 0.0 else 0.0
            elif code == IDENTITY:
                for k in range(x.size):
                    o1[k] = x[k]
                    g1[k] = 1.0
            elif code == SOFTPLUS:
                for k in range(x.size):
                    v = np.float64(x[k])
                    o1[k] = _softplus(v)
                    g1[k] = _sigmoid(v)
        if perturbing and i < N and _acts(t, si[0, i]):  # δ_i (eq. 5a); at i = N it would change nothing
            perturb_with(out.ravel(), dout, t, si[0, i], sf[0, i], skey[0, i], scratch, mem, work, keys, e0, e1, b0, b1)
        prev = out

    v = VA[:B].reshape((B, 1))  # v_N = 1
    v[:, :] = 1.0
    in_a = True  # v lives in VA (the next message goes to VB), or in VB
    for i in range(N, 0, -1):
        code, din, dout, woff, doff = ops[i - 1, 0], ops[i - 1, 1], ops[i - 1, 2], ops[i - 1, 3], ops[i - 1, 6]
        bias = ops[i - 1, 4]
        if i == 1:
            prev = y0
        else:
            pyoff = ops[i - 2, 5]
            prev = Y[pyoff * B: (pyoff + din) * B].reshape((B, din))
        nxt = (VB if in_a else VA)[: B * din].reshape((B, din))
        if code == AFFINE:
            nW = dout * din
            Gw = G[woff: woff + nW].reshape((din, dout))
            np.dot(prev.T, v, Gw)  # (5c): Σ_b ṽ_b y_bᵀ, transposed
            if bias != 0:
                gb = G[woff + nW: woff + nW + dout]
                gb[:] = 0.0
                for r in range(B):
                    for o in range(dout):
                        gb[o] += v[r, o]
            if i >= 2:
                np.dot(v, w[woff: woff + nW].reshape((din, dout)).T, nxt)  # ṽ W
        elif i >= 2:
            g = DG[doff * B: (doff + din) * B].reshape((B, din))
            if code == LOGISTIC or code == SOFTMAX:
                for r in range(B):
                    for k in range(din):
                        nxt[r, k] = v[r, 0] * g[r, k]
            else:
                n1, v1, g1 = nxt.ravel(), v.ravel(), g.ravel()
                for k in range(n1.size):
                    n1[k] = v1[k] * g1[k]
        if i >= 2:
            if perturbing and _acts(t, si[1, i]):  # ε_i (eq. 5b)
                perturb_with(nxt.ravel(), din, t, si[1, i], sf[1, i], skey[1, i], scratch, mem, work, keys, e0, e1, b0,
                           b1)
            in_a = not in_a
            v = nxt


def engine_order(ops, P: int) -> np.ndarray:
    """The permutation ``perm`` with ``w_engine = w[perm]``: the engine keeps each affine operator's
    matrix W (out × in, row-major in the library's weight vector) transposed, as Wᵀ (in × out), so the
    forward product y Wᵀ is a product of untransposed operands (BLAS's fastest: 0.64 µs against 1.16 µs
    for a 32×32×32 float32 product, benchmarks/chain_speed.py); everything else keeps its place.  The
    optimizers act entry by entry, so the order changes no number.  ``P``: the weight size."""
    perm = np.arange(P)
    for code, din, dout, woff, bias, yoff, doff in ops:
        if code == AFFINE:
            k, o = np.meshgrid(np.arange(din), np.arange(dout), indexing="ij")
            perm[woff + k * dout + o] = woff + o * din + k
    return perm


def _pass_weights(Wc, Wp):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_pass_weights, inline="always")
def _pass_weights_typed(Wc, Wp):
    """The weights the pass reads: the float64 weights themselves, or their copy in Wp's precision."""
    if Wp.dtype == Wc.dtype:
        return lambda Wc, Wp: Wc

    def cast(Wc, Wp):
        for j in range(Wc.size):
            Wp[j] = Wc[j]
        return Wp

    return cast


# ---------------------------------------------------------------------------
# the update (float64, in the order of operations of fbsgd.optimizers)
# ---------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _mean(G, B, g):
    """g = G / B in float64 (a power of two B: the product with 1/B, the same bits, vectorized)."""
    if B & (B - 1) == 0:
        inv = 1.0 / B
        for j in range(G.size):
            g[j] = np.float64(G[j]) * inv
    else:
        for j in range(G.size):
            g[j] = np.float64(G[j]) / B


@njit(cache=True)
def update(w, g, opt, hyper, m1, m2, count):
    """One step of SGD (``w − lr g``), heavy-ball (``step = lr g − β s``, ``s ← −step``) or Adam (bias-corrected
    moments, ``step = lr m̂ / (√v̂ + eps)``) on ``w`` in place, as :mod:`fbsgd.optimizers` writes them;
    ``hyper`` = (lr, β or β₁, β₂, eps), ``count`` Adam's step count before this step.
    Returns True when the run diverged (a weight non-finite or above the threshold)."""
    lr, b1, b2, eps = hyper[0], hyper[1], hyper[2], hyper[3]
    bad = 0
    if opt == SGD:
        for j in range(w.size):
            wj = w[j] - lr * g[j]
            w[j] = wj
            bad += 0 if abs(wj) <= DIVERGENCE_THRESHOLD else 1
    elif opt == HEAVYBALL:
        for j in range(w.size):
            step = lr * g[j] - b1 * m1[j]
            m1[j] = -step
            wj = w[j] - step
            w[j] = wj
            bad += 0 if abs(wj) <= DIVERGENCE_THRESHOLD else 1
    else:
        t = count + 1
        c1 = 1.0 - math.pow(b1, np.float64(t))
        c2 = 1.0 - math.pow(b2, np.float64(t))
        for j in range(w.size):
            gj = g[j]
            mu = b1 * m1[j] + (1.0 - b1) * gj
            nu = b2 * m2[j] + (1.0 - b2) * (gj * gj)
            m1[j] = mu
            m2[j] = nu
            wj = w[j] - lr * (mu / c1) / (math.sqrt(nu / c2) + eps)
            w[j] = wj
            bad += 0 if abs(wj) <= DIVERGENCE_THRESHOLD else 1
    return bad > 0


# ---------------------------------------------------------------------------
# the clean full-data metrics and the block of iterations
# ---------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _buffers(ops, B, dtype):
    ysz = 0
    dsz = 0
    maxd = 1
    for i in range(ops.shape[0]):
        ysz = max(ysz, ops[i, 5] + ops[i, 2])
        dsz = max(dsz, ops[i, 6] + ops[i, 1])
        maxd = max(maxd, ops[i, 1], ops[i, 2])
    return (np.empty(ysz * B, dtype), np.empty(max(dsz, 1) * B, dtype), np.empty(maxd * B, dtype),
            np.empty(maxd * B, dtype), np.empty(maxd * B, np.float32))


@njit(inline="always")
def reg_grad(w, code):
    """∂R/∂w_j of the regularizer ``code`` (1: Σ w²/(1 + w²), 2: ‖w‖²; :mod:`fbsgd.regularizers`, its formulas)."""
    if code == 1:
        return 2.0 * w / ((1.0 + w * w) * (1.0 + w * w))
    return 2.0 * w


@njit(inline="always")
def reg_value(w, code):
    """The j-th term of R(w)."""
    if code == 1:
        return w * w / (1.0 + w * w)
    return w * w


@njit(cache=True, error_model="numpy")
def regularize(w, g, reg, xi_key, lib_index, t):
    """g ← g + ρ∇R(w), then g ← g + ξ_t (ξ_t entry j: noise_std · the normal draw ``lib_index[j]`` of the
    stream ``xi_key`` at t, as :class:`fbsgd.optimizers.AddNoise` draws it in the library's order of w);
    ``reg`` = (code, ρ, noise_std), code 0 none."""
    code, rho, std = np.int64(reg[0]), reg[1], reg[2]
    if code != 0:
        for j in range(g.size):
            g[j] = g[j] + rho * reg_grad(w[j], code)
    if std != 0.0:
        for j in range(g.size):
            g[j] = g[j] + rng.normal_scalar(xi_key, t, lib_index[j]) * std


@njit(cache=True, error_model="numpy")
def _clean(ops, W, X64, yb, yc, bufs, G, loss, rows, si, sf, skey, reg):
    """The clean full-data pass at W (float64): G the gradient (+ ρ∇R); returns (‖G‖, mean loss + ρR)."""
    Y, DG, VA, VB, sc = bufs
    chain_pass(ops, W, X64, yb, yc, rows, Y, DG, VA, VB, G, 0, False, si, sf, skey, sc, loss, G, np.empty((2, 0)),
               np.empty((3, 0)))
    n = X64.shape[0]
    code, rho = np.int64(reg[0]), reg[1]
    total = 0.0
    R = 0.0
    for j in range(G.size):
        G[j] = G[j] / n
        if code != 0:
            G[j] = G[j] + rho * reg_grad(W[j], code)
            R += reg_value(W[j], code)
        total += G[j] * G[j]
    mean = 0.0
    for r in range(loss.size):
        mean += loss[r]
    return math.sqrt(total), mean / loss.size + (rho * R if code != 0 else 0.0)


@njit(cache=True, error_model="numpy")
def final_metrics(ops, X64, yb, yc, W, reg, diverged_at, out):
    """For every configuration that has not diverged: out[c] = (‖∇F(w)‖, F(w), training accuracy)
    on the full data in float64 (accuracy: the sign of the score for ±1 labels, 0 counted as +1;
    the first largest score for classes); F and ∇F include ρR of ``reg[c]`` (code, ρ, noise_std)."""
    n = X64.shape[0]
    N = ops.shape[0]
    bufs = _buffers(ops, n, np.float64)
    G = np.empty(W.shape[1])
    loss = np.empty(n)
    rows = np.arange(n)
    si = np.zeros((2, N + 1, len(SITE_INTS)), np.int64)
    sf = np.zeros((2, N + 1, 5))
    skey = np.zeros((2, N + 1), np.uint64)
    code, din = ops[N - 1, 0], ops[N - 1, 1]
    for c in range(W.shape[0]):
        if diverged_at[c] >= 0:
            continue
        norm, mean = _clean(ops, W[c], X64, yb, yc, bufs, G, loss, rows, si, sf, skey, reg[c])
        right = 0
        if N >= 2:
            Y = bufs[0]
            pyoff = ops[N - 2, 5]
            s = Y[pyoff * n: (pyoff + din) * n].reshape((n, din))
            for r in range(n):
                if code == LOGISTIC:
                    right += 1 if (1.0 if s[r, 0] >= 0.0 else -1.0) == yb[r] else 0
                elif code == SOFTMAX:
                    top = 0
                    for k in range(1, din):
                        if s[r, k] > s[r, top]:
                            top = k
                    right += 1 if top == yc[r] else 0
        out[c, 0] = norm
        out[c, 1] = mean
        out[c, 2] = right / n if (code == LOGISTIC or code == SOFTMAX) and N >= 2 else np.nan


@njit(cache=True, error_model="numpy")
def run_chains(ops, X, X64, yb, yc, batch, t0, t1, metric_every, W, opt, hyper, reg, xi_key, lib_index, m1, m2, count,
               batch_key, si, sf, skey, mem, norms, losses, diverged_at):
    """Advance the C configurations from iteration t0 to t1 (see the module's docstring).

    ``X`` the features in the pass precision (float32 or float64), ``X64`` in float64 (the metrics);
    ``yb``/``yc`` the labels (±1 floats / class indices); ``batch`` rows per step (0: all);
    ``W`` (C, P) float64 weights, updated in place; ``opt`` (C,) optimizer codes, ``hyper`` (C, 4),
    ``reg`` (C, 3) the regularizer's code, ρ and noise_std, ``xi_key`` (C,) the streams of ξ_t,
    ``lib_index`` (P,) the library's index of each engine weight (:func:`engine_order`);
    ``m1``, ``m2`` (C, P) and ``count`` (C,) the optimizers' state; ``batch_key`` (C,) the minibatch
    streams;
    ``si``, ``sf``, ``skey`` (C, 2, N+1, ...) the sites, ``mem`` (C, ·) float64 their memories (zero at the
    start; :func:`perturb_site`); ``norms``/``losses`` (C, ⌈T/k⌉)
    receive the clean full-data gradient norm and loss at t = 0, k, 2k, ...; ``diverged_at`` (C,)
    the step whose update diverged (−1: none), after which a configuration is frozen.  Sites of element
    or block kinds run in :func:`run_chains_fns`."""
    _run(ops, X, X64, yb, yc, batch, t0, t1, metric_every, W, opt, hyper, reg, xi_key, lib_index, m1, m2, count,
         batch_key, si, sf, skey, mem, norms, losses, diverged_at, None, None, None, None)


@njit(error_model="numpy")
def run_chains_fns(ops, X, X64, yb, yc, batch, t0, t1, metric_every, W, opt, hyper, reg, xi_key, lib_index, m1, m2,
                   count, batch_key, si, sf, skey, mem, norms, losses, diverged_at, e0, e1, b0, b1):
    """:func:`run_chains` with a researcher's element functions ``e0``, ``e1`` (``y = fn(x, u, numbers)``)
    and block functions ``b0``, ``b1`` (``fn(x, u, numbers, out)``) compiled in: a site of the element
    (block) kind calls the one of its slot (:data:`SITE_INTS` "slot"; None: a slot no site uses).  One machine code per tuple of
    functions, in this process (numba cannot key a cache entry by a function argument)."""
    _run(ops, X, X64, yb, yc, batch, t0, t1, metric_every, W, opt, hyper, reg, xi_key, lib_index, m1, m2, count,
         batch_key, si, sf, skey, mem, norms, losses, diverged_at, e0, e1, b0, b1)


@njit(inline="always")
def _run(ops, X, X64, yb, yc, batch, t0, t1, metric_every, W, opt, hyper, reg, xi_key, lib_index, m1, m2, count,
         batch_key, si, sf, skey, mem, norms, losses, diverged_at, e0, e1, b0, b1):
    C, P = W.shape
    n = X.shape[0]
    B = batch if batch > 0 else n
    dt = X.dtype
    Y, DG, VA, VB, sc = _buffers(ops, B, dt)
    work = np.empty((2, VA.size))
    kmax = max(VA.size // B, B)
    for c in range(C):  # the blocks of block kinds
        for w in range(2):
            for i in range(si.shape[2]):
                if si[c, w, i, 0] == BLOCK:
                    kmax = max(kmax, si[c, w, i, 6])
    keys = np.empty((3, kmax))
    Wp = np.empty(P, dt)
    G = np.empty(P, dt)
    g64 = np.empty(P)
    rows = np.arange(B) if batch == 0 else np.empty(B, np.int64)
    y0 = X if batch == 0 else np.empty((B, X.shape[1]), dt)
    no_loss = np.empty(0, dt)
    mbufs = _buffers(ops, n, np.float64)
    Gm = np.empty(P)
    mloss = np.empty(n)
    mrows = np.arange(n)
    for t in range(t0, t1):
        metric = t % metric_every == 0
        for c in range(C):
            if diverged_at[c] >= 0:
                continue
            if metric:
                norm, mean = _clean(ops, W[c], X64, yb, yc, mbufs, Gm, mloss, mrows, si[c], sf[c], skey[c], reg[c])
                norms[c, t // metric_every] = norm
                losses[c, t // metric_every] = mean
            if batch > 0:
                for b in range(B):
                    r = np.int64(rng.uniform01_scalar(batch_key[c], t, b) * n)
                    rows[b] = min(r, n - 1)
                    y0[b, :] = X[rows[b], :]
            w = _pass_weights(W[c], Wp)
            _pass_with(ops, w, y0, yb, yc, rows, Y, DG, VA, VB, G, t, True, si[c], sf[c], skey[c], sc, no_loss, mem[c],
                       work, keys, e0, e1, b0, b1)
            _mean(G, B, g64)  # the batch mean
            regularize(W[c], g64, reg[c], xi_key[c], lib_index, t)  # + ρ∇R(w) + ξ_t (eq. 5d)
            if update(W[c], g64, opt[c], hyper[c], m1[c], m2[c], count[c]):
                diverged_at[c] = t
            count[c] += 1
