"""Cost of the random numbers the engine draws, against two cheaper-looking streams.

The engine reads one SplitMix64 output per draw (``fbsgd.rng.uniform01_f32``,
keyed by (stream, step, index)).  This script times, in one run and on one
core, the loop the kernel runs for a per-sample uniform perturbation (kind 1 of
``fbsgd.engine.kernel.perturb``) with

  * ``splitmix64``: the stream fbsgd uses, one 64-bit hash per draw;
  * ``split word``: one 64-bit hash per two draws (its high and low halves);
  * ``32-bit hash``: a per-step 64-bit key folded to 32 bits, then a two-round
    32-bit multiply-xorshift hash per draw;
  * ``no draw``: the same loop adding a constant (the floor of the loop).

It prints nanoseconds per draw and each stream's time relative to fbsgd's,
so the choice of stream can be rechecked on any machine
(``NUMBA_CPU_NAME=haswell`` restricts code generation to AVX2).

Run:  .venv/bin/python benchmarks/rng_speed.py [--steps 20000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from fbsgd import rng
from fbsgd.rng import _GOLDEN, _S32, _S40, _mix

FASTMATH = {"contract", "reassoc"}
U24 = np.float32(1.0 / 16777216.0)
LOW32 = np.uint64(0xFFFFFFFF)
S8 = np.uint64(8)
U32 = np.uint32
LO, WIDTH = np.float32(-0.5), np.float32(1.0)


@njit(fastmath=FASTMATH)
def splitmix64(z, key, T):
    for t in range(T):
        for i in range(z.size):
            z[i] += LO + WIDTH * rng.uniform01_f32(key, t, i)


@njit(fastmath=FASTMATH)
def split_word(z, key, T):
    h = z.size // 2
    for t in range(T):
        for k in range(h):
            w = _mix(np.uint64(key) + ((np.uint64(t) << _S32) + np.uint64(k) + np.uint64(1)) * _GOLDEN)
            z[k] += LO + WIDTH * (np.float32(w >> _S40) * U24)
            z[h + k] += LO + WIDTH * (np.float32((w & LOW32) >> S8) * U24)


@njit(inline="always")
def _hash32(x):
    x = U32(x ^ (x >> U32(16)))
    x = U32(x * U32(0x7FEB352D))
    x = U32(x ^ (x >> U32(15)))
    x = U32(x * U32(0x846CA68B))
    return U32(x ^ (x >> U32(16)))


@njit(fastmath=FASTMATH)
def hash32(z, key, T):
    for t in range(T):
        kt = U32(_mix(np.uint64(key) + (np.uint64(t) + np.uint64(1)) * _GOLDEN) >> _S32)
        for i in range(z.size):
            z[i] += LO + WIDTH * (np.float32(_hash32(U32(kt + U32(i) * U32(0x9E3779B9))) >> U32(8)) * U24)


@njit(fastmath=FASTMATH)
def no_draw(z, key, T):
    for t in range(T):
        for i in range(z.size):
            z[i] += LO


STREAMS = {"splitmix64 (fbsgd)": splitmix64, "split word": split_word, "32-bit hash": hash32, "no draw": no_draw}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20000, help="steps of a 256-sample tile per timing (default 20000)")
    ap.add_argument("--repeats", type=int, default=5, help="timings per stream; the fastest is kept (default 5)")
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be >= 1")
    z = np.zeros(256, np.float32)  # one tile of the kernel
    for f in STREAMS.values():
        f(z, 1, 2)  # compile outside the timing
    best = {name: np.inf for name in STREAMS}
    for _ in range(args.repeats):  # interleaved, so a slow moment hits every stream alike
        for name, f in STREAMS.items():
            start = time.perf_counter()
            f(z, 12345, args.steps)
            best[name] = min(best[name], (time.perf_counter() - start) / (args.steps * z.size) * 1e9)
    ref = best["splitmix64 (fbsgd)"]
    print("ns per draw (one core, fastest of the repeats), and relative to fbsgd's stream:")
    for name, ns in best.items():
        print(f"  {name:20s} {ns:6.3f} ns   {ns / ref:5.2f}×")
    print(f"per 2000-sample pass: splitmix64 {ref * 2000e-3:.3f} µs, split word {best['split word'] * 2000e-3:.3f} µs")
    print(f"split_word_ratio={best['split word'] / ref:.3f} hash32_ratio={best['32-bit hash'] / ref:.3f}")


if __name__ == "__main__":
    main()
