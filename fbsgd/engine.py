"""The compiled sweep engine for the Section 7 experiments.

It runs many configurations of perturbed SGD on the logistic regression of
eqs. (53)-(54) in lockstep: one numba kernel advances a block of C
configurations through the same iterations, with the configurations in the
SIMD lanes, so the data matrix is streamed once per iteration for all of them.

What one iteration computes for configuration c is the perturbed pass of
:func:`fbsgd.passes.perturbed_passes` on the two-operator chain
f₁ = -y hᵀw, f₂ = ln(1 + e^{f₁}), written out for this chain:

    z_l   = f₁(a_l, w) = -a_lᵀw                     (4a), with a_l = y_l h_l
    z̃_l   = z_l + δ_l                               (5a)  forward perturbation
    ṽ_l   = ∇₁f₂(z̃_l) + ε_l = σ(z̃_l) + ε_l          (5b)  backward perturbation
    ũ     = (1/M) Σ_l ∇₂f₁ᵀ ṽ_l = -(1/M) Σ_l a_l ṽ_l (5c)
    w    ← w - γ (ũ + ρ∇R(w) + ξ),  ξ ~ N(0, σ_n² I)  (5d) + sampling noise

The perturbations are the core's objects (:mod:`fbsgd.perturbations`), read
by :func:`compile_plan`, and every random number is drawn from the same
counter-based streams (:mod:`fbsgd.rng`) with the same keys as the core.
:func:`reference_run` runs the same configuration through the core passes
in a plain Python loop; ``tests/test_engine.py`` checks that the two agree,
and ``benchmarks/engine_speed.py`` times one against the other.

The metric is the exact, unperturbed gradient norm ‖∇f(w_t)‖ of the
regularized loss, evaluated in float64 every ``metric_every`` iterations; the
sweep smooths it afterwards (:func:`fbsgd.metrics.ewma`).  A configuration whose weights overflow or exceed 1e8 is
marked diverged at that iteration and frozen; nothing raises and nothing warns.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from . import rng
from .lowprec import _bits_to_f32, _f32_to_bits, round_scalar
from .optimizers import DIVERGENCE_THRESHOLD
from .perturbations import Plan

__all__ = ["KernelParams", "compile_plan", "kernel", "sigmoid_fast", "sigmoid_fast32", "reference_run", "xi_key"]


# ----------------------------------------------------------------------------
# A vectorizable sigmoid.  numba's math.exp calls libm (scalar, ~6 ns); this
# one is a degree-12 polynomial after Cody-Waite range reduction, with the
# power of two assembled from bits, so LLVM can vectorize the loop around it.
# Relative error < 1e-15 on the clamped range (tests/test_engine.py).
# ----------------------------------------------------------------------------


def _bitcast(int_type, float_type, ir_type):
    """An intrinsic reinterpreting the bits of an integer as a float (free on every CPU)."""

    @intrinsic
    def cast(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir_type)

        return float_type(int_type), codegen

    return cast


_bits_to_double = _bitcast(types.int64, types.float64, ir.DoubleType())
_bits_to_float = _bitcast(types.int32, types.float32, ir.FloatType())


_LOG2E = 1.4426950408889634
_LN2_HI = 0.693147180369123816490
_LN2_LO = 1.90821492927058770002e-10


@njit(inline="always", cache=True, error_model="numpy")
def _exp(x):
    x = min(max(x, -700.0), 700.0)
    k = np.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720 + r * (
        1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600))))))))))))
    return p * _bits_to_double((np.int64(k) + 1023) << 52)


@njit(inline="always", cache=True, error_model="numpy")
def sigmoid_fast(z):
    """σ(z) = 1 / (1 + e^{-z}), vectorizable."""
    return 1.0 / (1.0 + _exp(-z))


# ----------------------------------------------------------------------------
# Per-configuration parameters of the kernel
# ----------------------------------------------------------------------------


class KernelParams:
    """Arrays of length C, one entry per configuration (the SIMD lanes).

    Each perturbation place (``f_`` forward after f₁, ``b_`` backward after
    ∂f₂/∂f₁) is described by the perturbation's own :class:`~fbsgd.perturbations.CompiledOp`
    (``kind`` and up to four numbers ``a``–``d`` and a ``flag``) and its
    :class:`~fbsgd.perturbations.Schedule` (``from``, ``int``, ``until``).
    """

    PLACE = (("kind", np.int64), ("a", np.float64), ("b", np.float64), ("c", np.float64), ("d", np.float64),
             ("flag", np.int64), ("ps", np.int64), ("int", np.int64), ("from", np.int64), ("until", np.int64),
             ("key", np.uint64))
    FIELDS = (
        (("gamma", np.float64), ("rho", np.float64), ("reg", np.int64), ("noise_std", np.float64))
        + tuple((f"f_{n}", t) for n, t in PLACE) + tuple((f"b_{n}", t) for n, t in PLACE)
        + (("xi_key", np.uint64),)
    )

    def __init__(self, rows: list[dict]):
        for name, dtype in self.FIELDS:
            setattr(self, name, np.array([r[name] for r in rows], dtype=dtype))

    def arrays(self):
        return tuple(getattr(self, name) for name, _ in self.FIELDS)


_NEVER = 2**62  # "no last step"
KINDS = {"none": 0, "uniform": 1, "round": 2, "bitflip": 3}


def _place_row(p, key: int) -> dict:
    """Kernel numbers of one placed perturbation, read from its protocol (compiled op and schedule)."""
    off = dict(kind=0, a=0.0, b=0.0, c=0.0, d=0.0, flag=0, ps=0, int=1, **{"from": 0}, until=0, key=0)
    if p is None:
        return off
    op, sched = p.compiled(), p.schedule
    if not sched.regular:
        raise NotImplementedError(
            f"the compiled engine needs a schedule with a first step, an interval and a last step; {p!r} acts at "
            "irregular steps. Use evenly spaced steps (every, budget) or fbsgd.passes.perturbed_passes")
    if sched.empty or op.kind not in KINDS:
        if op.kind not in KINDS:
            raise NotImplementedError(f"the compiled engine has no kernel for operations of kind {op.kind!r} ({p!r})")
        return off
    nums = [float(v) for v in op.params[:4]] + [0.0] * (4 - min(4, len(op.params)))
    flag = int(op.params[4]) if len(op.params) > 4 else 0
    until = _NEVER if sched.last is None else sched.last + 1
    return dict(kind=KINDS[op.kind], a=nums[0], b=nums[1], c=nums[2], d=nums[3], flag=flag, ps=int(op.per_sample),
                int=sched.interval, **{"from": sched.first}, until=until, key=key)


def compile_plan(plan: Plan, seed: int) -> dict:
    """Kernel parameters of a core Plan: δ at operator 1 and ε at operator 2 of the logistic chain.

    Reads each perturbation's protocol; anything the kernel cannot run raises
    ``NotImplementedError`` naming the perturbation and what the engine supports.
    """
    plan.validate(2)
    extra = set(plan.forward) - {1} | set(plan.backward) - {2}
    if extra:
        raise NotImplementedError(f"the logistic chain takes δ at operator 1 and ε at operator 2 only; got {sorted(extra)}")
    state = plan.init(seed)
    row = {}
    for prefix, where, i, perts in (("f", "forward", 1, plan.forward), ("b", "backward", 2, plan.backward)):
        p = perts.get(i)
        place = _place_row(p, state[(where, i)].key if p is not None else 0)
        row.update({f"{prefix}_{k}": v for k, v in place.items()})
    return row


def xi_key(seed: int) -> int:
    """Key of the sampling-noise stream ξ of a run."""
    return rng.derive_key("fbsgd.engine.xi", int(seed))


# ----------------------------------------------------------------------------
# The kernel
# ----------------------------------------------------------------------------

_FM = {"contract", "reassoc"}  # fixed reassociation: deterministic, and the same for every batch


TILE = 256  # samples per tile: a (d, TILE) slice of the data stays in L1 while every configuration uses it

_F32_LOG2E = np.float32(1.4426950408889634)
_F32_LN2_HI = np.float32(0.693145751953125)
_F32_LN2_LO = np.float32(1.428606765330187e-06)
_F32_ONE = np.float32(1.0)
_F32_U24 = np.float32(1.0 / 16777216.0)  # 2**-24
_S40 = np.uint64(40)


@njit(inline="always", cache=True, error_model="numpy")
def _exp32(x):
    x = min(max(x, np.float32(-87.0)), np.float32(87.0))
    k = np.floor(x * _F32_LOG2E + np.float32(0.5))
    r = (x - k * _F32_LN2_HI) - k * _F32_LN2_LO
    p = _F32_ONE + r * (_F32_ONE + r * (np.float32(0.5) + r * (np.float32(1.0 / 6) + r * (np.float32(1.0 / 24) + r * (
        np.float32(1.0 / 120) + r * np.float32(1.0 / 720))))))
    return p * _bits_to_float((np.int32(k) + np.int32(127)) << np.int32(23))


@njit(inline="always", cache=True, error_model="numpy")
def sigmoid_fast32(z):
    return _F32_ONE / (_F32_ONE + _exp32(-z))


@njit(inline="always", cache=True)
def uniform01_f32(key, step, index):
    """The same stream as :func:`fbsgd.rng.uniform01_scalar`, rounded down to 24 bits."""
    ctr = (np.uint64(step) << np.uint64(32)) + np.uint64(index) + np.uint64(1)
    z = rng._mix(np.uint64(key) + ctr * rng._GOLDEN)
    return np.float32(z >> _S40) * _F32_U24


# ----------------------------------------------------------------------------
# Input-dependent perturbations on one tile of a message (one number per sample):
# rounding to a low-precision format and bit flips, with the core's draws.
# ----------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _next_flip(key, t, j, p, total, denom):
    """Position of the next flipped bit at or after ``p`` (``total``: none), as
    :func:`fbsgd.lowprec.flip_bits_inplace` finds it with its j-th draw."""
    u = rng.uniform01_scalar(key, t, j)
    gap = np.floor(math.log1p(-u) / denom)
    if gap >= total - p:
        return total
    return p + np.int64(gap)


@njit(inline="always", cache=True)
def _flip(v, bit):
    """``v`` (float32 or float64) with one bit of its float32 pattern flipped, in v's type."""
    x = np.float32(v)
    return _bits_to_f32(_f32_to_bits(x) ^ np.int32(np.int64(1) << bit) if bit < 31 else _f32_to_bits(x) ^ np.int32(-2147483648))


