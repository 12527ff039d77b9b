"""The compiled Section 7 kernel: plain numba functions, one per stage of eq. (5).

One call of ``block_kernel(d)`` (``run_block``) advances C configurations of perturbed SGD on
the logistic chain f₁ = −y hᵀw, f₂ = ln(1 + e^{f₁}) through iterations
t0..t1−1.  For each tile of TILE samples (a slice of the data that stays in
L1) every configuration does, in the pass precision (the dtype of the data ``AT``):

    z_l = f₁(a_l, w) = −a_lᵀw                       (4a)   :func:`scores`
    z̃_l = P_f(z_l)   e.g. z_l + δ_l                 (5a)   :func:`perturb`
    ṽ_l = P_b(σ(z̃_l)) e.g. σ(z̃_l) + ε_l             (5b)   :func:`perturb`
    G  += Σ_l a_l ṽ_l,  so ũ = −G / M               (5c)   :func:`accumulate`

and, once per iteration, w ← w − γ(ũ + ρ∇R(w) + ξ_t) in float64 (5d,
:func:`update`).  The exact gradient norm ‖∇f(w_t)‖ (the metric) comes from
the same z, with σ(z) of the clean pass summed in float64 (:func:`accumulate64`;
products of two float32 numbers are exact in float64), or, for a configuration
that asks for it (``metric64``), from a separate float64 pass
(:func:`clean_sums64`, the reference the reproducibility notes compare with); the loss gap
f(w_t) − f* at the requested checkpoints is a float64 pass (:func:`loss_gap`).

Perturbations arrive as the named numbers of their compiled forms (:data:`PLACE`, filled by
:mod:`fbsgd.engine.lockstep` from :mod:`fbsgd.perturbations`): UNIFORM adds U(low, high) noise,
ROUND rounds to a low-precision format (:func:`fbsgd.lowprec.round_entries`), BITFLIP flips bits,
ELEMENT calls a researcher's own numba function ``y = element(x, u, numbers)`` on every entry, BLOCK
a researcher's ``fn(x, u, numbers, out)`` on every block of consecutive samples (:func:`perturb_blocks`,
as :func:`fbsgd.lowprec.map_blocks`); SITE runs Top-K, Rand-K, and error feedback or delta compression around
any memoryless form, as a site of the chain kernel (:func:`fbsgd.engine.chain_kernel.perturb_site`) on the
whole message, with its memory (M float64 entries per configuration and place) kept across the steps where
it does not act and from one call to the next (:func:`memory_kernel`); each acts at t = first, first + interval, ... < until, with the core's random streams and keys, so the
kernel and :func:`fbsgd.passes.perturbed_passes` compute the same run.

Specialisation, by numba and nothing else (no source text is generated):

* the precision: ``run_block`` is compiled once for float32 data and once for float64; the
  few places that differ (:func:`as_pass`, :func:`sigma`, :func:`uniform`) are overloads chosen
  by the type of the message;
* the number of features d: :func:`block_kernel` builds the kernel for one d, a closure variable
  that numba types as a literal, so d is a constant of the machine code; the three dot products
  over the features (:func:`scores`, :func:`accumulate`, :func:`accumulate64`) are then written out
  term by term by the overloads :func:`dot_row` and :func:`add_rows` (resolved
  by the type system, once per term), which LLVM vectorizes over the samples, with the summation
  order fixed: a₀w₀ + a₁w₁ + … from the first feature on: 1.34× faster than plain loops over the
  features for d = 10 (``benchmarks/engine_speed.py`` times both); above d = :data:`UNROLL_MAX` the
  kernel keeps the plain loops (compile time grows with d);
* a researcher's element operation: :func:`element_kernel` takes the two element functions
  (forward and backward place) as arguments, so numba compiles one kernel per pair, with the
  function inlined; :func:`block_kernel` passes :func:`no_element`, which never runs;
* a researcher's block operation: a block may span tiles (any block size, not only divisors of
  TILE), so :func:`message_kernel` (:func:`_message`) holds each configuration's whole message at
  once, one configuration after the other, and takes the places' element and block functions as
  arguments (one kernel per tuple); its other steps run tile by tile as in :func:`_block`, with the
  same bits.

Machine code: numba caches ``run_block`` in ``kernel_dir()/lockstep-<hash>`` (``$FBSGD_KERNEL_DIR``,
else ``~/.cache/fbsgd/kernels``), where the hash and numba's stamp are those of the source of
every fbsgd module this file reaches (:func:`fbsgd.engine.provenance.source_hash`), so an edit to
the random streams, the rounding or the sigmoid can never run old machine code (numba's own stamp
covers only the file that defines a function; :func:`fbsgd.engine.provenance.cache_machine_code`).  A kernel with a researcher's element function is
compiled in each process (numba cannot key a cache entry by a function argument).
"""
import functools
import math
from pathlib import Path

