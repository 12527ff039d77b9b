"""Speed of the Section 7 engine, measured in one run on this machine.

Compares, on the same configurations,
  * the naive reference: one configuration at a time, a Python loop over t,
    each step through fbsgd.passes.perturbed_passes (same arithmetic, float64);
  * the engine: fbsgd.engine.sweeps.run_sweep, all configurations in lockstep in the
    compiled kernel, chunks spread over both cores with joblib;
and projects the wall time of the book's full Section 7 grid (Figures 3–8 at
T = 200,000) from the engine's speed on a random sample of that grid.

The projection times the sample at two horizons (T/4 and T), fits
wall = fixed + per-iteration × T, and extrapolates to the grid's T, so the
fixed cost of a sweep is counted once per sweep, not once per 20,000 steps.

Peers measured in the same run:
  * the heavy workload (forward and backward per-sample perturbations, the exact
    gradient norm at every step, float32, 128 configurations on 2 workers, timed
    as a long-minus-short difference so that fixed costs cancel) through fbsgd,
    through a fused hand-written numba kernel of the same workload
    (:func:`fused_heavy`, one function), and through JAX (jit of vmap over the
    configurations of scan over the steps) when jax can be imported;
  * the forward message rounded to bfloat16 against the clean chain (fbsgd's
    Round; JAX's native casts), one core;
  * a researcher's own compiled element kind (:class:`RoundToBits`, an
    ElementOp written here, outside fbsgd) against the built-in Round of the
    same format, one core;
  * a researcher's own compiled block kind (:class:`UserMXFP8`, a BlockOp written
    here: MXFP8 E4M3 blocks of 32 consecutive samples with a power-of-two shared
    scale) at the forward message of the heavy workload against the built-in
    Round("float8_e4m3fn") there, and the built-in fbsgd.formats.MX (axis=0) through
    the engine, one core (``--parts block``).

Run:  .venv/bin/python benchmarks/engine_speed.py [--sample 64] [--T 20000] [--naive-T 300] [--parts heavy,rounding]
      .venv/bin/python benchmarks/engine_speed.py --jax-site /tmp/jaxvenv/lib/python3.11/site-packages
      NUMBA_CPU_NAME=haswell .venv/bin/python benchmarks/engine_speed.py   # AVX2 code only
(jax is not a dependency: ``python3.11 -m venv /tmp/jaxvenv && /tmp/jaxvenv/bin/pip install jax numpy``.)
The last line is machine-readable, e.g.:
  speedup_vs_naive=<x> us_per_config_iteration=<z> full_grid_minutes=<y> heavy_us_per_config_iteration=<h>
  fbsgd_over_fused=<r> fbsgd_over_jax=<r> bfloat16_forward_us=<b> clean_us=<c> element_over_round=<e>
  block_over_round=<k> mx_over_round=<m> ...
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from fbsgd import formats as F
from fbsgd import lowprec
from fbsgd import perturbations as P
from fbsgd import rng
from fbsgd.engine import kernel as K
from fbsgd.engine import lockstep as E
from fbsgd.engine.sweeps import RunConfig, run_sweep
from fbsgd.studies.section7.design import book_grid
from fbsgd.vecmath import bits_to_f64, f64_to_bits, sigmoid_fast32


def naive_us(configs, T):
    """µs per configuration-iteration of the reference loop (float64 numpy passes)."""
    start = time.perf_counter()
    for c in configs:
        E.reference_run(c.problem(), c.plan(), c.stream_seed(), c.gamma, T, c.noise_std, E.xi_key(c.stream_seed()),
                        metric_every=c.metric_every)
    return (time.perf_counter() - start) / (len(configs) * T) * 1e6


def engine_walls(sample, horizons, n_jobs, repeats=3):
    """Wall seconds of one sweep of ``sample`` at each horizon T (the engine, ``n_jobs`` workers),
    the fastest of ``repeats`` sweeps, the horizons interleaved so that a slow moment hits each alike."""
    walls = {T: float("inf") for T in horizons}
    for _ in range(repeats):
        for T in horizons:
            configs = [RunConfig(**{**c.__dict__, "T": T}) for c in sample]
            walls[T] = min(walls[T], run_sweep(configs, n_jobs=n_jobs, cache_dir=False, progress=False).wall_s)
    return walls


def host_cpu() -> str:
    """The CPU numba compiles for (``NUMBA_CPU_NAME`` overrides it) and whether AVX-512 is used."""
    import llvmlite.binding as llvm

    name = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
    features = os.environ.get("NUMBA_CPU_FEATURES") or llvm.get_host_cpu_features().flatten()
    wide = "+avx512f" in features and not os.environ.get("NUMBA_CPU_NAME")
    return f"{name} ({'AVX-512' if wide else 'no AVX-512'} in the generated code)"


def kernel_us(kinds: dict, C=16, T_short=1000, T_long=5000, repeats=5) -> dict:
    """Single-core µs per configuration-iteration of the kernel (direct calls) for each kind of work.

    ``kinds``: name -> RunConfig fields.  Timed as the difference between a long and a short run of
    the same C configurations, so fixed costs cancel; the kinds are interleaved within each of the
    ``repeats`` rounds and each keeps its fastest round, so a slow moment of a shared machine hits
    every kind alike and is then dropped.
    """
    runs = {}
    for name, kw in kinds.items():
        cfgs = [RunConfig(gamma=0.05, seed=s, **kw) for s in range(C)]
        c0 = cfgs[0]
        AT64 = np.ascontiguousarray(c0.problem().signed_features.T)
        runs[name] = (c0, AT64.astype(c0.precision), AT64, E.kernel_params([c.kernel_row() for c in cfgs]),
                      E.kernel(c0.d, c0.precision))

    def seconds(name, T):
        c0, AT, AT64, params, run = runs[name]
        W = np.zeros((C, c0.d))
        norms = np.full((C, -(-T // c0.metric_every)), np.nan)
        start = time.perf_counter()
        run(AT, AT64, W, 0, T, c0.metric_every, params, norms, np.zeros(0, np.int64), np.zeros((C, 0)),
            np.full(C, -1, np.int64))
        return time.perf_counter() - start

    for name in kinds:
        seconds(name, 20)  # compile (or load) outside the timing
    best = {name: float("inf") for name in kinds}
    for _ in range(repeats):
        for name in kinds:
            best[name] = min(best[name], (seconds(name, T_long) - seconds(name, T_short)) / (C * (T_long - T_short)) * 1e6)
    return best


def unrolled_vs_loops(C=16, T_short=1000, T_long=5000, repeats=5) -> tuple[float, float]:
    """Single-core µs per configuration-iteration of the heavy workload (metric every 10 steps) through the
    kernel with its dot products written out for d = 10 (``block_kernel(10)``, the engine's) and with plain
    loops over the features (``block_kernel(10, unrolled=False)``), interleaved as :func:`kernel_us`."""
    cfgs = [RunConfig(gamma=0.05, seed=s, perturbation="both", sigma_f=1.0, sigma_b=1.0) for s in range(C)]
    AT64 = np.ascontiguousarray(cfgs[0].problem().signed_features.T)
    AT, params = AT64.astype(np.float32), E.kernel_params([c.kernel_row() for c in cfgs])
    kernels = {True: K.block_kernel(10), False: K.block_kernel(10, unrolled=False)}

    def seconds(unrolled, T):
        W, norms = np.zeros((C, 10)), np.full((C, -(-T // 10)), np.nan)
        start = time.perf_counter()
        kernels[unrolled](AT, AT64, W, 0, T, 10, params.P, params.U, norms, np.zeros(0, np.int64), np.zeros((C, 0)),
                          np.full(C, -1, np.int64))
        return time.perf_counter() - start

    best = {True: float("inf"), False: float("inf")}
    for u in best:
        seconds(u, 20)
    for _ in range(repeats):
        for u in best:
            best[u] = min(best[u], (seconds(u, T_long) - seconds(u, T_short)) / (C * (T_long - T_short)) * 1e6)
    return best[True], best[False]


BREAKDOWN = {
    "no perturbation (metric every 10)": dict(),
    "forward δ per sample": dict(perturbation="forward", sigma_f=1.0),
    "backward ε per sample": dict(perturbation="backward", sigma_b=1.0),
    "forward + backward": dict(perturbation="both", sigma_f=1.0, sigma_b=1.0),
    "forward + backward, one draw shared by the batch": dict(perturbation="both", sigma_f=1.0, sigma_b=1.0, mode="shared"),
    "intermittent forward, Δt = 100": dict(perturbation="forward", sigma_f=1.0, interval=100),
    "no perturbation, metric every iteration": dict(metric_every=1),
    "no perturbation, metric every iteration, separate float64 pass": dict(metric_every=1, metric="float64"),
    "no perturbation, float64 pass": dict(precision="float64"),
    "forward Round bfloat16, nearest": dict(forward=P.Round("bfloat16")),
    "forward Round float8_e4m3fn, stochastic": dict(forward=P.Round("float8_e4m3fn", "stochastic")),
    "backward Round float16, nearest": dict(backward=P.Round("float16")),
    "backward Round bfloat16, stochastic": dict(backward=P.Round("bfloat16", "stochastic")),
    "forward BitFlip 1e-4, mantissa": dict(forward=P.BitFlip(1e-4, "mantissa")),
    "backward BitFlip 1e-3, mantissa": dict(backward=P.BitFlip(1e-3, "mantissa")),
}


def heavy_us(n_jobs=2, C=128, T_short=1000, T_long=6000):
    """Wall µs per configuration-iteration of the heavy workload on ``n_jobs`` workers (each horizon
    the fastest of three sweeps, interleaved: single sweeps on this 2-core machine vary by ±20 %)."""
    kw = dict(perturbation="both", sigma_f=1.0, sigma_b=1.0, metric_every=1)
    wall = engine_walls([RunConfig(gamma=0.05, seed=s, **kw) for s in range(C)], (T_short, T_long), n_jobs)
    return (wall[T_long] - wall[T_short]) / (C * (T_long - T_short)) * 1e6


# ----------------------------------------------------------------------------
# peers of the heavy workload, measured in the same run: a fused hand-written numba kernel and JAX
# ----------------------------------------------------------------------------

HEAVY = dict(perturbation="both", sigma_f=1.0, sigma_b=1.0, metric_every=1)


@njit(fastmath={"contract", "reassoc"}, error_model="numpy", cache=True)
def fused_heavy(AT, W, T, gamma, rho, noise_std, low, high, key_f, key_b, key_xi, norms):
    """The heavy workload written as one function: for each configuration and step, the float32 pass
    over all M samples with U(low, high) noise added to the forward message z and to the backward
    message σ(z̃) (one draw per sample), the exact gradient norm from the clean σ(z) summed in float64,
    and the float64 update with the regularizer Σ w²/(1 + w²) and sampling noise."""
    C, d = W.shape
    M = AT.shape[1]
    z = np.empty(M, np.float32)
    s = np.empty(M, np.float32)
    v = np.empty(M, np.float32)
    wf = np.empty(d, np.float32)
    g = np.empty(d)
    lo, wd = np.float32(low), np.float32(high - low)
    for c in range(C):
        w = W[c]
        for t in range(T):
            for j in range(d):
                wf[j] = w[j]
            z[:] = 0.0
            for j in range(d):
                row, wj = AT[j], wf[j]
                for i in range(M):
                    z[i] -= row[i] * wj
            for i in range(M):
                s[i] = sigmoid_fast32(z[i])
                zt = z[i] + (lo + wd * rng.uniform01_f32(key_f[c], t, i))
                v[i] = sigmoid_fast32(zt) + (lo + wd * rng.uniform01_f32(key_b[c], t, i))
            total = 0.0
            for j in range(d):
                row, acc, acc64 = AT[j], np.float32(0.0), 0.0
                for i in range(M):
                    acc += row[i] * v[i]
                    acc64 += np.float64(row[i]) * np.float64(s[i])
                reg = rho * 2.0 * w[j] / ((1.0 + w[j] * w[j]) * (1.0 + w[j] * w[j]))
                gm = -acc64 / M + reg
                total += gm * gm
                g[j] = -acc / M + reg + noise_std * rng.normal_scalar(key_xi[c], t, j)
            norms[c, t] = math.sqrt(total)
            for j in range(d):
                w[j] -= gamma * g[j]


def _heavy_inputs(C, seed0=0):
    """The heavy workload's data and the numbers of C of its configurations, from fbsgd's own configurations."""
    cfgs = [RunConfig(gamma=0.05, seed=seed0 + s, **HEAVY) for s in range(C)]
    rows = [c.kernel_row() for c in cfgs]
    AT64 = np.ascontiguousarray(cfgs[0].problem().signed_features.T)
    keys = {k: np.array([r[k] for r in rows], np.uint64) for k in ("f_key", "b_key", "xi_key")}
    c0 = cfgs[0]
    return dict(AT=AT64.astype(np.float32), AT64=AT64, gamma=c0.gamma, rho=c0.rho, noise_std=c0.noise_std,
                low=rows[0]["f_low"], high=rows[0]["f_high"], keys=keys, d=c0.d)


def _fused_worker(C, T, seed0):
    """Seconds of the fused kernel on C configurations for T steps (in a worker process)."""
    x = _heavy_inputs(C, seed0)
    W = np.zeros((C, x["d"]))
    norms = np.empty((C, T))
    start = time.perf_counter()
    fused_heavy(x["AT"], W, T, x["gamma"], x["rho"], x["noise_std"], x["low"], x["high"], x["keys"]["f_key"],
                x["keys"]["b_key"], x["keys"]["xi_key"], norms)
    return time.perf_counter() - start


def jax_available(site: str | None) -> bool:
    """Whether JAX can be imported (``site``: a site-packages folder to append to the path first, e.g. of a
    scratch venv: jax is not a dependency of fbsgd)."""
    if site and site not in sys.path:
        sys.path.append(site)
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


_JAX_RUNS: dict = {}


def _jax_run(workload, C, T, seed0=0):
    """A jitted jit(vmap(scan)) run of the workload on C configurations for T steps and its inputs.

    "heavy": the heavy workload (forward and backward U noise per sample, gradient norm every step);
    "clean": no perturbation, gradient norm every 10 steps; "bfloat16": "clean" with the forward
    message z cast to bfloat16 and back (JAX's native casts).  float32 pass, float64 update and metric."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    x = _heavy_inputs(C, seed0)
    A32, A64 = jnp.asarray(x["AT"].T), jnp.asarray(x["AT64"].T)  # (M, d)
    M, d = A32.shape
    gamma, rho, noise_std, lo, hi = x["gamma"], x["rho"], x["noise_std"], x["low"], x["high"]
    every = 1 if workload == "heavy" else 10

    def reg_grad(w):
        return 2.0 * w / ((1.0 + w * w) * (1.0 + w * w))

    def one(key):
        def step(w, t, metric):
            k = jax.random.fold_in(key, t)  # one key per step (splitting it costs more than the pass)
            z = -(A32 @ w.astype(jnp.float32))
            s = jax.nn.sigmoid(z)
            if workload == "heavy":
                u = jax.random.uniform(jax.random.fold_in(k, 1), (2, M), jnp.float32, lo, hi)
                z = z + u[0]
            elif workload == "bfloat16":
                z = z.astype(jnp.bfloat16).astype(jnp.float32)
            v = jax.nn.sigmoid(z)
            if workload == "heavy":
                v = v + u[1]
            r = rho * reg_grad(w)
            norm = jnp.linalg.norm(-(A64.T @ s.astype(jnp.float64)) / M + r) if metric else 0.0
            g = -(A32.T @ v).astype(jnp.float64) / M + r + noise_std * jax.random.normal(k, (d,), jnp.float64)
            return w - gamma * g, norm

        def block(w, t0):  # `every` steps, the metric at the first
            w, norm = step(w, t0, True)
            if every > 1:
                w, _ = jax.lax.scan(lambda w, t: step(w, t, False), w, t0 + jnp.arange(1, every))
            return w, norm

        return jax.lax.scan(block, jnp.zeros(d), jnp.arange(0, T, every))

    run = jax.jit(jax.vmap(one))
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(seed0, seed0 + C))
    return run, keys


def _jax_worker(workload, C, T, seed0=0):
    """Seconds of the JAX run (compiled outside the timing) in this process."""
    key = (workload, C, T, seed0)
    if key not in _JAX_RUNS:
        _JAX_RUNS[key] = _jax_run(workload, C, T, seed0)
        run, keys = _JAX_RUNS[key]
        run(keys)[1].block_until_ready()
    run, keys = _JAX_RUNS[key]
    start = time.perf_counter()
    run(keys)[1].block_until_ready()
    return time.perf_counter() - start


def _on_workers(fn, C, T, n_jobs):
    """Wall seconds of ``fn(C // n_jobs, T, seed0)`` on each of ``n_jobs`` workers at once."""
    from joblib import Parallel, delayed

    start = time.perf_counter()
    Parallel(n_jobs=n_jobs)(delayed(fn)(C // n_jobs, T, k * (C // n_jobs)) for k in range(n_jobs))
    return time.perf_counter() - start


def peer_heavy_us(fn, n_jobs=2, C=128, T_short=1000, T_long=6000, repeats=3):
    """Wall µs per configuration-iteration of a peer of the heavy workload (``fn(C, T, seed0)`` returning
    its seconds: :func:`_fused_worker`, :func:`_jax_worker_heavy`) on ``n_jobs`` workers, timed as
    :func:`heavy_us` times fbsgd (long minus short, each the fastest of ``repeats``)."""
    for T in (T_short, T_long):  # compile (or load) in every worker, outside the timing
        _on_workers(fn, C, T, n_jobs)
    wall = {T: float("inf") for T in (T_short, T_long)}
    for _ in range(repeats):
        for T in (T_short, T_long):
            wall[T] = min(wall[T], _on_workers(fn, C, T, n_jobs))
    return (wall[T_long] - wall[T_short]) / (C * (T_long - T_short)) * 1e6


def _jax_worker_heavy(C, T, seed0):
    return _jax_worker("heavy", C, T, seed0)


def jax_single_us(workloads, C=16, T_short=1000, T_long=5000, repeats=5) -> dict:
    """Single-process µs per configuration-iteration of JAX workloads (long minus short, interleaved,
    each the fastest of ``repeats`` rounds, as :func:`kernel_us`)."""
    best = {w: float("inf") for w in workloads}
    for _ in range(repeats):
        for w in workloads:
            best[w] = min(best[w], (_jax_worker(w, C, T_long) - _jax_worker(w, C, T_short)) / (C * (T_long - T_short)) * 1e6)
    return best


# ----------------------------------------------------------------------------
# a researcher's own compiled element kind against the built-in Round of the same format
# ----------------------------------------------------------------------------

_ABS64 = np.int64(0x7FFFFFFFFFFFFFFF)


@njit
def round_to_bits(x, u, numbers):
    """A researcher's element operation: x rounded to numbers[0] mantissa bits, to nearest, ties to
    even (the exponent range is not limited: for the messages of this chain, bfloat16 rounding)."""
    drop = 52 - np.int64(numbers[0])
    low = (np.int64(1) << drop) - 1
    b = f64_to_bits(x)
    a = b & _ABS64
    return bits_to_f64((b & ~_ABS64) | ((a + (low >> 1) + ((a >> drop) & 1)) & ~low))


@dataclass(frozen=True)
class RoundToBits(P.Perturbation):
    """Round to ``bits`` mantissa bits, written outside fbsgd as a compiled element kind."""

    bits: int

    def compiled(self):
        return P.ElementOp(round_to_bits, (self.bits,))

    def apply(self, x, key, step):
        return self.compiled().apply(x, key, step)

    @property
    def law(self):
        return P.Law("input_dependent", False, False)


def element_vs_builtin() -> dict:
    """Single-core µs per configuration-iteration (:func:`kernel_us`): no perturbation, the built-in
    Round("bfloat16") and the element kind RoundToBits(7) at the forward message (metric every 10
    steps, float32), interleaved."""
    return kernel_us({"clean": {}, "Round('bfloat16')": dict(forward=P.Round("bfloat16")),
                      "RoundToBits(7), an ElementOp": dict(forward=RoundToBits(7))})


_E4M3 = lowprec.FORMATS["float8_e4m3fn"]


@njit
def mxfp8_block(x, u, numbers, out):
    """A researcher's block operation: one MXFP8 E4M3 block, X = 2^(⌊log₂ amax⌋ − 8) (at least 2^-127), the
    elements x / X clamped to ±448 and rounded to E4M3 (to nearest, ties to even), times X."""
    amax = 0.0
    for i in range(x.size):
        amax = max(amax, abs(x[i]))
    k = -127
    if amax > 0.0:
        k = max(math.frexp(amax)[1] - 9, -127)
    X = math.ldexp(1.0, k)
    for i in range(x.size):
        y = min(max(x[i] / X, -448.0), 448.0)
        out[i] = lowprec.round_scalar(y, 3, -6, 448.0, False, -1.0) * X


@dataclass(frozen=True)
class UserMXFP8(P.Perturbation):
    """MXFP8 E4M3 in blocks of ``block`` consecutive samples, written outside fbsgd as a compiled block kind."""

    block: int = 32

    def compiled(self):
        return P.BlockOp(mxfp8_block, self.block)

    def apply(self, x, key, step):
        return self.compiled().apply(x, key, step)

    @property
    def law(self):
        return P.Law("input_dependent", False, False)


def block_vs_builtin() -> dict:
    """Single-core µs per configuration-iteration (:func:`kernel_us`) of the heavy workload (gradient norm at
    every step, float32, the backward message with its per-sample noise) with the forward message rounded by
    the built-in Round("float8_e4m3fn"), by the user's UserMXFP8(32) (a BlockOp) and by fbsgd.formats.MX
    (MXFP8 E4M3, axis=0: a BlockOp), and with it clean, interleaved."""
    heavy_b = dict(perturbation="backward", sigma_b=1.0, metric_every=1)
    return kernel_us({"clean forward": heavy_b,
                      "Round('float8_e4m3fn')": dict(heavy_b, forward=P.Round("float8_e4m3fn")),
                      "UserMXFP8(32), a BlockOp": dict(heavy_b, forward=UserMXFP8(32)),
                      "formats.MX e4m3 axis=0": dict(heavy_b, forward=F.MX("float8_e4m3fn", axis=0))})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=64, help="configurations sampled from the full grid (default 64)")
    ap.add_argument("--T", type=int, default=20000,
                    help="longer of the two horizons of the engine timing; the shorter is T/4 (default 20000)")
    ap.add_argument("--naive-configs", type=int, default=4, help="configurations for the naive timing (default 4)")
    ap.add_argument("--naive-T", type=int, default=300, help="iterations per configuration for the naive timing (default 300)")
    ap.add_argument("--n-jobs", type=int, default=2, help="joblib workers for the engine (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    ap.add_argument("--jax-site", default=None,
                    help="a site-packages folder holding jax (not a dependency of fbsgd), appended to the path, "
                         "e.g. /tmp/jaxvenv/lib/python3.11/site-packages")
    ap.add_argument("--parts", default="grid,heavy,rounding,element,block,breakdown",
                    help="what to time, comma-separated (default: grid,heavy,rounding,element,block,breakdown)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if args.sample < 1 or args.T < 20 or args.naive_T < 1 or args.naive_configs < 1:
        ap.error("--sample, --naive-configs and --naive-T must be >= 1 and --T >= 20")
    known = {"grid", "heavy", "rounding", "element", "block", "breakdown"}
    if parts - known:
        ap.error(f"--parts: unknown {sorted(parts - known)}")
    has_jax = jax_available(args.jax_site)
    # the workers of the peers import this file as a module (joblib pickles its functions by reference)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    bench = importlib.import_module("engine_speed")

    grid = book_grid("paper")
    print(f"machine: {os.cpu_count()} cores, code generated for {host_cpu()}; "
          f"full grid: {len(grid)} distinct runs of T = {grid[0].T:,}")
    last = {}

    if "grid" in parts:
        sample = random.Random(args.seed).sample(grid, min(args.sample, len(grid)))
        # warm up: compile (or load from numba's cache) the kernel in this process and in every worker
        warm = [RunConfig(**{**c.__dict__, "T": 40}) for c in sample[: 4 * args.n_jobs]]
        run_sweep(warm, n_jobs=args.n_jobs, cache_dir=False, progress=False, chunk_size=1)

        # the sample at two horizons: wall(T) = fixed + per_iteration * T, extrapolated to the grid's T
        short, long_ = args.T // 4, args.T
        walls = engine_walls(sample, (short, long_), args.n_jobs)
        per_iteration = (walls[long_] - walls[short]) / (long_ - short)
        fixed = walls[long_] - per_iteration * long_
        full_s = len(grid) / len(sample) * (fixed + per_iteration * grid[0].T)
        eng = full_s / (len(grid) * grid[0].T) * 1e6
        naive_cfgs = [RunConfig(**{**c.__dict__, "T": args.naive_T, "precision": "float64"})
                      for c in sample[: args.naive_configs]]
        nai = naive_us(naive_cfgs, args.naive_T)
        full_minutes = full_s / 60
        print(f"\nnaive reference (Python loop over t, core passes, 1 core): {nai:9.2f} µs per configuration-iteration")
        print(f"engine (lockstep kernel, {args.n_jobs} workers, sample of {len(sample)} from the grid): "
              f"{walls[short]:.2f} s at T = {short:,}, {walls[long_]:.2f} s at T = {long_:,}; "
              f"fixed cost {fixed:.2f} s, {per_iteration / len(sample) * 1e6:.3f} µs wall per configuration-iteration")
        print(f"projected full grid (Figures 3–8): {len(grid)} runs × {grid[0].T:,} iterations = {full_minutes:.2f} minutes "
              f"({eng:.3f} µs per configuration-iteration, fixed costs included)")
        last.update(speedup_vs_naive=f"{nai / eng:.1f}", us_per_config_iteration=f"{eng:.3f}",
                    full_grid_minutes=f"{full_minutes:.2f}")

    if "heavy" in parts:
        run_sweep([RunConfig(T=40, gamma=0.05, **HEAVY)], n_jobs=args.n_jobs, cache_dir=False, progress=False)
        heavy, fused = heavy_us(args.n_jobs), peer_heavy_us(bench._fused_worker, args.n_jobs)
        jx = peer_heavy_us(bench._jax_worker_heavy, args.n_jobs) if has_jax else None
        print(f"\nheavy workload (forward + backward per sample, gradient norm every step, float32, 128 configurations, "
              f"{args.n_jobs} workers), µs wall per configuration-iteration, measured side by side:")
        print(f"  fbsgd (run_sweep)            {heavy:6.3f}")
        print(f"  fused hand-written numba     {fused:6.3f}   fbsgd/fused = {heavy / fused:.2f}")
        print(f"  JAX jit(vmap(scan))          {jx:6.3f}   fbsgd/jax = {heavy / jx:.2f}" if has_jax else
              "  jax: not installed (give --jax-site to time it)")
        last.update(heavy_us_per_config_iteration=f"{heavy:.3f}", fbsgd_over_fused=f"{heavy / fused:.2f}")
        if has_jax:
            last.update(fbsgd_over_jax=f"{heavy / jx:.2f}")

    if "rounding" in parts or "element" in parts:
        el = element_vs_builtin()
        clean, bf16 = el["clean"], el["Round('bfloat16')"]
        print("\nforward message rounded to bfloat16, metric every 10 steps (one core, µs per configuration-iteration):")
        line = f"  fbsgd: bfloat16 {bf16:.2f} (clean {clean:.2f}, rounding {bf16 - clean:+.2f})"
        if has_jax:
            jx = jax_single_us(("clean", "bfloat16"))
            jb, jc = jx["bfloat16"], jx["clean"]
            line += f";  JAX native casts: bfloat16 {jb:.2f} (clean {jc:.2f}, rounding {jb - jc:+.2f})"
            last.update(jax_bfloat16_forward_us=f"{jb:.3f}")
        print(line)
        user = el["RoundToBits(7), an ElementOp"]
        print(f"  a researcher's compiled element kind RoundToBits(7) (ElementOp): {user:.2f} "
              f"({user / bf16:.2f}× the built-in Round('bfloat16'); rounding {user - clean:+.2f} against {bf16 - clean:+.2f})")
        last.update(bfloat16_forward_us=f"{bf16:.3f}", clean_us=f"{clean:.3f}", element_over_round=f"{user / bf16:.2f}")

    if "block" in parts:
        bl = block_vs_builtin()
        clean, e4m3 = bl["clean forward"], bl["Round('float8_e4m3fn')"]
        user, mx = bl["UserMXFP8(32), a BlockOp"], bl["formats.MX e4m3 axis=0"]
        print("\nforward message of the heavy workload (gradient norm every step, backward noise, float32) quantized to "
              "E4M3 (one core, µs per configuration-iteration):")
        print(f"  clean forward {clean:.2f}; built-in Round('float8_e4m3fn') {e4m3:.2f} (rounding {e4m3 - clean:+.2f})")
        print(f"  a researcher's MXFP8 E4M3 block kind UserMXFP8(32) (BlockOp): {user:.2f} ({user / e4m3:.2f}× the built-in "
              f"Round; goal <= 1.5×)")
        print(f"  fbsgd.formats.MX('float8_e4m3fn', axis=0) (BlockOp): {mx:.2f} ({mx / e4m3:.2f}× the built-in Round)")
        last.update(block_over_round=f"{user / e4m3:.2f}", mx_over_round=f"{mx / e4m3:.2f}")

    if "breakdown" in parts:
        spec, loops = unrolled_vs_loops()
        print(f"\nkernel with the dot products written out for d = 10: {spec:.2f} µs, with plain loops over the features: "
              f"{loops:.2f} µs (one core, forward + backward; written out {loops / spec:.2f}× faster)")
        last.update(unrolled_speedup=f"{loops / spec:.2f}")
        print("\nwhere the time goes (one core, µs per configuration-iteration):")
        for name, us in kernel_us(BREAKDOWN, repeats=3).items():
            print(f"  {name:45s} {us:6.2f}")

    print("\n" + " ".join(f"{k}={v}" for k, v in last.items()))


if __name__ == "__main__":
    main()
