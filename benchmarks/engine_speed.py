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

Run:  .venv/bin/python benchmarks/engine_speed.py [--sample 64] [--T 20000] [--naive-T 300]
      NUMBA_CPU_NAME=haswell .venv/bin/python benchmarks/engine_speed.py   # AVX2 code only
The last line is machine-readable:
  speedup_vs_naive=<x> us_per_config_iteration=<z> heavy_us_per_config_iteration=<h> full_grid_minutes=<y>

"heavy" is the peers' workload: forward and backward per-sample perturbations,
the exact gradient norm at every step, float32, 128 configurations on 2 workers,
timed as a long-minus-short difference so that fixed costs cancel.
"""
from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np

from fbsgd.engine import lockstep as E
from fbsgd import perturbations as P
from fbsgd.studies.section7.design import book_grid
from fbsgd.engine.sweeps import RunConfig, run_sweep


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


def kernel_breakdown(T_short=6000, T_long=26000, C=16):
    """Single-core µs per configuration-iteration of the kernel for each kind of work.

    Timed as the difference between a long and a short run of the same C
    configurations (each the fastest of two, interleaved), so the fixed cost of a sweep
    (data generation, process start, table building, and the 600 loss-gap checkpoints,
    which both horizons have) cancels and only the per-iteration work remains.
    """
    rows = {}
    kinds = {
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
    for name, kw in kinds.items():
        run_sweep([RunConfig(T=40, gamma=0.05, **kw)], n_jobs=1, cache_dir=False, progress=False)  # compile outside the timing
        wall = engine_walls([RunConfig(gamma=0.05, seed=s, **kw) for s in range(C)], (T_short, T_long), 1, repeats=2)
        rows[name] = (wall[T_long] - wall[T_short]) / (C * (T_long - T_short)) * 1e6
    return rows


def plain_loops_ratio(T_short=1000, T_long=6000, C=16):
    """Single-core cost of the kernel with plain loops over the features against the kernel whose
    dot products are specialised to d (the generated form kept only because it is faster)."""
    cfgs = [RunConfig(T=20, gamma=0.05, seed=s, perturbation="both", sigma_f=1.0, sigma_b=1.0) for s in range(C)]
    c0 = cfgs[0]
    AT64 = np.ascontiguousarray(c0.problem().signed_features.T)
    AT = AT64.astype(np.float32)
    params = E.kernel_params([c.kernel_row() for c in cfgs])
    out = {}
    for specialise in (True, False):
        run = E.kernel(c0.d, "float32", specialise=specialise)
        wall = {}
        for T in (10, T_short, T_long):
            W = np.zeros((C, c0.d))
            norms = np.full((C, -(-T // 10)), np.nan)
            start = time.perf_counter()
            run(AT, AT64, W, 0, T, 10, params, norms, np.zeros(0, np.int64), np.zeros((C, 0)), np.full(C, -1, np.int64))
            wall[T] = time.perf_counter() - start
        out[specialise] = (wall[T_long] - wall[T_short]) / (C * (T_long - T_short)) * 1e6
    return out[True], out[False]


def heavy_us(n_jobs=2, C=128, T_short=1000, T_long=6000):
    """Wall µs per configuration-iteration of the heavy workload on ``n_jobs`` workers (each horizon
    the fastest of three sweeps, interleaved: single sweeps on this 2-core machine vary by ±20 %)."""
    kw = dict(perturbation="both", sigma_f=1.0, sigma_b=1.0, metric_every=1)
    wall = engine_walls([RunConfig(gamma=0.05, seed=s, **kw) for s in range(C)], (T_short, T_long), n_jobs)
    return (wall[T_long] - wall[T_short]) / (C * (T_long - T_short)) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=64, help="configurations sampled from the full grid (default 64)")
    ap.add_argument("--T", type=int, default=20000,
                    help="longer of the two horizons of the engine timing; the shorter is T/4 (default 20000)")
    ap.add_argument("--naive-configs", type=int, default=4, help="configurations for the naive timing (default 4)")
    ap.add_argument("--naive-T", type=int, default=300, help="iterations per configuration for the naive timing (default 300)")
    ap.add_argument("--n-jobs", type=int, default=2, help="joblib workers for the engine (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    args = ap.parse_args()
    if args.sample < 1 or args.T < 20 or args.naive_T < 1 or args.naive_configs < 1:
        ap.error("--sample, --naive-configs and --naive-T must be >= 1 and --T >= 20")

    grid = book_grid("paper")
    sample = random.Random(args.seed).sample(grid, min(args.sample, len(grid)))
    print(f"machine: {os.cpu_count()} cores, code generated for {host_cpu()}; "
          f"full grid: {len(grid)} distinct runs of T = {grid[0].T:,}")

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
    naive_cfgs = [RunConfig(**{**c.__dict__, "T": args.naive_T, "precision": "float64"}) for c in sample[: args.naive_configs]]
    nai = naive_us(naive_cfgs, args.naive_T)
    full_minutes = full_s / 60

    print(f"\nnaive reference (Python loop over t, core passes, 1 core): {nai:9.2f} µs per configuration-iteration")
    print(f"engine (lockstep kernel, {args.n_jobs} workers, sample of {len(sample)} from the grid): "
          f"{walls[short]:.2f} s at T = {short:,}, {walls[long_]:.2f} s at T = {long_:,}; "
          f"fixed cost {fixed:.2f} s, {per_iteration / len(sample) * 1e6:.3f} µs wall per configuration-iteration")
    print(f"projected full grid (Figures 3–8): {len(grid)} runs × {grid[0].T:,} iterations = {full_minutes:.2f} minutes "
          f"({eng:.3f} µs per configuration-iteration, fixed costs included)")

    heavy = heavy_us(args.n_jobs)
    print(f"heavy workload (forward + backward per sample, gradient norm every step, float32, 128 configurations, "
          f"{args.n_jobs} workers): {heavy:.3f} µs wall per configuration-iteration")

    spec, plain = plain_loops_ratio()
    print(f"kernel with dot products specialised to d: {spec:.2f} µs, with plain loops: {plain:.2f} µs "
          f"(one core, forward + backward; specialised form {plain / spec:.2f}× faster)")

    print("\nwhere the time goes (one core, µs per configuration-iteration):")
    for name, us in kernel_breakdown().items():
        print(f"  {name:45s} {us:6.2f}")

    print(f"\nspeedup_vs_naive={nai / eng:.1f} us_per_config_iteration={eng:.3f} "
          f"heavy_us_per_config_iteration={heavy:.3f} full_grid_minutes={full_minutes:.2f}")


if __name__ == "__main__":
    main()