import numpy as np
from numba import njit, types
from numba.core.errors import RequireLiteralValue
from numba.cpython.unsafe.tuple import tuple_setitem
from numba.extending import intrinsic, overload
from numba.np.unsafe.ndarray import to_fixed_tuple

from fbsgd import rng
from fbsgd.engine.chain_kernel import perturb_with
from fbsgd.engine.provenance import cache_machine_code, kernel_dir, machine_code_dir
from fbsgd.lowprec import round_entries
from fbsgd.optimizers import DIVERGENCE_THRESHOLD
from fbsgd.vecmath import bits_to_f32, f32_to_bits, sigmoid_fast, sigmoid_fast32

__all__ = ["block_kernel", "element_kernel", "message_kernel", "memory_kernel", "no_element", "no_block", "kernel_dir",
           "cache_dir", "PARAMS", "PLACE", "TILE", "NEVER", "UNROLL_MAX", "NONE", "UNIFORM", "ROUND", "BITFLIP", "ELEMENT",
           "BLOCK", "SITE"]

FASTMATH = {"contract", "reassoc"}  # fixed reassociation: deterministic, the same for every batch
TILE = 256  # samples per tile
NEVER = 2**62  # "no last step"

# the compiled forms the kernel runs (fbsgd.perturbations: UniformOp, RoundOp, BitFlipOp, ElementOp, BlockOp; SITE:
# TopKOp, RandKOp, and ErrorFeedbackOp and DeltaOp around a memoryless form, run as a site of the chain kernel,
# fbsgd.engine.chain_kernel.perturb_site, on the whole message)
NONE, UNIFORM, ROUND, BITFLIP, ELEMENT, BLOCK, SITE = 0, 1, 2, 3, 4, 5, 6

# one record per place of a configuration: its kind, schedule and stream, then the named numbers of
# its compiled form (only those of its kind are read)
PLACE = np.dtype([
    ("kind", np.int64), ("per_sample", np.int64), ("first", np.int64), ("interval", np.int64), ("until", np.int64),
    ("key", np.uint64),
    ("low", np.float64), ("high", np.float64),  # UNIFORM
    ("man_bits", np.int64), ("emin", np.int64), ("max_finite", np.float64), ("has_inf", np.int64),
    ("stochastic", np.int64),  # ROUND
    ("rate", np.float64), ("lo_bit", np.int64), ("n_bits", np.int64),  # BITFLIP
    ("block", np.int64),  # BLOCK
])
# one record per configuration: the update's numbers, then the forward (δ) and backward (ε) place
PARAMS = np.dtype([("gamma", np.float64), ("rho", np.float64), ("reg", np.int64), ("noise_std", np.float64),
                   ("xi_key", np.uint64), ("f_star", np.float64), ("metric64", np.int64), ("f", PLACE), ("b", PLACE)])


# ---------------------------------------------------------------------------
# numba's cache for this file: in the kernel folder, under the package's source hash
# ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """The folder of this file's machine code: ``kernel_dir()/lockstep-<source hash>``."""
    return machine_code_dir(__name__, "lockstep")


cache_machine_code(__name__, __file__, "lockstep")


# ---------------------------------------------------------------------------
# the pass precision: overloads chosen by the type of the message
# ---------------------------------------------------------------------------


def as_pass(z, v):  # pragma: no cover - typed by the overload below
    """``v`` in the precision of the message array ``z``."""


@overload(as_pass, inline="always")
def _as_pass(z, v):
    if z.dtype == types.float32:
        return lambda z, v: np.float32(v)
    return lambda z, v: np.float64(v)


def sigma(x):  # pragma: no cover - typed by the overload below
    """σ(x) in x's precision (:func:`fbsgd.vecmath.sigmoid_fast32` or :func:`~fbsgd.vecmath.sigmoid_fast`)."""


@overload(sigma, inline="always")
def _sigma(x):
    if x == types.float32:
        return lambda x: sigmoid_fast32(x)
    return lambda x: sigmoid_fast(x)


def uniform(z, key, t, i):  # pragma: no cover - typed by the overload below
    """The uniform draw i of the stream at step t in the precision of the message ``z``
    (:func:`fbsgd.rng.uniform01_f32` for float32: the float64 draw rounded down to 24 bits)."""


