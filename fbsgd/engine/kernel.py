"""The compiled Section 7 kernel: plain numba functions, one per stage of eq. (5).

One call of :func:`run_block` advances C configurations of perturbed SGD on
the logistic chain f₁ = −y hᵀw, f₂ = ln(1 + e^{f₁}) through iterations
t0..t1−1.  For each tile of TILE samples (a slice of the data that stays in
L1) every configuration does, in the pass precision FLOAT:

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

Perturbations arrive as the numbers of their protocol (:mod:`fbsgd.engine.lockstep`):
kind 1 adds U(a, b) noise, kind 2 rounds to a low-precision format, kind 3
flips bits, each acting at t = first, first + interval, ... < until, with the
core's random streams and keys, so the kernel and
:func:`fbsgd.passes.perturbed_passes` compute the same run.

Precision: this file is the float32 kernel.  :func:`fbsgd.engine.lockstep.kernel`
loads it from a copy in the kernel folder whose name carries the hash of the
package's source (so edited code never runs old machine code); the float64
kernel is the same copy with the three lines under "precision" changed.
"""
import math

import numpy as np
from numba import njit

from fbsgd import rng
from fbsgd.lowprec import round_scalar
from fbsgd.optimizers import DIVERGENCE_THRESHOLD
from fbsgd.vecmath import bits_to_f32, f32_to_bits, sigmoid_fast, sigmoid_fast32  # noqa: F401

# precision (the float64 kernel: np.float64, sigmoid_fast, rng.uniform01_scalar)
FLOAT = np.float32
SIGMOID = sigmoid_fast32
UNIFORM = rng.uniform01_f32

FASTMATH = {"contract", "reassoc"}  # fixed reassociation: deterministic, the same for every batch
TILE = 256  # samples per tile
NEVER = 2**62  # "no last step"

# one record per configuration: the update's numbers, then each place's protocol numbers
PLACE_FIELDS = (("kind", np.int64), ("a", np.float64), ("b", np.float64), ("c", np.float64), ("d", np.float64),
                ("flag", np.int64), ("ps", np.int64), ("interval", np.int64), ("first", np.int64),
                ("until", np.int64), ("key", np.uint64))
PARAMS = np.dtype([("gamma", np.float64), ("rho", np.float64), ("reg", np.int64), ("noise_std", np.float64),
                   ("xi_key", np.uint64), ("f_star", np.float64), ("metric64", np.int64)]
                  + [(f"f_{n}", t) for n, t in PLACE_FIELDS] + [(f"b_{n}", t) for n, t in PLACE_FIELDS])


# ---------------------------------------------------------------------------
# the regularizer R of Section 7 (reg 0: Σ w²/(1+w²), reg 1: ‖w‖²)
# ---------------------------------------------------------------------------


@njit(inline="always", cache=True)
def reg_grad(w, reg):
    """∂R/∂w_j."""
    if reg == 0:
        return 2.0 * w / ((1.0 + w * w) * (1.0 + w * w))
    return 2.0 * w


@njit(inline="always", cache=True)
def reg_value(w, reg):
    """The j-th term of R(w)."""
    if reg == 0:
        return w * w / (1.0 + w * w)
    return w * w


# ---------------------------------------------------------------------------
# one tile of the pass
# ---------------------------------------------------------------------------


@njit(inline="always", cache=True)
def scores(AT, l0, n, w, z):
    """(4a): z_l = −a_lᵀw for the samples l0..l0+n−1 (``AT`` holds a_l as its columns)."""
    for i in range(n):
        z[i] = 0.0
    for j in range(w.size):
        wj, row = w[j], AT[j, l0:l0 + n]  # a 1-D slice: LLVM vectorizes the loop over samples
        for i in range(n):
            z[i] -= row[i] * wj


@njit(inline="always", cache=True)
def acts(t, first, interval, until):
    """Whether a perturbation with this schedule acts at iteration t."""
    return first <= t < until and (t - first) % interval == 0


@njit(inline="always", cache=True)
def next_flip(key, t, j, p, total, denom):
    """Position of the next flipped bit at or after ``p`` (``total``: none), found as
    :func:`fbsgd.lowprec.flip_bits_inplace` finds it with its j-th draw."""
    u = rng.uniform01_scalar(key, t, j)
    gap = np.floor(math.log1p(-u) / denom)
    if gap >= total - p:
        return total
    return p + np.int64(gap)


@njit(inline="always", cache=True)
def flip(v, bit):
    """``v`` with one bit of its float32 pattern flipped, in v's type."""
    mask = np.int32(np.int64(1) << bit) if bit < 31 else np.int32(-2147483648)
    return bits_to_f32(f32_to_bits(np.float32(v)) ^ mask)