@njit(inline="always", cache=True)
def perturb_tile(z, n, l0, M, t, kind, a, b, c, d, flag, key, cursor):
    """Apply a rounding (kind 2) or bit-flip (kind 3) perturbation to entries l0..l0+n−1 of a
    message of M entries, in place.  ``cursor`` carries the bit-flip stream across tiles."""
    if kind == 2:  # Round: a = mantissa bits, b = emin, c = max finite, d = has inf, flag = stochastic
        for i in range(n):
            u = rng.uniform01_scalar(key, t, l0 + i) if flag != 0 else -1.0
            z[i] = round_scalar(np.float64(z[i]), np.int64(a), np.int64(b), c, d != 0.0, u)
    elif kind == 3:  # BitFlip: a = rate, b = lowest bit, c = number of bits
        lo_bit, nb = np.int64(b), np.int64(c)
        total = np.int64(M) * nb
        if a >= 1.0:
            for i in range(n):
                for k in range(nb):
                    z[i] = _flip(z[i], lo_bit + k)
        elif a > 0.0:
            denom = math.log1p(-a)
            if l0 == 0:
                cursor[0] = _next_flip(key, t, 0, 0, total, denom)
                cursor[1] = 1
            end = np.int64(l0 + n) * nb
            while cursor[0] < end:
                e = cursor[0] // nb
                z[e - l0] = _flip(z[e - l0], cursor[0] - e * nb + lo_bit)
                cursor[0] = _next_flip(key, t, cursor[1], cursor[0] + 1, total, denom)
                cursor[1] += 1