@overload(uniform, inline="always")
def _uniform(z, key, t, i):
    if z.dtype == types.float32:
        return lambda z, key, t, i: rng.uniform01_f32(key, t, i)
    return lambda z, key, t, i: rng.uniform01_scalar(key, t, i)


# ---------------------------------------------------------------------------
# the features written out: one term per feature, resolved by the type system for a constant d
# ---------------------------------------------------------------------------


@intrinsic
def filled(typingctx, value, count):
    """The tuple ``(value,) * count`` for a constant ``count``."""
    if not isinstance(count, types.IntegerLiteral):
        raise RequireLiteralValue("filled: count must be a constant")
    tup = types.UniTuple(value, int(count.literal_value))

    def codegen(context, builder, signature, args):
        return context.make_tuple(builder, tup, [args[0]] * tup.count)

    return tup(value, count), codegen


def dot_row(AT, k, wt, count):  # pragma: no cover - typed by the overload below
    """a₀w₀ + a₁w₁ + … + a_{count−1}w_{count−1} with a_j = AT[j, k], summed from the first term on."""


@overload(dot_row, prefer_literal=True)
def _dot_row(AT, k, wt, count):
    if not isinstance(count, types.IntegerLiteral):
        return None
    j = count.literal_value - 1
    if j == 0:
        return lambda AT, k, wt, count: AT[0, k] * wt[0]
    return lambda AT, k, wt, count: dot_row(AT, k, wt, j) + AT[j, k] * wt[j]


def cast_like(a, v):  # pragma: no cover - typed by the overload below
    """``v`` in the precision of the scalar ``a``."""


@overload(cast_like, inline="always")
def _cast_like(a, v):
    if a == types.float32:
        return lambda a, v: np.float32(v)
    return lambda a, v: np.float64(v)


def add_rows(acc, AT, k, v, count):  # pragma: no cover - typed by the overload below
    """The tuple acc with acc[j] + AT[j, k]·v for j < count, each term in the precision of acc's entries
    (a float32 AT into float64 sums: float64(AT[j, k])·v)."""


@overload(add_rows, prefer_literal=True)
def _add_rows(acc, AT, k, v, count):
    if not isinstance(count, types.IntegerLiteral):
        return None
    j = count.literal_value - 1
    if j == 0:
        return lambda acc, AT, k, v, count: tuple_setitem(acc, 0, acc[0] + cast_like(acc[0], AT[0, k]) * v)
    return lambda acc, AT, k, v, count: tuple_setitem(add_rows(acc, AT, k, v, j), j,
                                                      acc[j] + cast_like(acc[j], AT[j, k]) * v)


# ---------------------------------------------------------------------------
# the regularizer R of Section 7 (reg 0: Σ w²/(1+w²), reg 1: ‖w‖²)
# ---------------------------------------------------------------------------


@njit(inline="always")
def reg_grad(w, reg):
    """∂R/∂w_j."""
    if reg == 0:
        return 2.0 * w / ((1.0 + w * w) * (1.0 + w * w))
    return 2.0 * w


@njit(inline="always")
def reg_value(w, reg):
    """The j-th term of R(w)."""
    if reg == 0:
        return w * w / (1.0 + w * w)
    return w * w


# ---------------------------------------------------------------------------
# one tile of the pass (d = D, a constant)
# ---------------------------------------------------------------------------


@njit(inline="always")
def scores(AT, l0, n, w, z, D):
    """(4a): z_l = −a_lᵀw for the samples l0..l0+n−1 (``AT`` holds a_l as its columns), for a constant D:
    the terms written out, summed from the first feature on."""
    wt = to_fixed_tuple(w, D)
    for i in range(n):
        # an unsigned column index: numba then adds no wraparound for negative indices, and the loads of
        # consecutive samples are contiguous (LLVM vectorizes the loop over samples)
        z[i] = -dot_row(AT, np.uint64(l0 + i), wt, D)


@njit(inline="always")
def scores_loops(AT, l0, n, w, z, D):
    """:func:`scores` with plain loops over the features, for any D."""
    for i in range(n):
        z[i] = 0.0
    for j in range(D):
        wj, row = w[j], AT[j, l0:l0 + n]
        for i in range(n):
            z[i] -= row[i] * wj


@njit(inline="always")
def acts(t, first, interval, until):
    """Whether a perturbation with this schedule acts at iteration t."""
    return first <= t < until and (t - first) % interval == 0


