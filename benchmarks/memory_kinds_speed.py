"""Speed of the correctors' settings on the Section 7 kernel against the chain kernel, measured in one run.

The Section 7 problem (M = 2000 samples, d = 10, float32 pass, full batch, metric every 10 steps), one
perturbation at the forward message (``--place backward``: at the backward message), for the settings
of the correctors chapter: clean, Round e4m3 to nearest, Top-K 200 (scope "batch": 200 of the 2,000
samples), error feedback around Top-K 200, delta compression around Round e4m3, Rand-K 200, and the
exact de-biasing for U(−0.316, 0.316) (an element operation, always at the backward message) —

  * on the Section 7 kernel (``RunConfig``, :func:`fbsgd.engine.lockstep.kernel`, direct calls: the
    tile kernel for clean and rounding, the cached whole-message kernel for the others);
  * on the chain kernel (the same settings as ``ChainConfig``: Linear(d, 1) and LogisticLoss on the same
    data, full batch, the non-convex regularizer, ρ and ξ_t of Section 7 — the form the correctors chapter
    used before it moved onto RunConfig, :func:`chain_config` — through
    :func:`fbsgd.engine.chains.run_chain_chunk`);

each as µs per configuration-iteration of C configurations (different γ) in lockstep, one core, timed
as the difference between a long and a short run (fixed costs cancel), the settings interleaved within
each of ``--repeats`` rounds and each keeping its fastest round (a slow moment of the shared machine
hits every setting alike).  The chain kernel is slow for the memory kinds, so it runs fewer iterations
(``--chain-T``); per configuration-iteration the numbers compare.

Run:  .venv/bin/python benchmarks/memory_kinds_speed.py [--T 20000] [--chain-T 2000] [--C 4] [--repeats 3]
The last line is machine-readable: ``<setting>_s7_us=<x> <setting>_chain_us=<y> <setting>_ratio=<y/x> ...``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fbsgd import correctors as Co
from fbsgd import perturbations as P
from fbsgd.engine import chains as CH
from fbsgd.engine import lockstep as E
from fbsgd.engine.chains import ChainConfig
from fbsgd.engine.sweeps import RunConfig
from fbsgd.operators import Linear, LogisticLoss
from fbsgd.passes import Composite
from fbsgd.problems import Dataset

SETTINGS = {
    "clean": None,
    "round_e4m3": P.Round("float8_e4m3fn", "nearest"),
    "topk200": P.TopK(200, "batch"),
    "ef_topk200": P.ErrorFeedback(P.TopK(200, "batch")),
    "delta_round_e4m3": Co.DeltaCompression(P.Round("float8_e4m3fn", "nearest")),
    "randk200": P.RandK(200, "batch"),
    "exact_debias": Co.UniformDebias(0.316),
}
# settings that always run at one place, whatever ``--place`` says (the de-biasing transforms v = σ(z̃))
FIXED_PLACE = {"exact_debias": "backward"}
GAMMAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def chain_config(plan: P.Plan, gamma: float, seed: int, T: int) -> ChainConfig:
    """The Section 7 run (RunConfig's defaults: d = 10, M = 2000, ρ = 0.001, noise_std = 0.001) as a chain:
    forward[1] on s = hᵀw, backward[2] on ∂ℓ/∂s (messages of Section 7's up to the label's sign)."""
    pr = RunConfig(T=max(T, 20)).problem()
    return ChainConfig(net=Composite([Linear(pr.d, 1, init="zeros"), LogisticLoss()]),
                       data=Dataset(pr.features, pr.labels), optimizer="sgd", lr=float(gamma), batch=0, T=int(T),
                       seed=int(seed), forward=dict(plan.forward), backward=dict(plan.backward), metric_every=10,
                       regularizer="nonconvex", rho=pr.rho, noise_std=1e-3)


def section7_seconds(p, place: str, C: int, T: int) -> float:
    """Wall seconds of C Section 7 configurations (γ of :data:`GAMMAS`) for T iterations, fresh kernel
    parameters (the memories start at zero)."""
    cfgs = [RunConfig(T=max(T, 20), gamma=GAMMAS[i % len(GAMMAS)], seed=i // len(GAMMAS), **({place: p} if p else {}))
            for i in range(C)]
    c0 = cfgs[0]
    AT64 = np.ascontiguousarray(c0.problem().signed_features.T)
    AT = AT64.astype(np.float32)
    params = E.kernel_params([c.kernel_row() for c in cfgs])
    run = E.kernel(c0.d, "float32")
    W = np.zeros((C, c0.d))
    norms = np.full((C, -(-T // c0.metric_every)), np.nan)
    start = time.perf_counter()
    run(AT, AT64, W, 0, T, c0.metric_every, params, norms, np.zeros(0, np.int64), np.zeros((C, 0)),
        np.full(C, -1, np.int64))
    return time.perf_counter() - start


def chain_seconds(p, place: str, C: int, T: int) -> float:
    """Wall seconds of the same settings as ChainConfigs (forward[1] on s, backward[2] on ∂ℓ/∂s)."""
    plan = P.Plan(**({place: {1 if place == "forward" else 2: p}} if p else {}))
    cfgs = [chain_config(plan, GAMMAS[i % len(GAMMAS)], i // len(GAMMAS), T).replace(precision="float32")
            for i in range(C)]
    start = time.perf_counter()
    CH.run_chain_chunk(cfgs)
    return time.perf_counter() - start


def per_config_iteration(seconds, p, place, C, T, repeats_state, name):
    """µs per configuration-iteration: (long run − short run) / (C · (T − T/10))."""
    short = max(20, T // 10)
    long_s, short_s = seconds(p, place, C, T), seconds(p, place, C, short)
    us = (long_s - short_s) / (C * (T - short)) * 1e6
    repeats_state[name] = min(repeats_state.get(name, float("inf")), us)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=20_000, help="iterations of the Section 7 kernel runs")
    ap.add_argument("--chain-T", type=int, default=2_000, help="iterations of the chain kernel runs")
    ap.add_argument("--C", type=int, default=4, help="configurations in lockstep")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--place", choices=("forward", "backward"), default="forward")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of " + ", ".join(SETTINGS))
    args = ap.parse_args()
    names = [n for n in args.settings.split(",") if n]
    for n in names:
        if n not in SETTINGS:
            raise SystemExit(f"--settings: {n!r} is not one of {list(SETTINGS)}")
    t0 = time.perf_counter()
    for n in names:  # compile (or load the cached machine code) outside the timing
        section7_seconds(SETTINGS[n], FIXED_PLACE.get(n, args.place), 1, 20)
        chain_seconds(SETTINGS[n], FIXED_PLACE.get(n, args.place), 1, 20)
    print(f"warm-up (compile or load): {time.perf_counter() - t0:.1f} s")
    s7, chain = {}, {}
    for _ in range(args.repeats):
        for n in names:
            place = FIXED_PLACE.get(n, args.place)
            per_config_iteration(section7_seconds, SETTINGS[n], place, args.C, args.T, s7, n)
            per_config_iteration(chain_seconds, SETTINGS[n], place, args.C, args.chain_T, chain, n)
    print(f"µs per configuration-iteration, {args.place} place, M = 2000, d = 10, float32, C = {args.C}, one core "
          f"(Section 7 kernel T = {args.T}, chain kernel T = {args.chain_T}; best of {args.repeats})")
    print(f"{'setting':<18} {'Section 7':>10} {'chain':>10} {'chain/S7':>9}")
    parts = []
    for n in names:
        print(f"{n:<18} {s7[n]:>10.2f} {chain[n]:>10.2f} {chain[n] / s7[n]:>9.1f}")
        parts += [f"{n}_s7_us={s7[n]:.2f}", f"{n}_chain_us={chain[n]:.2f}", f"{n}_ratio={chain[n] / s7[n]:.1f}"]
    print(" ".join(parts))


if __name__ == "__main__":
    main()