# The kernel is generated for the feature dimension d so that the products
# a_lᵀw and Σ_l a_l ṽ_l are written out term by term (r0[i]*w0 + r1[i]*w1 + ...):
# numba cannot vectorize a short inner loop over d, but it vectorizes the
# unrolled form over the samples i.  FLOAT is float32 or float64 (the
# precision of the perturbed pass); the metric pass is always float64.
_KERNEL_TEMPLATE = """
def run_block(AT, AT64, W, t0, t1, metric_every,
              gamma, rho, reg, noise_std,
              f_kind, f_a, f_b, f_c, f_d, f_flag, f_ps, f_int, f_from, f_until, f_key,
              b_kind, b_a, b_b, b_c, b_d, b_flag, b_ps, b_int, b_from, b_until, b_key,
              xi_key, trace, diverged_at):
    M = AT.shape[1]
    C = W.shape[0]
    inv_m = 1.0 / M
    z = np.empty(TILE, FLOAT)
    G = np.empty((C, D))
    f_cursor = np.zeros((C, 2), np.int64)  # bit flips: next flipped position and draw count, per configuration
    b_cursor = np.zeros((C, 2), np.int64)
    for t in range(t0, t1):
        if t % metric_every == 0:
            _metric(AT64, W, t, metric_every, rho, reg, trace, diverged_at)
        G[:, :] = 0.0
        for l0 in range(0, M, TILE):
            n = min(TILE, M - l0)
{rows}
            for c in range(C):
                if diverged_at[c] >= 0:
                    continue
{weights}
                # (4a): z_l = f1(a_l, w) = -a_l^T w
                for i in range(n):
                    z[i] = -({a_dot_w})
                # (5a): z~_l = P(z_l), e.g. z_l + delta_l (draw number l, or draw 0 when shared by the batch)
                if f_kind[c] != 0 and f_from[c] <= t < f_until[c] and (t - f_from[c]) % f_int[c] == 0:
                    if f_kind[c] == 1:
                        if f_a[c] != 0.0 or f_b[c] != 0.0:
                            lo, wd, key, ps = FLOAT(f_a[c]), FLOAT(f_b[c] - f_a[c]), f_key[c], f_ps[c]
                            for i in range(n):
                                z[i] += lo + wd * UNIFORM(key, t, (l0 + i) * ps)
                    else:
                        perturb_tile(z, n, l0, M, t, f_kind[c], f_a[c], f_b[c], f_c[c], f_d[c], f_flag[c], f_key[c], f_cursor[c])
                # (5b): v~_l = grad_1 f2(z~_l) + eps_l = sigma(z~_l) + eps_l
                for i in range(n):
                    z[i] = SIGMOID(z[i])
                if b_kind[c] != 0 and b_from[c] <= t < b_until[c] and (t - b_from[c]) % b_int[c] == 0:
                    if b_kind[c] == 1:
                        if b_a[c] != 0.0 or b_b[c] != 0.0:
                            lo, wd, key, ps = FLOAT(b_a[c]), FLOAT(b_b[c] - b_a[c]), b_key[c], b_ps[c]
                            for i in range(n):
                                z[i] += lo + wd * UNIFORM(key, t, (l0 + i) * ps)
                    else:
                        perturb_tile(z, n, l0, M, t, b_kind[c], b_a[c], b_b[c], b_c[c], b_d[c], b_flag[c], b_key[c], b_cursor[c])
                # (5c): sum_l a_l v~_l over the tile, so that u~ = -(1/M) sum_l a_l v~_l
{zero_acc}
                for i in range(n):
                    v = z[i]
{acc}
{store_acc}
        # (5d): w <- w - gamma (u~ + rho grad R(w) + xi),  xi ~ N(0, noise_std^2 I)
        for c in range(C):
            if diverged_at[c] >= 0:
                continue
            bad = False
            for j in range(D):
                w = W[c, j]
                rg = 2.0 * w / ((1.0 + w * w) * (1.0 + w * w)) if reg[c] == 0 else 2.0 * w
                gj = -G[c, j] * inv_m + rho[c] * rg + noise_std[c] * rng.normal_scalar(xi_key[c], t, j)
                w = w - gamma[c] * gj
                W[c, j] = w
                if not (abs(w) <= DIVERGENCE_THRESHOLD):
                    bad = True
            if bad:
                diverged_at[c] = t


def _metric(AT64, W, t, metric_every, rho, reg, trace, diverged_at):
    # The metric: the exact, unperturbed gradient norm at w_t, in float64.
    M = AT64.shape[1]
    C = W.shape[0]
    z = np.empty(TILE)
    for c in range(C):
        if diverged_at[c] >= 0:
            continue
{weights64}
{zero_g64}
        for l0 in range(0, M, TILE):
            n = min(TILE, M - l0)
{rows64}
            for i in range(n):
                z[i] = sigmoid_fast(-({a_dot_w64}))
{zero_acc64}
            for i in range(n):
                v = z[i]
{acc64}
{add_acc64}
        nrm = 0.0
{norm64}
        trace[c, t // metric_every] = math.sqrt(nrm)
"""