@njit(inline="always")
def next_flip(key, t, j, p, total, denom):
    """Position of the next flipped bit at or after ``p`` (``total``: none), found as
    :func:`fbsgd.lowprec.flip_bits_inplace` finds it with its j-th draw."""
    u = rng.uniform01_scalar(key, t, j)
    gap = np.floor(math.log1p(-u) / denom)
    if gap >= total - p:
        return total
    return p + np.int64(gap)


@njit(inline="always")
def flip(v, bit):
    """``v`` with one bit of its float32 pattern flipped, in v's type."""
    mask = np.int32(np.int64(1) << bit) if bit < 31 else np.int32(-2147483648)
    return bits_to_f32(f32_to_bits(np.float32(v)) ^ mask)


@njit(inline="always")
def no_element(x, u, numbers):
    """The element function of a kernel without a researcher's element operation (never called)."""
    return x


@njit(inline="always")
def perturb(z, n, l0, M, t, s, cursor, numbers, element):
    """(5a)/(5b): apply the perturbation of place ``s`` (a :data:`PLACE` record) to entries
    l0..l0+n−1 of a message of M entries, held in z[0..n−1], in place.

    UNIFORM: z += U(low, high), draw number l (or 0 when shared by the batch, per_sample = 0);
    ROUND: to the format (man_bits, emin, max_finite, has_inf), nearest or stochastic with draw l;
    BITFLIP: each of bits lo_bit..lo_bit+n_bits−1 flips with probability rate; ``cursor`` carries the
    position of the next flip and the draw count across the tiles of one step;
    ELEMENT: z_l = element(z_l, u_l, numbers) with u_l the float64 draw l (0: shared).
    """
    kind, key, ps = s.kind, s.key, s.per_sample
    if kind == UNIFORM:
        if s.low != 0.0 or s.high != 0.0:
            lo, wd = as_pass(z, s.low), as_pass(z, s.high - s.low)
            if ps == 0:  # one draw shared by the batch: the same number for every sample, drawn once
                shift = lo + wd * uniform(z, key, t, 0)
                for i in range(n):
                    z[i] += shift
            else:
                for i in range(n):
                    z[i] += lo + wd * uniform(z, key, t, (l0 + i) * ps)
    elif kind == ROUND:
        round_entries(z, n, l0, s.man_bits, s.emin, s.max_finite, s.has_inf != 0, s.stochastic != 0, key, t)
    elif kind == BITFLIP:
        rate, lo_bit, nb = s.rate, s.lo_bit, s.n_bits
        if rate >= 1.0:
            for i in range(n):
                for k in range(nb):
                    z[i] = flip(z[i], lo_bit + k)
        elif rate > 0.0:
            denom = math.log1p(-rate)
            total = np.int64(M) * nb
            if l0 == 0:
                cursor[0] = next_flip(key, t, 0, 0, total, denom)
                cursor[1] = 1
            end = np.int64(l0 + n) * nb
            while cursor[0] < end:
                e = cursor[0] // nb
                z[e - l0] = flip(z[e - l0], cursor[0] - e * nb + lo_bit)
                cursor[0] = next_flip(key, t, cursor[1], cursor[0] + 1, total, denom)
                cursor[1] += 1
    elif kind == ELEMENT:
        for i in range(n):
            z[i] = element(np.float64(z[i]), rng.uniform01_scalar(key, t, (l0 + i) * ps), numbers)


@njit(inline="always")
def no_block(x, u, numbers, out):
    """The block function of a kernel without a researcher's block operation (never called)."""
    return None


@njit(inline="always")
def perturb_blocks(z, M, t, s, numbers, fn, xb, ub, yb):
    """BLOCK: a researcher's block operation on the whole message z[0..M−1] (one value per sample: its
    blocks run over consecutive samples), as :func:`fbsgd.lowprec.map_blocks` applies it: block b of n
    entries gets x (float64 copies), u (the float64 draws of its entries' indices, 0 when shared) and
    writes y, stored in the message's precision.  ``xb``, ``ub``, ``yb``: float64 scratch of M entries."""
    block, key, ps = s.block, s.key, s.per_sample
    for b0 in range(0, M, block):
        n = min(block, M - b0)
        for i in range(n):
            xb[i] = np.float64(z[b0 + i])
            ub[i] = rng.uniform01_scalar(key, t, (b0 + i) * ps)
        fn(xb[:n], ub[:n], numbers, yb[:n])
        for i in range(n):
            z[b0 + i] = yb[i]