@njit(inline="always", cache=True)
def perturb(z, n, l0, M, t, kind, a, b, c, d, flag, ps, key, cursor):
    """(5a)/(5b): apply one perturbation to entries l0..l0+n−1 of a message of M entries, in place.

    kind 1, U(a, b) noise: draw number l (or 0 when shared by the batch, ps = 0);
    kind 2, rounding: a mantissa bits, b emin, c max finite, d has inf, flag stochastic;
    kind 3, bit flips: a rate, b lowest bit, c number of bits; ``cursor`` carries the
    position of the next flip and the draw count across the tiles of one step.
    """
    if kind == 1:
        if a != 0.0 or b != 0.0:
            lo, wd = FLOAT(a), FLOAT(b - a)
            if ps == 0:  # one draw shared by the batch: the same number for every sample, drawn once
                shift = lo + wd * UNIFORM(key, t, 0)
                for i in range(n):
                    z[i] += shift
            else:
                for i in range(n):
                    z[i] += lo + wd * UNIFORM(key, t, (l0 + i) * ps)
    elif kind == 2:
        for i in range(n):
            u = rng.uniform01_scalar(key, t, l0 + i) if flag != 0 else -1.0
            z[i] = round_scalar(np.float64(z[i]), np.int64(a), np.int64(b), c, d != 0.0, u)
    elif kind == 3:
        lo_bit, nb = np.int64(b), np.int64(c)
        if a >= 1.0:
            for i in range(n):
                for k in range(nb):
                    z[i] = flip(z[i], lo_bit + k)
        elif a > 0.0:
            denom = math.log1p(-a)
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


@njit(inline="always", cache=True)
def sigmoid(z, n, out):
    """σ on the tile: the derivative ∇₁f₂ = σ(z) of the logistic loss."""
    for i in range(n):
        out[i] = SIGMOID(z[i])


@njit(inline="always", cache=True)
def accumulate(AT, l0, n, v, G, c):
    """(5c), the tile's share in the pass precision: G[c, j] += Σ_l a_lj ṽ_l."""
    for j in range(G.shape[1]):
        acc, row = FLOAT(0.0), AT[j, l0:l0 + n]
        for i in range(n):
            acc += row[i] * v[i]
        G[c, j] += acc


@njit(inline="always", cache=True)
def accumulate64(AT, l0, n, s, G, c):
    """The metric's share: G[c, j] += Σ_l a_lj σ(z_l) summed in float64."""
    for j in range(G.shape[1]):
        acc, row = 0.0, AT[j, l0:l0 + n]
        for i in range(n):
            acc += np.float64(row[i]) * np.float64(s[i])
        G[c, j] += acc


# ---------------------------------------------------------------------------
# once per iteration and configuration
# ---------------------------------------------------------------------------


@njit(inline="always", cache=True)
def gradient_norm(Gm, w, rho, reg, M):
    """‖∇f(w)‖ = ‖−(1/M) Σ_l a_l σ(z_l) + ρ∇R(w)‖."""
    total = 0.0
    for j in range(w.size):
        g = -Gm[j] / M + rho * reg_grad(w[j], reg)
        total += g * g
    return math.sqrt(total)


@njit(inline="always", cache=True)
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


@njit(fastmath=FASTMATH, cache=True)
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


@njit(cache=True)
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


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def run_block(AT, AT64, W, t0, t1, metric_every, P, norms, gap_at, gaps, diverged_at):
    """Advance the C configurations of ``P`` (records of :data:`PARAMS`) from iteration t0 to t1.

    ``W`` (C, d) float64 weights, updated in place; ``norms[c, t // metric_every]``
    receives ‖∇f(w_t)‖ at every metric step; ``gaps[c, k]`` receives f(w_t) − f* at
    t = gap_at[k] (sorted); ``diverged_at[c]`` the iteration at which a run
    diverged (it is then frozen), −1 while it has not.
    """
    C, D = W.shape
    M = AT.shape[1]
    z = np.empty(TILE, FLOAT)
    s = np.empty(TILE, FLOAT)
    Wf = np.empty((C, D), FLOAT)
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
                scores(AT, l0, n, Wf[c], z)
                fwd = p.f_kind != 0 and acts(t, p.f_first, p.f_interval, p.f_until)
                bwd = p.b_kind != 0 and acts(t, p.b_first, p.b_interval, p.b_until)
                if metric and (fwd or bwd):  # the metric needs σ(z) of the clean pass
                    sigmoid(z, n, s)
                    accumulate64(AT, l0, n, s, Gm, c)
                if fwd:
                    perturb(z, n, l0, M, t, p.f_kind, p.f_a, p.f_b, p.f_c, p.f_d, p.f_flag, p.f_ps, p.f_key, cursor[c, 0])
                sigmoid(z, n, z)
                if metric and not (fwd or bwd):
                    accumulate64(AT, l0, n, z, Gm, c)
                if bwd:
                    perturb(z, n, l0, M, t, p.b_kind, p.b_a, p.b_b, p.b_c, p.b_d, p.b_flag, p.b_ps, p.b_key, cursor[c, 1])
                accumulate(AT, l0, n, z, G, c)
        for c in range(C):
            if diverged_at[c] >= 0:
                continue
            if metric:
                if P[c].metric64 != 0:  # the reference: the metric from its own float64 pass
                    clean_sums64(AT64, W[c], Gm[c])
                norms[c, t // metric_every] = gradient_norm(Gm[c], W[c], P[c].rho, P[c].reg, M)
            if update(W[c], G[c], P[c], t, M):
                diverged_at[c] = t