def _kernel_source(d: int) -> str:
    idx = range(d)
    ind = lambda k, lines: "\n".join(" " * k + line for line in lines)
    norm_lines = []
    for j in idx:
        norm_lines += [f"w = W[c, {j}]",
                       f"rg = 2.0 * w / ((1.0 + w * w) * (1.0 + w * w)) if reg[c] == 0 else 2.0 * w",
                       f"gj = -g64_{j} / M + rho[c] * rg",
                       f"nrm += gj * gj"]
    return _KERNEL_TEMPLATE.format(
        rows=ind(12, [f"r{j} = AT[{j}, l0:l0 + n]" for j in idx]),
        rows64=ind(12, [f"r{j} = AT64[{j}, l0:l0 + n]" for j in idx]),
        weights=ind(16, [f"w{j} = FLOAT(W[c, {j}])" for j in idx]),
        weights64=ind(8, [f"w{j} = W[c, {j}]" for j in idx]),
        a_dot_w=" + ".join(f"r{j}[i] * w{j}" for j in idx),
        a_dot_w64=" + ".join(f"r{j}[i] * w{j}" for j in idx),
        zero_acc=ind(16, [f"acc{j} = FLOAT(0.0)" for j in idx]),
        acc=ind(20, [f"acc{j} += r{j}[i] * v" for j in idx]),
        zero_acc64=ind(12, [f"acc{j} = 0.0" for j in idx]),
        acc64=ind(16, [f"acc{j} += r{j}[i] * v" for j in idx]),
        store_acc=ind(16, [f"G[c, {j}] += acc{j}" for j in idx]),
        zero_g64=ind(8, [f"g64_{j} = 0.0" for j in idx]),
        add_acc64=ind(12, [f"g64_{j} += acc{j}" for j in idx]),
        norm64=ind(8, norm_lines),
    )