@njit(inline="always")
def sigmoid(z, n, out):
    """σ on the tile: the derivative ∇₁f₂ = σ(z) of the logistic loss."""
    for i in range(n):
        out[i] = sigma(z[i])


@njit(inline="always")
def accumulate(AT, l0, n, v, G, c, D):
    """(5c), the tile's share in the pass precision: G[c, j] += Σ_l a_lj ṽ_l, for a constant D: one
    accumulator per feature, all in one pass over the samples."""
    acc = filled(as_pass(v, 0.0), D)
    for i in range(n):
        acc = add_rows(acc, AT, np.uint64(l0 + i), v[i], D)
    for j in range(D):
        G[c, j] += acc[j]


@njit(inline="always")
def accumulate_loops(AT, l0, n, v, G, c, D):
    """:func:`accumulate` with plain loops over the features, for any D."""
    for j in range(D):
        acc, row = as_pass(v, 0.0), AT[j, l0:l0 + n]
        for i in range(n):
            acc += row[i] * v[i]
        G[c, j] += acc


@njit(inline="always")
def accumulate64(AT, l0, n, s, G, c, D):
    """The metric's share: G[c, j] += Σ_l a_lj σ(z_l) summed in float64, for a constant D."""
    acc = filled(0.0, D)
    for i in range(n):
        acc = add_rows(acc, AT, np.uint64(l0 + i), np.float64(s[i]), D)
    for j in range(D):
        G[c, j] += acc[j]


@njit(inline="always")
def accumulate64_loops(AT, l0, n, s, G, c, D):
    """:func:`accumulate64` with plain loops over the features, for any D."""
    for j in range(D):
        acc, row = 0.0, AT[j, l0:l0 + n]
        for i in range(n):
            acc += np.float64(row[i]) * np.float64(s[i])
        G[c, j] += acc


# ---------------------------------------------------------------------------
# once per iteration and configuration
# ---------------------------------------------------------------------------


@njit(inline="always")
def gradient_norm(Gm, w, rho, reg, M):
    """‖∇f(w)‖ = ‖−(1/M) Σ_l a_l σ(z_l) + ρ∇R(w)‖."""
    total = 0.0
    for j in range(w.size):
        g = -Gm[j] / M + rho * reg_grad(w[j], reg)
        total += g * g
    return math.sqrt(total)


@njit(inline="always")
def update(w, G, p, t, M):
    """(5d): w ← w − γ(ũ + ρ∇R(w) + ξ_t), ξ_t ~ N(0, σ_n² I); True if the run diverged
    (the rule of :func:`fbsgd.optimizers.diverged`)."""
    bad = False
    for j in range(w.size):
        wj = w[j]
        g = -G[j] / M + p.rho * reg_grad(wj, p.reg) + p.noise_std * rng.normal_scalar(p.xi_key, t, j)
        wj = wj - p.gamma * g
        w[j] = wj
        if not (abs(wj) <= DIVERGENCE_THRESHOLD):
            bad = True
    return bad


@njit(fastmath=FASTMATH)
def clean_sums64(AT64, w, out):
    """The metric's sums in a separate float64 pass: out[j] = Σ_l a_lj σ(−a_lᵀw)."""
    M = AT64.shape[1]
    z = np.zeros(M)
    for j in range(w.size):
        row, wj = AT64[j], w[j]
        for i in range(M):
            z[i] -= row[i] * wj
    for i in range(M):
        z[i] = sigmoid_fast(z[i])
    for j in range(w.size):
        row, acc = AT64[j], 0.0
        for i in range(M):
            acc += row[i] * z[i]
        out[j] = acc


@njit(fastmath=FASTMATH, error_model="numpy")  # set, not inherited from the first caller (chain_kernel's docstring)
def loss_gap(AT64, w, rho, reg, f_star):
    """f(w) − f* in float64: (1/M) Σ_l softplus(−a_lᵀw) + ρR(w) − f*."""
    M = AT64.shape[1]
    z = np.zeros(M)
    for j in range(w.size):
        for i in range(M):
            z[i] -= AT64[j, i] * w[j]
    total = 0.0
    for i in range(M):
        total += max(z[i], 0.0) + math.log1p(math.exp(-abs(z[i])))
    r = 0.0
    for j in range(w.size):
        r += reg_value(w[j], reg)
    return total / M + rho * r - f_star


# ---------------------------------------------------------------------------
# the block of iterations
# ---------------------------------------------------------------------------


@njit(inline="always")
def _block(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, D, scores, accumulate,
           accumulate64, f_element, b_element):
    C = W.shape[0]
    M = AT.shape[1]
    z = np.empty(TILE, AT.dtype)
    s = np.empty(TILE, AT.dtype)
    Wf = np.empty((C, D), AT.dtype)
    G = np.empty((C, D))
    Gm = np.empty((C, D))
    cursor = np.zeros((C, 2, 2), np.int64)
    g_next = np.searchsorted(gap_at, t0)
    for t in range(t0, t1):
        if g_next < gap_at.size and gap_at[g_next] == t:
            for c in range(C):
                if diverged_at[c] < 0:
                    gaps[c, g_next] = loss_gap(AT64, W[c], P[c].rho, P[c].reg, P[c].f_star)
            g_next += 1
        metric = t % metric_every == 0
        for c in range(C):
            for j in range(D):
                Wf[c, j] = W[c, j]
        G[:, :] = 0.0
        Gm[:, :] = 0.0
        for l0 in range(0, M, TILE):
            n = min(TILE, M - l0)
            for c in range(C):
                if diverged_at[c] >= 0:
                    continue
                p = P[c]
                f, b = p.f, p.b
                scores(AT, l0, n, Wf[c], z, D)
                fwd = f.kind != NONE and acts(t, f.first, f.interval, f.until)
                bwd = b.kind != NONE and acts(t, b.first, b.interval, b.until)
                if metric and (fwd or bwd):  # the metric needs σ(z) of the clean pass
                    sigmoid(z, n, s)
                    accumulate64(AT, l0, n, s, Gm, c, D)
                if fwd:
                    perturb(z, n, l0, M, t, f, cursor[c, 0], U[c, 0], f_element)
                sigmoid(z, n, z)
                if metric and not (fwd or bwd):
                    accumulate64(AT, l0, n, z, Gm, c, D)
                if bwd:
                    perturb(z, n, l0, M, t, b, cursor[c, 1], U[c, 1], b_element)
                accumulate(AT, l0, n, z, G, c, D)
        end_step(AT64, W, G, Gm, P, t, metric, metric_every, norms, diverged_at, C, M)