_KERNELS: dict = {}

_MODULE_HEADER = """# Generated by fbsgd.engine.kernel() from _KERNEL_TEMPLATE; do not edit.
# Compiled against fbsgd sources {sources}: any edit to a module this kernel
# reaches (or another numpy/numba/llvmlite/scipy) gives a new file, hence new machine code.
import math
import numpy as np
from numba import njit
from fbsgd import rng
from fbsgd.engine import DIVERGENCE_THRESHOLD, TILE, _FM, perturb_tile, sigmoid_fast, sigmoid_fast32, uniform01_f32

D = {d}
FLOAT = np.{precision}
SIGMOID = {sigmoid}
UNIFORM = {uniform}
"""


def kernel_dir() -> Path:
    """Where generated kernels live ($FBSGD_KERNEL_DIR, else ~/.cache/fbsgd/kernels); numba caches their machine code beside them."""
    env = os.environ.get("FBSGD_KERNEL_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fbsgd" / "kernels"


def kernel(d: int, precision: str = "float32"):
    """The compiled kernel for feature dimension ``d`` and the given precision of the perturbed pass.

    The source is generated from the template, written to :func:`kernel_dir`
    (atomically, only if it changed) and imported from there, so numba's
    on-disk cache makes every later process start without compiling.  The
    file's name is a hash of its text, which includes the hash of every fbsgd
    module the engine imports (:func:`fbsgd.provenance.source_hash`), so an
    edit anywhere the kernel reaches can never run old machine code.
    """
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    if int(d) != d or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    key = (int(d), precision)
    if key in _KERNELS:
        return _KERNELS[key]
    from .provenance import source_hash

    header = _MODULE_HEADER.format(
        d=int(d), precision=precision, sources=source_hash("fbsgd.engine"),
        sigmoid="sigmoid_fast32" if precision == "float32" else "sigmoid_fast",
        uniform="uniform01_f32" if precision == "float32" else "rng.uniform01_scalar",
    )
    body = _kernel_source(int(d))
    body = body.replace("\ndef run_block(", '\n@njit(fastmath=_FM, error_model="numpy", cache=True)\ndef run_block(')
    body = body.replace("\ndef _metric(", '\n@njit(fastmath=_FM, error_model="numpy", cache=True)\ndef _metric(')
    source = header + body
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"fbsgd_kernel_d{int(d)}_{precision}_{digest}"
    path = kernel_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        from .report import atomic_write_bytes

        atomic_write_bytes(path, source.encode())
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _KERNELS[key] = module.run_block
    return module.run_block


# ----------------------------------------------------------------------------
# The naive reference: the same run through the core passes, one step at a time
# ----------------------------------------------------------------------------


def reference_run(problem, plan: Plan, plan_seed: int, gamma: float, T: int, noise_std: float, noise_seed_key: int,
                  w0=None, metric_every: int = 1):
    """One configuration through the core: :func:`fbsgd.optimizers.train` with the perturbed
    passes as estimator, the regularizer's gradient, and the sampling noise ξ as a transformation.

    Returns (w_T, ‖∇f(w_t)‖ at t = 0, k, 2k, ... < T, diverged_at or −1).  Same
    arithmetic as the float64 kernel up to floating-point rounding.
    """
    from .optimizers import SGD, AddNoise, PassGradient, train

    w0 = np.zeros(problem.d) if w0 is None else np.array(w0, dtype=float)
    estimator = _SeededPasses(PassGradient(problem.net, plan), plan_seed)
    run = train(estimator, w0, AddNoise(SGD(gamma), noise_std, noise_seed_key), T, problem.data,
                regularizer_grad=lambda w: problem.rho * problem.regularizer.gradient(w),
                metrics={"grad_norm": lambda w: float(np.linalg.norm(problem.gradient(w)))}, record_every=metric_every)
    keep = run.t < T
    norms = run["grad_norm"][keep]
    if run.diverged:
        norms = norms[run.t[keep] <= run.diverged_at]
    return run.w, norms, run.diverged_at


class _SeededPasses:
    """The passes with the plan's streams keyed by ``plan_seed`` (as the sweeps key them)."""

    def __init__(self, passes, plan_seed):
        self.passes, self.plan_seed = passes, plan_seed

    def init(self, seed):
        return self.passes.init(self.plan_seed)

    def __call__(self, w, x, state):
        return self.passes(w, x, state)