@njit(inline="always")
def end_step(AT64, W, G, Gm, P, t, metric, metric_every, norms, diverged_at, C, M):
    """The end of step t for every configuration still running: the metric (when due) and the update."""
    for c in range(C):
        if diverged_at[c] >= 0:
            continue
        if metric:
            if P[c].metric64 != 0:  # the reference: the metric from its own float64 pass
                clean_sums64(AT64, W[c], Gm[c])
            norms[c, t // metric_every] = gradient_norm(Gm[c], W[c], P[c].rho, P[c].reg, M)
        if update(W[c], G[c], P[c], t, M):
            diverged_at[c] = t


@njit(inline="always")
def _message(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, S, SF, Mem, D, scores,
             accumulate, accumulate64, f_element, b_element, f_block, b_block, e0, e1, b0, b1):
    """:func:`_block` for configurations with a block operation (BLOCK) or a SITE at a place: a block may
    span tiles, and Top-K, Rand-K and the kinds with memory act on the whole message, so each
    configuration's whole message (M samples) is held at once, one configuration after the other.
    Every other step is :func:`_block`'s, per tile of TILE samples in the same order (the scores, the
    metric's and the gradient's sums; the element-wise perturbations and σ on the whole message), so a
    configuration without a block operation would get the same bits here as there.

    A SITE place is :func:`fbsgd.engine.chain_kernel.perturb_site` on the message (rows of one entry):
    its integers ``S[c, w]`` (:data:`fbsgd.engine.chain_kernel.SITE_INTS`), numbers ``SF[c, w]`` and the
    place's stream key, its memory ``Mem[c, w]`` (M float64 entries: error feedback's residual, delta
    compression's copy; changed only at the steps where the place acts), the element / block functions
    ``e0``, ``b0`` (forward, slot 0) and ``e1``, ``b1`` (backward, slot 1), or None (no function: the
    chain kernel's cached machine code)."""
    C = W.shape[0]
    M = AT.shape[1]
    z = np.empty(M, AT.dtype)
    s = np.empty(TILE, AT.dtype)
    xb = np.empty(M)
    ub = np.empty(M)
    yb = np.empty(M)
    Wf = np.empty(D, AT.dtype)
    G = np.zeros((C, D))
    Gm = np.zeros((C, D))
    cursor = np.zeros(2, np.int64)
    scratch = np.empty(M, np.float32)  # the SITE buffers (perturb_site)
    work = np.empty((2, M))
    keys = np.empty((3, M))
    g_next = np.searchsorted(gap_at, t0)
    for t in range(t0, t1):
        if g_next < gap_at.size and gap_at[g_next] == t:
            for c in range(C):
                if diverged_at[c] < 0:
                    gaps[c, g_next] = loss_gap(AT64, W[c], P[c].rho, P[c].reg, P[c].f_star)
            g_next += 1
        metric = t % metric_every == 0
        for c in range(C):
            if diverged_at[c] >= 0:
                continue
            p = P[c]
            f, b = p.f, p.b
            for j in range(D):
                Wf[j] = W[c, j]
                G[c, j] = 0.0
                Gm[c, j] = 0.0
            fwd = f.kind != NONE and acts(t, f.first, f.interval, f.until)
            bwd = b.kind != NONE and acts(t, b.first, b.interval, b.until)
            for l0 in range(0, M, TILE):
                n = min(TILE, M - l0)
                zt = z[l0:]
                scores(AT, l0, n, Wf, zt, D)
                if metric and (fwd or bwd):  # the metric needs σ(z) of the clean pass
                    sigmoid(zt, n, s)
                    accumulate64(AT, l0, n, s, Gm, c, D)
            if fwd:
                if f.kind == SITE:
                    perturb_with(z, 1, t, S[c, 0], SF[c, 0], f.key, scratch, Mem[c, 0], work, keys, e0, e1, b0, b1)
                elif f.kind == BLOCK:
                    perturb_blocks(z, M, t, f, U[c, 0], f_block, xb, ub, yb)
                else:
                    perturb(z, M, 0, M, t, f, cursor, U[c, 0], f_element)
            sigmoid(z, M, z)
            if metric and not (fwd or bwd):
                for l0 in range(0, M, TILE):
                    accumulate64(AT, l0, min(TILE, M - l0), z[l0:], Gm, c, D)
            if bwd:
                if b.kind == SITE:
                    perturb_with(z, 1, t, S[c, 1], SF[c, 1], b.key, scratch, Mem[c, 1], work, keys, e0, e1, b0, b1)
                elif b.kind == BLOCK:
                    perturb_blocks(z, M, t, b, U[c, 1], b_block, xb, ub, yb)
                else:
                    perturb(z, M, 0, M, t, b, cursor, U[c, 1], b_element)
            for l0 in range(0, M, TILE):
                accumulate(AT, l0, min(TILE, M - l0), z[l0:], G, c, D)
        end_step(AT64, W, G, Gm, P, t, metric, metric_every, norms, diverged_at, C, M)


UNROLL_MAX = 64  # the largest d whose dot products are written out term by term (compile time grows with d)


@functools.lru_cache(maxsize=None)
def block_kernel(d: int, unrolled: bool | None = None):
    """The kernel for d features: ``run_block(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps,
    diverged_at)`` advances the C configurations of ``P`` (records of :data:`PARAMS`) from iteration t0 to t1.

    ``AT`` (d, M) the data in the pass precision (float32 or float64), ``AT64`` the same in float64;
    ``W`` (C, d) float64 weights, updated in place; ``U`` (C, 2, K) float64 the numbers of the
    places' element operations (unused here); ``norms[c, t // metric_every]`` receives
    ‖∇f(w_t)‖ at every metric step; ``gaps[c, k]`` receives f(w_t) − f* at t = gap_at[k]
    (sorted); ``diverged_at[c]`` the iteration at which a run diverged (it is then frozen), −1
    while it has not.

    ``unrolled`` (default: d <= :data:`UNROLL_MAX`): d is a constant of the machine code (a closure
    variable, typed as a literal) and the dot products over the features are written out term by
    term, one machine code per d and precision; else plain loops over the features, for any d
    (another summation order: other bits; ``benchmarks/engine_speed.py`` times both).  Cached on disk
    (numba keys a closure's cache entry by its variables).
    """
    D = int(d)
    if unrolled is None:
        unrolled = D <= UNROLL_MAX
    if unrolled:
        @njit(fastmath=FASTMATH, error_model="numpy", cache=True)
        def run_block(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at):
            _block(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, D, scores, accumulate,
                   accumulate64, no_element, no_element)

        return run_block
    return run_block_loops


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def run_block_loops(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at):
    """``block_kernel(d, unrolled=False)``: plain loops over the features, d = W.shape[1] at run time."""
    _block(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, W.shape[1], scores_loops,
           accumulate_loops, accumulate64_loops, no_element, no_element)


@functools.lru_cache(maxsize=None)
def element_kernel(d: int):
    """:func:`block_kernel` for configurations whose places run element operations:
    ``run_block_elements(AT, ..., diverged_at, f_element, b_element)`` with the numba functions
    ``y = fn(x, u, numbers)`` of the forward and backward place (:func:`no_element` where a place has
    none), compiled into the kernel, one machine code per pair, in this process (not cached on disk:
    numba cannot key a cache entry by a function argument)."""
    D = int(d)
    if D > UNROLL_MAX:
        return run_block_elements_loops

    @njit(fastmath=FASTMATH, error_model="numpy")
    def run_block_elements(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, f_element,
                           b_element):
        _block(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, D, scores, accumulate,
               accumulate64, f_element, b_element)

    return run_block_elements


@njit(fastmath=FASTMATH, error_model="numpy")
def run_block_elements_loops(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, f_element,
                             b_element):
    """``element_kernel(d)`` for d > :data:`UNROLL_MAX`: plain loops over the features."""
    _block(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, W.shape[1], scores_loops,
           accumulate_loops, accumulate64_loops, f_element, b_element)


@functools.lru_cache(maxsize=None)
def message_kernel(d: int):
    """:func:`element_kernel` for configurations with a researcher's block operation (BlockOp) at a place,
    or a SITE with a researcher's function: ``run_message(AT, ..., diverged_at, S, SF, Mem, f_element,
    b_element, f_block, b_block)`` with the SITE places' integers, numbers and memories (:func:`_message`)
    and the numba functions of the places (an element function ``y = fn(x, u, numbers)`` for an ELEMENT
    place or a SITE around one, a block function ``fn(x, u, numbers, out)`` for a BLOCK place or a SITE
    around one; :func:`no_element` and :func:`no_block` elsewhere), compiled into the kernel, one machine
    code per tuple, in this process (not cached on disk).  Each configuration's whole message is held at
    once (a block may span the tiles): :func:`_message`."""
    D = int(d)
    if D > UNROLL_MAX:
        return run_message_loops

    @njit(fastmath=FASTMATH, error_model="numpy")
    def run_message(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, S, SF, Mem, f_element,
                    b_element, f_block, b_block):
        _message(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, S, SF, Mem, D, scores,
                 accumulate, accumulate64, f_element, b_element, f_block, b_block, f_element, b_element, f_block,
                 b_block)

    return run_message


@njit(fastmath=FASTMATH, error_model="numpy")
def run_message_loops(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, S, SF, Mem, f_element,
                      b_element, f_block, b_block):
    """``message_kernel(d)`` for d > :data:`UNROLL_MAX`: plain loops over the features."""
    _message(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, S, SF, Mem, W.shape[1],
             scores_loops, accumulate_loops, accumulate64_loops, f_element, b_element, f_block, b_block, f_element,
             b_element, f_block, b_block)


@functools.lru_cache(maxsize=None)
def memory_kernel(d: int):
    """The kernel for configurations with a SITE place (Top-K, Rand-K, error feedback, delta compression) and
    no researcher's function: ``run_memory(AT, ..., diverged_at, S, SF, Mem)``, :func:`_message` with the
    chain kernel's cached site (:func:`fbsgd.engine.chain_kernel.perturb_plain`).  Cached on disk, as
    :func:`block_kernel` (no recompile per process).  Compiled with FASTMATH, as the tile path: its scores,
    σ, sums and update are the tile path's, bit for bit (a step where no place acts gives the tile path's
    bits), and its sums vectorize.  The chain kernel's site functions it calls are dispatchers compiled
    with ``fastmath=False`` set explicitly (:mod:`fbsgd.engine.chain_kernel`), so they do not inherit this
    kernel's flags and their disk-cached code stays the readable passes' (tests/engine/test_chain_memory.py
    after a Section 7 memory run)."""
    D = int(d)
    if D > UNROLL_MAX:
        return run_memory_loops

    @njit(fastmath=FASTMATH, error_model="numpy", cache=True)
    def run_memory(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, S, SF, Mem):
        _message(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, S, SF, Mem, D, scores,
                 accumulate, accumulate64, no_element, no_element, no_block, no_block, None, None, None, None)

    return run_memory


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def run_memory_loops(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, S, SF, Mem):
    """``memory_kernel(d)`` for d > :data:`UNROLL_MAX`: plain loops over the features."""
    _message(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at, S, SF, Mem, W.shape[1],
             scores_loops, accumulate_loops, accumulate64_loops, no_element, no_element, no_block, no_block, None, None,
             None, None)
