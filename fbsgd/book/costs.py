"""What a chapter's parameters would cost, estimated from them before anything runs.

For each chapter, :func:`estimate` turns the resolved parameters into the chapter's main
computations (:class:`Stage`), each with the wall time and the memory it would need: a count of
work (runs × iterations, draws × operators × width², training steps × weights, ...) times a
per-unit cost.  The per-unit costs are the named constants below, each measured on the book's
2-core machine on 2026-12-07 with small timing scripts at quick scale (while other work shared the
machine, so they are on the slow side) and then rounded up, about twofold: the estimates are
ceilings, not predictions.  At the paper's defaults they come out between 1 and 14 minutes per chapter,
3 to 12 times the chapter times measured in a full build (README: 5 s to 4 min per chapter).

:func:`rules` gives the two checks that every chapter adds to :func:`fbsgd.book.params.resolve`:

* memory: the largest stage must fit in half of the machine's memory
  (:func:`fbsgd.engine.sweeps.machine_memory`; the memory of the sweep workers themselves is
  checked by the sweep chapters' own rule, :func:`fbsgd.engine.sweeps.check_memory`);
* time: the whole chapter must fit in ``max_hours`` (a parameter of every chapter, default 3).

A refusal names the parameter that drives the estimate, the one whose paper default would shrink
it most, with the amount needed, the machine's amount or the hours, and what to do.  Nothing is
computed: a rule takes a few milliseconds at most.
"""
from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fbsgd.book import params as P
from fbsgd.engine.sweeps import machine_memory, memory_needed

__all__ = ["Stage", "Estimate", "CHAPTERS", "REFERENCE", "DEFAULT_MAX_HOURS", "MEMORY_FRACTION",
           "estimate", "driver", "memory_problem", "time_problem", "rules"]

DEFAULT_MAX_HOURS = 3.0  # the default of every chapter's ``max_hours``
MEMORY_FRACTION = 0.5  # a chapter may hold at most this fraction of the machine's memory (as check_memory)

# -- per-unit costs (one core unless said otherwise), measured 2026-12-07 on the 2-core build machine --------

# Fixed costs.
CHAPTER_FIXED_S = 60.0  # imports, figures, tables, numba compilation of a chapter (setting: 5 s, counterexamples: 9 s in all)
BASE_BYTES = 512 * 2**20  # a chapter's kernel before it computes: 156 MiB RSS measured with numpy, pandas, numba, matplotlib

# The compiled Section 7 engine (fbsgd.engine.sweeps.run_sweep), µs per run-iteration on one core:
# benchmarks/engine_speed.py's kernel_breakdown (16 configurations, T = 13,000 minus T = 3,000).
SWEEP_UNIFORM_US = 6.0  # the paper's uniform δ / ε: measured 2.5 (none) to 3.9 (forward + backward per sample)
SWEEP_OBJECT_US = 15.0  # a Round or BitFlip object: measured 2.7 (forward bit flips) to 9.9 (stochastic rounding)
SWEEP_METRIC_US = 2.0  # one exact gradient norm from the pass: measured 1.1 (metric every iteration 3.49 vs every 10th 2.48)
SWEEP_METRIC64_US = 13.0  # one gradient norm from a separate float64 pass: measured 8.5
SWEEP_FLOAT64_FACTOR = 2.5  # a float64 perturbed pass: measured 5.47 vs 2.48 µs (2.2 times)
SWEEP_FIXED_S = 30.0  # per run_sweep call: compiling the kernel in each worker, measured 11.7 s with an empty kernel cache
SWEEP_CHUNK = 8  # configurations per worker task (run_sweep's chunk_size)
SWEEP_RUN_BYTES = 64 * 2**10  # a run's table row, 600-point trace and configuration object in the parent process

# Setting: fbsgd.studies.error_propagation.injection.depth_amplification.
SETTING_LAYER_US = 150.0  # per layer of a chain (draw, QR or spectral norm, passes): measured 55–60 µs at width 16
DENSE_CUBE_NS = 1.0  # per width³ of one dense factorisation (QR, SVD, spectral norm): measured 0.15–0.31 ns at width 256–512

# Counterexamples (Appendix A): monte_carlo_slope_bias and the full-batch descents of A.2 / A.3.
A1_DRAW_NS = 40.0  # per Monte Carlo draw: measured 14 (uniform) and 18 (two-point) ns
A1_BYTES_PER_DRAW = 64  # measured 37 bytes of peak memory per draw (1e7 draws)
DESCEND_STEP_US = 100.0  # per step of fbsgd.optimizers.descend on the 2-weight examples: measured 35–40 µs (A.2, A.3),
#                          80 µs (the correctors' A.3)

# Error propagation: fbsgd.studies.error_propagation.injection.gradient_error, per draw and operator.
EP_DRAW_OP_NS = 1000.0  # fixed part: measured 2.6 µs per draw-operator at width 16 (linear, first call), 0.5 µs (tanh)
EP_DRAW_OP_WIDTH2_NS = 8.0  # per width² (the operator's weight gradient): measured 3.4–4.8 ns at widths 64 and 128

# Forward gradients: fbsgd.studies.forward_gradients.study.
FG_NORMAL_NS = 300.0  # per direction entry drawn and used (Beale, variance): measured 105 (Beale) and 133 (variance) ns
FG_PASS_US = 100.0  # fixed cost of one forward-mode pass (within the variance study's 4.4 s for 4 sizes and the perceptron)
FG_MAC_NS = 20.0  # per sample × weight of a pass or a full-batch gradient: measured 9.3 ns (perceptron with 64,640 weights)
FG_STEP_US = 300.0  # per training step (estimator, optimizer, bookkeeping): measured 20–180 µs, 160 µs (stability check)
FG_STEP_WEIGHT_NS = 250.0  # per weight and step of the stability check: measured 106 ns at n = 10,000
FG_FULL_EVALS = 143  # full-batch evaluations per training run: 200 / 5 probe gradients + at most 2 × 50 curve points + 3

# Derivatives of SGD: fbsgd.studies.sgd_derivatives.sgd_prime (compiled kernel, exact moments).
SGDD_STEP_NS = 300.0  # per step of SGD and SGD′: measured 189–708 ns at d = 5
SGDD_STEP_DP_NS = 4.0  # per step × d × p: measured 1.3–2.8 ns (d = 5, 20; p = 50, 500)
SGDD_CHECKPOINT_NS = 8.0  # per checkpoint × m × d × p (the exact error-term moments, β > 0): measured ≈ 4 ns
SGDD_MOMENT_NS = 10.0  # per step × m × d² of expected_error: measured 5.0–7.3 ns
SGDD_KRON_NS = 50.0  # per m × d⁴ of moment_operator (stationary_error): measured 5.5–45 ns
SGDD_EIG_NS = 20.0  # per (d²)³ of the eigenvalues of the d² × d² moment operator (within stationary_error's 0.44 s at d = 20)
SGDD_FD_US = 60.0  # per weight θ_j and iteration of the finite-difference check: measured 17–45 µs
SGDD_ROW_BYTES = 200  # a row of the long curve tables (pandas, 10 columns)

# Real mechanisms: fbsgd.studies.real_mechanisms (messages, moment table, deep chain).
MSG_STEP_US = 250.0  # per step of the clean run whose messages are measured: measured 106 µs
MOMENT_ELEM_NS = 40.0  # per message entry drawn by a Round / BitFlip (call + statistics): measured 5–9 ns + statistics
MOMENT_SPARSE_NS = 600.0  # per message entry drawn by a Top-K / Rand-K over the batch: measured 58–222 ns
MOMENT_BYTES_PER_ELEM = 48  # draws (float64) and the statistics' copies and masks of them
# The deep chain runs through the chain engine (fbsgd.engine.chains, one run_sweep call), then the relative
# gradient error at w_T and at the comparable points through deep_chain.mean_gradient (numpy, the batch-mean gradient).
DEEP_LAYER_US = 5.0  # per run, layer and pass of the engine (a step or a metric): fixed part (measured ≤ 19 µs in all at width 32)
DEEP_ROW_NS = 1.0  # per run, layer, row and width² of the engine's passes (batch rows a step, n_data rows a metric): measured 0.43–0.6 ns
DEEP_ERROR_NS = 5.0  # per pass, layer, sample and width² of the error's mean-gradient passes (deep_chain.mean_gradient, no per-sample
#                       weight gradients): measured about 1 ns with its rounding (width 16, 2,048 samples, one BLAS thread)
DEEP_WEIGHT_COPIES = 10  # weight-sized arrays held at once per run: w, m1, m2, gradient, step, the sweep's w_T, ...
DEEP_ACTIVATION_EXTRA = 6  # activation-sized arrays beyond the 2N + 2 operator outputs of a full-data pass

# Correctors: fbsgd.studies.correctors.study (Section 7 RunConfigs through run_sweep, all compiled in the Section 7
# kernel), measured 2026-12-07 with a timing script (8 runs × T = 10,000 per kind, one core, the machine at load 6.6 on
# 2 cores, so about 2.5 times the unloaded times; standard SGD measured 6.6 µs in the same run).
CORRECTOR_STEP_US = 50.0  # per iteration of a compressor run: measured 11 (float8 nearest) to 36 (Top-K with error
#                           feedback, delta Top-K) µs; the second-order de-biasing 25 µs
CORRECTOR_EXACT_US = 250.0  # per iteration with the exact de-biasing (correctors.UniformDebias, an element operation): 153 µs
CORRECTOR_EXACT = 1  # settings per σ_f with the exact de-biasing
CORRECTOR_ELEMENT_COMPILE_S = 40.0  # the de-biasing kinds' kernel (one numba function for both), compiled in each
#                                     worker process: measured 26 s

# The studies' own constants that the counts need (the book floor does not import the studies; the
# tests check that these equal them).
M_SAMPLES, D_FEATURES = 2000, 10  # Section 7's problem (RunConfig.M, RunConfig.d)
FLOW_TIME, PL_METRIC_EVERY = 0.25, 50  # studies.rates.schedules: the metric interval of the horizon runs
SLOPE_WINDOW = 3  # studies.section7.design: the step sizes of the small-step slope (reproducibility notes)
SCAN_GAMMAS, SCAN_MIN_STEPS, A3_SETTINGS = 17, 2000, 2  # studies.counterexamples.study: the A.3 scan
A3_VARIANTS = 4  # studies.correctors.study: uncompressed, Top-1, with error feedback, delta
GROUP_ROWS, MIN_GROUPS = 512, 16  # studies.error_propagation: rows per group of draws, fewest groups
MLP_SAMPLES = 500  # studies.forward_gradients.study.variance_study: samples of the perceptron
DEEP_OPTIMIZERS, DEEP_ERROR_DRAWS = 3, 4  # studies.real_mechanisms.deep_chain: SGD, heavy ball, Adam
DEEP_METRIC_POINTS = 50  # studies.real_mechanisms.summary: the deep chain's metric every deep_T // 50 iterations
COMPRESSION_SETTINGS = 20  # studies.correctors.study.compression_settings: 2 places × (3 Top-K + 3 Rand-K + 4 rounding)
SGDD_CHECKPOINTS = 302  # most checkpoints of a run (sgd_prime.checkpoints with 150 + 150 or 200 + 100, plus 0 and K)


@dataclass(frozen=True)
class Stage:
    """One main computation of a chapter: its estimated wall time (seconds) and the memory it holds
    at once (bytes), with the counts behind them and the parameters that size it.  ``sweep_bytes``:
    the memory of the sweep workers, checked by the sweep chapters' own rule, reported here only."""

    name: str
    seconds: float
    bytes: float
    time_what: str
    memory_what: str
    params: tuple
    sweep_bytes: float = 0.0


@dataclass(frozen=True)
class Estimate:
    """A chapter's stages; ``seconds`` is their sum plus the chapter's fixed cost, ``bytes`` the largest."""

    chapter: str
    stages: tuple

    @property
    def seconds(self) -> float:
        return CHAPTER_FIXED_S + sum(s.seconds for s in self.stages)

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def bytes(self) -> float:
        """Peak memory checked by :func:`memory_problem` (the sweep workers excluded)."""
        return BASE_BYTES + max((s.bytes for s in self.stages), default=0.0)

    @property
    def peak_bytes(self) -> float:
        """Peak memory including the sweep workers."""
        return BASE_BYTES + max((s.bytes + s.sweep_bytes for s in self.stages), default=0.0)

    def largest(self, key: str) -> Stage:
        return max(self.stages, key=lambda s: getattr(s, key))


# -- helpers --------------------------------------------------------------------------------------------------

def _cores() -> int:
    return os.cpu_count() or 1


def _workers(n_jobs) -> int:
    """joblib's number of workers for ``n_jobs`` (-1: all cores, -2: all but one, ...)."""
    if not n_jobs:
        return 1
    return max(1, _cores() + 1 + n_jobs) if n_jobs < 0 else int(n_jobs)


def _speedup(n_jobs, tasks) -> int:
    """Workers that run at once: at most the cores, the workers and the independent tasks."""
    return max(1, min(_workers(n_jobs), _cores(), max(1, int(tasks))))


def _n(x) -> str:
    """A count for a message: 1,234,567 or 1.2e+12."""
    x = float(x)
    return f"{x:,.0f}" if x < 1e12 else f"{x:.3g}"


def _size(b: float) -> str:
    """Bytes as MiB, GiB or TiB."""
    for unit, k in (("TiB", 2**40), ("GiB", 2**30)):
        if b >= k:
            return f"{b / k:,.1f} {unit}"
    return f"{b / 2**20:,.0f} MiB"


def _hours(h: float) -> str:
    return f"{h:,.1f} hours" if h >= 0.1 else f"{h * 60:.1f} minutes"


def _stage(name, seconds, nbytes, time_what, memory_what, params, sweep_bytes=0.0) -> Stage:
    return Stage(name, float(seconds), float(nbytes), time_what, memory_what, tuple(params), float(sweep_bytes))


def _sweep(name: str, groups, n_jobs, params, *, metric_every=None, sweeps: int = 1) -> Stage:
    """A stage of ``sweeps`` run_sweep calls over ``groups``: (runs, T, µs per run-iteration, metric
    interval, µs per metric).  Memory: the sweep workers (checked elsewhere) and the run tables."""
    groups = [g for g in groups if g[0] > 0]
    runs = sum(g[0] for g in groups)
    run_its = sum(g[0] * g[1] for g in groups)
    core_s = sum(g[0] * g[1] * (g[2] + g[4] / g[3]) for g in groups) * 1e-6
    sp = _speedup(n_jobs, -(-runs // SWEEP_CHUNK))
    T_max = max((g[1] for g in groups), default=1)
    every = metric_every or min((g[3] for g in groups), default=1)
    workers = memory_needed(T_max, every, SWEEP_CHUNK, n_jobs) if groups else 0
    us = core_s / max(run_its, 1) * 1e6
    if len({g[1] for g in groups}) == 1:
        what = f"{_n(runs)} runs × T = {_n(T_max)} iterations"
    else:
        what = f"{_n(runs)} runs, {_n(run_its)} run-iterations in all"
    return _stage(name, sweeps * SWEEP_FIXED_S + core_s / sp, runs * SWEEP_RUN_BYTES,
                  f"{what}, about {us:.3g} µs per run-iteration, on {sp} worker{'s' if sp > 1 else ''}",
                  f"{_n(runs)} runs' rows and traces", params, workers)


def _pass_us(precision: str) -> float:
    return SWEEP_UNIFORM_US * (SWEEP_FLOAT64_FACTOR if precision == "float64" else 1.0)


def _horizons(T_min: int, T_max: int, per_decade: int) -> list[int]:
    """fbsgd.studies.rates.schedules.horizons, without its checks (T_max <= T_min gives [T_min])."""
    if T_max <= T_min or per_decade < 1:
        return [int(T_min)]
    n = max(1, round(per_decade * math.log10(T_max / T_min)))
    out = []
    for i in range(n + 1):
        x = T_min * (T_max / T_min) ** (i / n)
        digits = max(0, int(math.floor(math.log10(x))) - 1)
        out.append(int(round(x / 10**digits) * 10**digits))
    out[0], out[-1] = int(T_min), int(T_max)
    return sorted(set(out))


def _nonconvex_every(T: int, c: float) -> int:
    """The metric interval of a non-convex horizon run (schedules.geometry_fields with γ = c/√T)."""
    return min(max(1, int(FLOW_TIME / (c / math.sqrt(T)))), max(1, T // 2))


def _pl_every(T: int) -> int:
    return min(PL_METRIC_EVERY, max(1, T // 2))


# -- the chapters -------------------------------------------------------------------------------------------

def _setting(p) -> list[Stage]:
    depths, width, scales = p["depths"], p["width"], p["layer_scales"]
    layers = 2 * len(scales) * sum(depths)
    return [_stage("depth amplification", layers * (SETTING_LAYER_US * 1e-6 + DENSE_CUBE_NS * 1e-9 * width**3),
                   8 * 4 * max(depths) * width**2,
                   f"2 kinds × {len(scales)} scales × {_n(sum(depths))} layers = {_n(layers)} layers of width {width}",
                   f"4 copies of {max(depths)} layers of {width} × {width}", ("depths", "width", "layer_scales"))]


def _counterexamples(p) -> list[Stage]:
    sizes, draws, steps3 = p["a1_sizes"], p["a1_draws"], p["a3_steps"]
    a1 = 2 * len(sizes) * draws
    scan = max(steps3, SCAN_MIN_STEPS)
    a3 = A3_SETTINGS * (3 * steps3 + 2 * SCAN_GAMMAS * scan + 2 * scan)
    a2 = len(p["a2_gammas"]) * p["a2_steps"]
    return [_stage("A.1 Monte Carlo", a1 * A1_DRAW_NS * 1e-9, draws * A1_BYTES_PER_DRAW,
                   f"2 laws × {len(sizes)} sizes × {_n(draws)} draws", f"{_n(draws)} draws at once",
                   ("a1_draws", "a1_sizes")),
            _stage("A.2 runs", a2 * DESCEND_STEP_US * 1e-6, a2 * 8 * 4,
                   f"{len(p['a2_gammas'])} step sizes × {_n(p['a2_steps'])} steps", f"{_n(a2)} iterates",
                   ("a2_steps", "a2_gammas")),
            _stage("A.3 runs and scan", a3 * DESCEND_STEP_US * 1e-6, 8 * 8 * 2 * scan,
                   f"{_n(a3)} descent steps", f"runs of {_n(scan)} steps", ("a3_steps",))]


def _ep_measurement(n: int, ops: int, weights: int, width: int):
    """(seconds on one core, bytes) of one gradient_error measurement of ``n`` draws."""
    batch = min(GROUP_ROWS, -(-n // MIN_GROUPS))
    K = -(-n // batch)
    seconds = n * ops * (EP_DRAW_OP_NS + EP_DRAW_OP_WIDTH2_NS * width**2) * 1e-9
    return seconds, 8.0 * (4 * batch * weights + 2 * K * weights + 5 * K * K)


def _error_propagation(p) -> list[Stage]:
    w, n, nb = p["width"], p["n_draws"], p["bias_draws"]
    lin = lambda N: (N, (N - 1) * w * w + w)  # noqa: E731  (operators, weights) of a linear chain
    tanh = lambda L: (2 * L + 1, L * w * w + w)  # noqa: E731
    depth = [(n, *lin(N)) for N in p["linear_depths"] for _ in range(3)]
    depth += [m for L in p["tanh_layers"] for m in ((nb, *tanh(L)), (n, *tanh(L)))]
    Nl, Lt = max(p["linear_depths"]), max(p["tanh_layers"])
    location = [(n, *lin(Nl))] * (2 * (Nl - 1)) + [(n, *tanh(Lt))] * (2 * (2 * Lt))
    Nb = 2 * p["bias_layers"] + 1
    bias = [m for _ in p["bias_sigmas"] for m in [(nb, *tanh(p["bias_layers"]))] * 4 + [(nb, *lin(Nb))]]
    out = []
    for name, ms, params in (("depth sweep (a)", depth, ("n_draws", "bias_draws", "linear_depths", "tanh_layers", "width")),
                             ("location sweep (b)", location, ("n_draws", "linear_depths", "tanh_layers", "width")),
                             ("bias sweep (c)", bias, ("bias_draws", "bias_sigmas", "bias_layers", "width"))):
        costs = [_ep_measurement(d, ops, weights, w) for d, ops, weights in ms]
        sp = _speedup(-1, len(ms))
        draw_ops = sum(d * ops for d, ops, _ in ms)
        out.append(_stage(name, sum(c[0] for c in costs) / sp, sp * max(c[1] for c in costs),
                          f"{len(ms)} measurements, {_n(draw_ops)} draw-operators of width {w}, on {sp} workers",
                          f"{sp} measurements at once, the largest with {_n(max(d for d, _, _ in ms))} draws",
                          params))
    return out


def _fg_run_seconds(steps: int, weights: int, samples: int, batch: int) -> float:
    return (steps * (FG_STEP_US * 1e-6 + FG_MAC_NS * 1e-9 * batch * weights)
            + FG_FULL_EVALS * FG_MAC_NS * 1e-9 * samples * weights)


def _forward_gradients(p) -> list[Stage]:
    M, batch = p["n_samples"], p["batch_size"]
    mlp = (p["mlp_inputs"] + 1) * p["mlp_hidden"] + p["mlp_hidden"]
    reps, Ks = p["mc_repeats"], p["mc_counts"]
    beale = reps * sum(Ks) * 2
    out = [_stage("Beale Monte Carlo", beale * FG_NORMAL_NS * 1e-9 + len(Ks) * 2 * FG_PASS_US * 1e-6
                  + sum(p["arrow_counts"]) * 2 * FG_NORMAL_NS * 1e-9,
                  8 * 4 * max(2_000_000, 2 * max(Ks), 2 * max(p["arrow_counts"])) + 8 * reps * len(Ks),
                  f"{_n(reps)} repeats × {_n(sum(Ks))} forward gradients (the sum of mc_counts)",
                  "chunks of 2,000,000 direction entries", ("mc_repeats", "mc_counts", "arrow_counts"))]
    draws, dirs = p["var_draws"], p["var_directions"]
    seconds, peak = 0.0, 0.0
    models = [(n, M) for n in p["var_dims"]] + [(mlp, min(M, MLP_SAMPLES))]
    for n, rows in models:
        for K in dirs:
            basis = draws * K > n
            passes = n if basis else draws * K
            seconds += passes * (FG_PASS_US * 1e-6 + FG_MAC_NS * 1e-9 * rows * n) + draws * K * n * FG_NORMAL_NS * 1e-9
            peak = max(peak, 8.0 * (3 * draws * K * n + (n * n if basis else 0) + rows * (n + 2)))
    out.append(_stage("variance study", seconds, peak,
                      f"{_n(draws)} draws × {sum(dirs)} directions over {len(models)} models of up to "
                      f"{_n(max(n for n, _ in models))} weights",
                      f"{_n(draws)} × {max(dirs)} directions of up to {_n(max(n for n, _ in models))} weights",
                      ("var_draws", "var_dims", "var_directions", "mlp_inputs", "mlp_hidden", "n_samples")))
    steps = p["stab_steps"] * len(p["stab_c"]) * p["n_seeds"]
    out.append(_stage("stability check", steps * sum(FG_STEP_US * 1e-6 + FG_STEP_WEIGHT_NS * 1e-9 * n for n in p["stab_dims"]),
                      8 * 8 * max(p["stab_dims"]), f"{_n(steps * len(p['stab_dims']))} steps on up to {_n(max(p['stab_dims']))} weights",
                      f"{_n(max(p['stab_dims']))} weights", ("stab_steps", "stab_dims", "stab_c", "n_seeds")))
    runs = 2 * p["n_seeds"]  # backprop and forward gradients, every seed
    logistic = (len(p["sgd_lrs_logistic"]) + len(p["adam_lrs_logistic"])) * runs
    perceptron = (len(p["sgd_lrs_mlp"]) + len(p["adam_lrs_mlp"])) * runs
    single = [logistic * _fg_run_seconds(p["logistic_steps"], D_FEATURES, M, batch),
              perceptron * _fg_run_seconds(p["mlp_steps"], mlp, M, batch)]
    n_runs = logistic + perceptron
    sp = _speedup(-1, n_runs)
    out.append(_stage("SGD and Adam training", sum(single) / sp,
                      sp * 8 * 3 * max(M, batch) * max(mlp, D_FEATURES) + 8 * M * (p["mlp_inputs"] + D_FEATURES + 4),
                      f"{_n(n_runs)} runs of {_n(p['logistic_steps'])} / {_n(p['mlp_steps'])} steps on "
                      f"{D_FEATURES} / {_n(mlp)} weights, on {sp} workers",
                      f"full-batch gradients of {_n(M)} samples × {_n(mlp)} weights on {sp} workers",
                      ("mlp_steps", "logistic_steps", "n_samples", "mlp_hidden", "mlp_inputs", "batch_size", "n_seeds",
                       "sgd_lrs_mlp", "adam_lrs_mlp", "sgd_lrs_logistic", "adam_lrs_logistic")))
    return out


def _sgd_derivatives(p) -> list[Stage]:
    d, m, S = p["d"], p["m"], p["n_seeds"]
    problems = [(s, b, d if s == "double_interpolation" else m) for s in p["settings"] for b in p["curvatures"]]
    sp = _speedup(-1, S)

    def run(iters, pdim, beta):  # seconds of one run_sgd_prime call with S seeds on threads
        steps = S * iters * (SGDD_STEP_NS + SGDD_STEP_DP_NS * d * pdim) * 1e-9
        ck = S * SGDD_CHECKPOINTS * m * d * pdim * SGDD_CHECKPOINT_NS * 1e-9 if beta != 0 else 0.0
        return (steps + ck) / sp

    exact = lambda iters: iters * m * d * d * SGDD_MOMENT_NS * 1e-9  # noqa: E731
    stationary = (m * d**4 * SGDD_KRON_NS + d**6 * SGDD_EIG_NS) * 1e-9
    fr, K = p["step_fractions"], p["const_iters"]
    const = sum(len(fr) * (run(K, pd, b) + (exact(K) + stationary if b == 0 else 0.0)) for _, b, pd in problems)
    main = "general" if "general" in p["settings"] else p["settings"][0]
    p_main = d if main == "double_interpolation" else m
    Kd = p["decr_iters"]
    decr = sum(run(Kd, p_main, b) + (exact(Kd) if b == 0 else 0.0) for b in p["curvatures"])
    p_fd = d if p["settings"][0] == "double_interpolation" else m
    fd = 2 * p_fd * p["fd_iters"] * SGDD_FD_US * 1e-6
    rows = (len(problems) * len(fr) + len(p["curvatures"])) * S * SGDD_CHECKPOINTS
    tables = 8.0 * len(problems) * 2 * m * (m + d) + rows * SGDD_ROW_BYTES + 8.0 * 3 * d**4
    return [_stage("constant steps", const, tables,
                   f"{len(problems)} problems × {len(fr)} steps × {S} seeds × {_n(K)} iterations (d = {d}, p up to {m})",
                   f"{len(problems)} problems of size {m} and {_n(rows)} curve rows",
                   ("const_iters", "n_seeds", "m", "d", "step_fractions", "curvatures", "settings")),
            _stage("decreasing steps", decr, tables,
                   f"{len(p['curvatures'])} curvatures × {S} seeds × {_n(Kd)} iterations",
                   f"{_n(rows)} curve rows", ("decr_iters", "n_seeds", "m", "d", "curvatures")),
            _stage("finite-difference check", fd, 8.0 * 4 * p["fd_iters"] * d * p_fd,
                   f"2 × {_n(p_fd)} perturbed runs of {_n(p['fd_iters'])} iterations",
                   f"{_n(p['fd_iters'])} Jacobians of {d} × {_n(p_fd)}", ("fd_iters", "m", "d"))]


def _real_mechanisms(p) -> list[Stage]:
    n_jobs, T, G, S = p["n_jobs"], p["T"], len(p["gammas"]), len(p["seeds"])
    GA = len(p["atlas_gammas"])
    every, us = p["metric_every"], _pass_us(p["precision"])
    obj_us = SWEEP_OBJECT_US * (SWEEP_FLOAT64_FACTOR if p["precision"] == "float64" else 1.0)
    n_round = len(p["formats"]) * len(p["modes"])
    n_sparse, n_flip = 2 * len(p["keep_fractions"]), 3 * len(p["flip_rates"])
    K = max(1, min(p["message_checkpoints"], p["message_T"] - p["message_T"] // 2))
    draws = p["message_draws"]
    entries = 2 * K * draws * M_SAMPLES  # per mechanism: two messages
    moments = entries * ((n_round + n_flip) * MOMENT_ELEM_NS + n_sparse * MOMENT_SPARSE_NS) * 1e-9
    out = [_stage("clean run for the messages", p["message_T"] * MSG_STEP_US * 1e-6, 8.0 * 4 * K * M_SAMPLES,
                  f"{_n(p['message_T'])} iterations", f"{K} messages of {M_SAMPLES}", ("message_T",)),
           _stage("moment table", moments, K * draws * M_SAMPLES * MOMENT_BYTES_PER_ELEM,
                  f"{n_round + n_sparse + n_flip} mechanisms × 2 messages × {K} iterates × {_n(draws)} draws × {M_SAMPLES} entries",
                  f"{K} iterates × {_n(draws)} draws × {M_SAMPLES} entries",
                  ("message_draws", "message_checkpoints", "formats", "modes", "keep_fractions", "flip_rates")),
           _sweep("Figure 4 sweep with rounding", [(G * S, T, us, every, SWEEP_METRIC_US),
                                                    (G * S * 2 * n_round, T, obj_us, every, SWEEP_METRIC_US)],
                  n_jobs, ("T", "gammas", "seeds", "formats", "modes", "metric_every", "precision")),
           _sweep("bit-flip atlas", [(GA * len(p["atlas_seeds"]), T, us, every, SWEEP_METRIC_US),
                                     (GA * len(p["atlas_seeds"]) * 2 * len(p["atlas_rates"]), T, obj_us, every, SWEEP_METRIC_US)],
                  n_jobs, ("T", "atlas_gammas", "atlas_seeds", "atlas_rates", "metric_every", "precision"))]
    depths, w, deep_T, n = p["depths"], p["width"], p["deep_T"], p["n_data"]
    C = len(p["deep_seeds"]) * (1 + 2 * len(p["deep_formats"]))
    runs, perturbed = DEEP_OPTIMIZERS * C, DEEP_OPTIMIZERS * (C - len(p["deep_seeds"]))  # per depth
    m_every = max(1, deep_T // DEEP_METRIC_POINTS)
    metrics = -(-deep_T // m_every) + 1  # the engine's clean full-data metric at t = 0, k, 2k, … < T and at w_T
    passes = 1 + DEEP_ERROR_DRAWS  # the error at w_T: one clean and DEEP_ERROR_DRAWS perturbed full-data passes
    layers = sum(depths)
    prefix = DEEP_OPTIMIZERS * len(p["deep_seeds"])  # per depth: the clean runs again, up to their comparable point (≤ T)
    engine = (runs + prefix) * layers * (deep_T * (DEEP_LAYER_US * 1e-6 + DEEP_ROW_NS * 1e-9 * p["batch"] * w * w)
                                         + metrics * (DEEP_LAYER_US * 1e-6 + DEEP_ROW_NS * 1e-9 * n * w * w))
    # the error at each perturbed run's own w_T and at its clean twin's comparable point
    error = 2 * perturbed * layers * passes * (DEEP_LAYER_US * 1e-6 + DEEP_ERROR_NS * 1e-9 * n * w * w)
    lemma = sum(depths) * (w**3 * DENSE_CUBE_NS + w * w * 20) * 1e-9
    N = max(depths)
    weights = N * w * w + w
    nbytes = 8.0 * (DEEP_WEIGHT_COPIES * runs * weights + (2 * N + 2 + DEEP_ACTIVATION_EXTRA) * runs * max(n, p["batch"]) * w
                    + N * n * w * w + 3 * n * w)  # + the error pass's per-sample weight gradients
    out.append(_stage("deep chain", engine + error + lemma, nbytes,
                      f"{runs} runs per depth × {_n(layers)} layers × ({_n(deep_T)} steps of {p['batch']} samples + "
                      f"{metrics} full passes over {_n(n)} samples) in the engine, and {prefix} clean runs per depth "
                      f"again up to their comparable points, + {passes} full passes for the error of {perturbed} "
                      f"perturbed runs per depth at two weights each, width {w}",
                      f"{runs} runs of {_n(weights)} weights and their activations on {_n(n)} samples, depth {N}, and "
                      f"the per-sample weight gradients of a full-data pass",
                      ("deep_T", "depths", "width", "n_data", "batch", "deep_seeds", "deep_formats")))
    return out


def _section7_common(p):
    return p["T"], len(p["gammas"]), len(p["seeds"]), p["metric_every"], _pass_us(p["precision"])


def _frequent_zero_mean(p) -> list[Stage]:
    T, G, S, every, us = _section7_common(p)
    per = 1 + len(p["sigma_f_levels"]) + len(p["sigma_b_levels"])
    runs = 2 * G * S * per + len(p["fig3_gammas"]) * S * 3
    return [_sweep("Figures 3–5 sweep", [(runs, T, us, every, SWEEP_METRIC_US)], p["n_jobs"],
                   ("T", "gammas", "seeds", "sigma_f_levels", "sigma_b_levels", "fig3_gammas", "metric_every", "precision"))]


def _intermittent(p) -> list[Stage]:
    T, G, S, every, us = _section7_common(p)
    runs = 2 * G * S * (1 + len(p["sigma_f_panels"]) * len(p["intervals"]))
    return [_sweep("Figures 7–8 sweep", [(runs, T, us, every, SWEEP_METRIC_US)], p["n_jobs"],
                   ("T", "gammas", "seeds", "intervals", "sigma_f_panels", "metric_every", "precision"))]


def _nonzero_mean(p) -> list[Stage]:
    T, G, S, every, us = _section7_common(p)
    runs = G * S * len(p["sigma_b_levels"])
    return [_sweep("Figure 6 sweep", [(runs, T, us, every, SWEEP_METRIC_US)], p["n_jobs"],
                   ("T", "gammas", "seeds", "sigma_b_levels", "metric_every", "precision"))]


def _reproducibility(p) -> list[Stage]:
    T, _, S, every, us = _section7_common(p)
    G = min(len(p["gammas"]), SLOPE_WINDOW)
    per4 = 1 + len(p["sigma_f_levels"]) + len(p["sigma_b_levels"])
    variants = 3 * G * S * per4 + 3 * G * S * len(p["fig6_levels"])
    ref = G * per4  # the main zero-mean runs of the first seed, rerun three ways
    return [_sweep("variants sweep", [(variants, T, us, every, SWEEP_METRIC_US)], p["n_jobs"],
                   ("T", "gammas", "seeds", "sigma_f_levels", "sigma_b_levels", "fig6_levels", "metric_every", "precision")),
            _sweep("tolerance reruns", [(ref, T, us, 1, SWEEP_METRIC_US),
                                        (ref, T, SWEEP_UNIFORM_US * SWEEP_FLOAT64_FACTOR, every, SWEEP_METRIC_US),
                                        (ref, T, us, every, SWEEP_METRIC64_US)],
                   p["n_jobs"], ("T", "gammas", "sigma_f_levels", "sigma_b_levels"), metric_every=1)]


def _convergence(p) -> list[Stage]:
    Ts = _horizons(p["T_min"], p["T_max"], p["per_decade"])
    settings = 1 + (p["sigma_f"] > 0) + (p["sigma_b"] > 0)
    runs = settings * p["n_seeds"]
    groups = [(runs, T, SWEEP_UNIFORM_US, _nonconvex_every(T, p["c_nonconvex"]), SWEEP_METRIC_US) for T in Ts]
    groups += [(runs, T, SWEEP_UNIFORM_US, _pl_every(T), SWEEP_METRIC_US) for T in Ts]
    return [_sweep("horizon sweep", groups, p["n_jobs"], ("T_max", "n_seeds", "per_decade", "T_min", "c_nonconvex"))]


def _budgets(p) -> list[Stage]:
    Ts = _horizons(p["T_min"], p["T_max"], p["per_decade"])
    settings = 8 + 1 + 4 * len(p["exponents"])  # Corollary 1's eight, Table 1's standard run and 4 cases × a
    c = p["c_nonconvex"]
    groups = [(settings * p["n_seeds"], T, SWEEP_UNIFORM_US, _nonconvex_every(T, c), SWEEP_METRIC_US) for T in Ts]
    groups += [(settings * p["n_seeds_pl"], T, SWEEP_UNIFORM_US, _pl_every(T), SWEEP_METRIC_US) for T in Ts]
    sT, k = p["spike_T"], p["n_spike_seeds"]
    spikes = [(1, sT, SWEEP_UNIFORM_US, 10, SWEEP_METRIC_US), (5 * k, sT, SWEEP_UNIFORM_US, 10, SWEEP_METRIC_US),
              (3 * k, 10 * sT, SWEEP_UNIFORM_US, 100, SWEEP_METRIC_US)]
    return [_sweep("Corollary 1 and Table 1 sweep", groups, p["n_jobs"],
                   ("T_max", "n_seeds_pl", "n_seeds", "exponents", "per_decade", "T_min", "c_nonconvex")),
            _sweep("gradient-spike runs", spikes, p["n_jobs"], ("spike_T", "n_spike_seeds"), sweeps=2)]


def _correctors(p) -> list[Stage]:
    n_exact = CORRECTOR_EXACT * len(p["sigma_f_debias"])  # settings with the exact de-biasing
    n_set = COMPRESSION_SETTINGS + 3 * len(p["sigma_f_debias"]) + 1
    step_us = ((n_set - n_exact) * CORRECTOR_STEP_US + n_exact * CORRECTOR_EXACT_US) / n_set  # mean over the settings
    every = 10  # the Section 7 chapters' metric interval (studies.correctors.study.SECTION7)
    scan_runs = n_set * len(p["gammas"]) * len(p["seeds"])
    scan = scan_runs * p["T"] * (step_us + SWEEP_METRIC_US / every) * 1e-6
    n_rate = COMPRESSION_SETTINGS + 1  # the rate scan: the compression settings and standard SGD (no de-biasing)
    rate_runs = n_rate * len(p["horizons"]) * len(p["rate_seeds"])
    rate = n_rate * len(p["rate_seeds"]) * sum(
        h * (CORRECTOR_STEP_US + SWEEP_METRIC_US / min(max(1, int(FLOW_TIME * math.sqrt(h) / p["c_rate"])), max(1, h // 2)))
        for h in p["horizons"]) * 1e-6
    sp1 = _speedup(p["n_jobs"], -(-scan_runs // SWEEP_CHUNK))
    sp2 = _speedup(p["n_jobs"], -(-rate_runs // SWEEP_CHUNK))
    a3 = A3_SETTINGS * len(p["a3_gammas"]) * A3_VARIANTS * p["a3_steps"]
    return [_stage("γ scan", scan / sp1, scan_runs * SWEEP_RUN_BYTES,
                   f"{_n(scan_runs)} runs × T = {_n(p['T'])} iterations, about {step_us:.3g} µs per run-iteration "
                   f"({_n(scan_runs * n_exact // n_set)} runs with the exact de-biasing), on {sp1} workers",
                   f"{_n(scan_runs)} runs' rows and traces", ("T", "gammas", "seeds", "sigma_f_debias")),
            _stage("rate scan", rate / sp2, rate_runs * SWEEP_RUN_BYTES,
                   f"{_n(rate_runs)} runs, {_n(n_rate * len(p['rate_seeds']) * sum(p['horizons']))} iterations in all, "
                   f"on {sp2} workers", f"{_n(rate_runs)} runs' rows", ("horizons", "rate_seeds")),
            _stage("engine start-up", 2 * SWEEP_FIXED_S + CORRECTOR_ELEMENT_COMPILE_S, 0.0,
                   "2 run_sweep calls: the kernels loaded (or compiled) in each worker, and the de-biasing kinds' "
                   "kernel compiled in each worker", "none", ("n_jobs",)),
            _stage("A.3 scan", a3 * DESCEND_STEP_US * 1e-6, 8.0 * 8 * p["a3_steps"],
                   f"{_n(a3)} descent steps", f"runs of {_n(p['a3_steps'])} steps", ("a3_steps", "a3_gammas"))]


# formats (chapters/formats.ipynb, fbsgd.studies.formats.study): measured 2026-12-08 on the book's machine while
# loaded, rounded up: the Section 7 kernel with an MX block function 19–45 µs per configuration and iteration, a kind
# that does not compile (per-tensor scaling, NVFP4) on the reference path ~250 µs; the chain kernel on the digits MLP
# with MX at every site ~0.3 ms per step at N = 8 (60 µs per layer), on the reference path ~30 ms per step; a kernel
# with a block function compiled once per worker process (70–180 s each, not cached on disk)
FORMATS_S7_COMPILED_US, FORMATS_S7_REFERENCE_US = 50.0, 250.0
FORMATS_DIGITS_LAYER_US, FORMATS_DIGITS_REFERENCE_US = 60.0, 30_000.0
FORMATS_COMPILE_S = 200.0
FORMATS_SITES = 3  # forward, backward, both


def _formats_compiled(label: str) -> bool:
    """Whether a kind or recipe of the formats chapter runs compiled: the MX kinds (labels "MX…") do; per-tensor
    scaling and NVFP4 run on the reference path (the labels of :func:`fbsgd.studies.formats.study.kind_catalogue`
    and ``RECIPES``)."""
    return str(label).startswith("MX")


def _formats(p) -> list[Stage]:
    g0, S = min(p["gammas"]), len(p["seeds"])
    steps = sum(max(2, int(p["T"] * g0 / g)) for g in p["gammas"]) * S  # a run at γ takes T·γ_min/γ steps
    s7 = sum(steps * (1 if k is None else 2) * (FORMATS_S7_COMPILED_US if k is None or _formats_compiled(k)
                                                 else FORMATS_S7_REFERENCE_US) * 1e-6 for k in [*p["fig4_kinds"], None])
    dg = 0.0
    for N in p["depths"]:
        for r in [*p["recipes"], None]:
            per = (FORMATS_DIGITS_LAYER_US * (N + 1) * max(p["width"], 32) / 32 if r is None or _formats_compiled(r)
                   else FORMATS_DIGITS_REFERENCE_US)
            dg += p["digits_T"] * len(p["digits_seeds"]) * (1 if r is None else FORMATS_SITES) * per * 1e-6
    compile_s = FORMATS_COMPILE_S if any(_formats_compiled(k) for k in [*p["fig4_kinds"], *p["recipes"]]) else 0.0
    runs = (len(p["fig4_kinds"]) * 2 + 1) * len(p["gammas"]) * S
    return [_stage("Figure 4 with scaled formats", s7 / _speedup(p["n_jobs"], -(-runs // SWEEP_CHUNK)),
                   runs * SWEEP_RUN_BYTES, f"{_n(runs)} runs, {_n(steps)} iterations per kind and place",
                   f"{_n(runs)} runs' rows and traces", ("T", "gammas", "seeds", "fig4_kinds")),
            _stage("digits MLP", dg / _speedup(p["n_jobs"], len(p["depths"])), 8.0 * 64 * 1797 * max(p["depths"]),
                   f"{len(p['depths'])} depths × ({len(p['recipes'])} recipes × {FORMATS_SITES} sites + clean) × "
                   f"{len(p['digits_seeds'])} seeds × {_n(p['digits_T'])} steps", "the digits set and activations",
                   ("digits_T", "depths", "recipes", "digits_seeds", "width")),
            _stage("engine start-up", compile_s, 0.0, "the kernels with a block function compiled in each worker",
                   "none", ("n_jobs",))]


# The parameters that size each chapter, with their paper defaults (the tests check them against the
# chapters): the candidates for the parameter that drives an estimate.
_S7 = dict(T=200_000, gammas=[0.003, 0.01, 0.03, 0.1, 0.3, 1.0], seeds=[0, 1, 2], metric_every=10,
           precision="float32", n_jobs=-1)
REFERENCE = {
    "setting": dict(depths=list(range(2, 17)), width=16, layer_scales=[0.8, 1.0, 1.2, 1.5]),
    "counterexamples": dict(a1_sizes=np.geomspace(0.05, 8, 25).round(4).tolist(), a1_draws=1_000_000,
                            a2_gammas=[0.1, 0.3, 0.5, 0.75, 0.95, 1.0, 1.05], a2_steps=200, a3_steps=300),
    "error_propagation": dict(linear_depths=list(range(2, 17)), tanh_layers=list(range(1, 8)), width=16,
                              bias_sigmas=np.geomspace(0.05, 2.0, 10).round(4).tolist(), bias_layers=3,
                              n_draws=20_000, bias_draws=200_000),
    "convergence": dict(T_min=1000, T_max=1_000_000, per_decade=2, n_seeds=8, c_nonconvex=10.0, sigma_f=4.0,
                        sigma_b=2.0, n_jobs=-1),
    "budgets": dict(T_min=1000, T_max=320_000, per_decade=2, n_seeds=4, n_seeds_pl=8,
                    exponents=[0.0, 0.25, 0.5, 0.625, 0.75, 0.875, 1.0], c_nonconvex=10.0, spike_T=200_000,
                    n_spike_seeds=3, n_jobs=-1),
    "frequent_zero_mean": dict(_S7, sigma_f_levels=[0.1, 0.2, 0.5, 1.0, 2.0], sigma_b_levels=[0.5, 1.0, 2.0, 4.0],
                               fig3_gammas=[0.01, 0.03, 0.1, 0.3]),
    "nonzero_mean": dict(_S7, sigma_b_levels=[0.0, 0.1, 0.25, 0.5, 1.0, 2.0]),
    "intermittent": dict(_S7, sigma_f_panels=[1.0, 2.0], intervals=[1, 10, 100, 1000, 10000]),
    "reproducibility": dict(_S7, seeds=[0, 1], sigma_f_levels=[0.1, 0.2, 0.5, 1.0, 2.0],
                            sigma_b_levels=[0.5, 1.0, 2.0, 4.0], fig6_levels=[0.0, 0.1, 0.25, 0.5, 1.0, 2.0]),
    "forward_gradients": dict(mc_counts=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000], mc_repeats=2000,
                              arrow_counts=[5, 10, 100], var_dims=[2, 4, 8, 16, 32, 64, 128, 256], var_directions=[1, 4],
                              var_draws=4000, stab_dims=[10, 100, 1000], stab_c=[0.25, 0.5, 0.75, 0.9, 1.1, 1.25, 1.5],
                              stab_steps=200, logistic_steps=5000, mlp_steps=3000,
                              sgd_lrs_logistic=[0.03, 0.1, 0.3, 1.0], sgd_lrs_mlp=[0.003, 0.01, 0.03, 0.1],
                              adam_lrs_logistic=[0.001, 0.003, 0.01, 0.03], adam_lrs_mlp=[0.0001, 0.0003, 0.001, 0.003],
                              batch_size=64, n_samples=2000, mlp_inputs=20, mlp_hidden=32, n_seeds=5),
    "sgd_derivatives": dict(d=5, m=50, settings=["general", "simple_interpolation", "double_interpolation"],
                            curvatures=[0.0, 1.0], step_fractions=[0.03125, 0.0625, 0.125, 0.25, 0.5],
                            const_iters=100_000, decr_iters=1_000_000, fd_iters=200, n_seeds=20),
    "real_mechanisms": dict(_S7, formats=["bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"],
                            modes=["nearest", "stochastic"], keep_fractions=[0.1, 0.5], flip_rates=[1e-4, 1e-3],
                            atlas_rates=[1e-10, 1e-9, 1e-8, 1e-7, 1e-6], message_T=20_000, message_checkpoints=4,
                            message_draws=16, atlas_seeds=[0, 1, 2, 3], atlas_gammas=[0.01, 0.1, 1.0],
                            depths=[2, 4, 8, 16], deep_formats=["float8_e5m2 nearest", "float8_e5m2 stochastic"],
                            deep_T=6000, deep_seeds=[0, 1, 2], width=16, n_data=2048, batch=32),
    "correctors": dict(T=200_000, gammas=[0.003, 0.01, 0.03, 0.1], seeds=[0, 1, 2], horizons=[2000, 20000, 200000],
                       rate_seeds=[0, 1, 2],
                       c_rate=10.0, sigma_f_debias=[2.0],
                       a3_gammas=[0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.0035, 0.0039, 0.005, 0.01, 0.015, 0.02],
                       a3_steps=5000, n_jobs=-1),
    "formats": dict(T=200_000, gammas=[0.01, 0.03, 0.1], seeds=[0, 1, 2],
                    fig4_kinds=["MXFP8 E4M3 ocp nearest", "MXFP4 E2M1 ocp stochastic", "MXFP4 E2M1 ceil stochastic",
                                "MXFP8 E4M3 block 2000 ceil nearest"],
                    depths=[2, 4, 8], recipes=["MXFP8", "MXFP4 SR"], digits_T=4000, digits_seeds=[0, 1, 2], width=32,
                    n_jobs=-1),
}

_ESTIMATORS: dict[str, Callable] = {
    "setting": _setting, "counterexamples": _counterexamples, "error_propagation": _error_propagation,
    "convergence": _convergence, "budgets": _budgets, "frequent_zero_mean": _frequent_zero_mean,
    "nonzero_mean": _nonzero_mean, "intermittent": _intermittent, "reproducibility": _reproducibility,
    "forward_gradients": _forward_gradients, "sgd_derivatives": _sgd_derivatives,
    "real_mechanisms": _real_mechanisms, "correctors": _correctors, "formats": _formats,
}
# The parameters each chapter's estimate reads (every one declared by that chapter).
_NEEDS = {
    "setting": ("depths", "width", "layer_scales"),
    "counterexamples": ("a1_sizes", "a1_draws", "a2_gammas", "a2_steps", "a3_steps"),
    "error_propagation": ("linear_depths", "tanh_layers", "width", "bias_sigmas", "bias_layers", "n_draws", "bias_draws"),
    "convergence": ("T_min", "T_max", "per_decade", "n_seeds", "c_nonconvex", "sigma_f", "sigma_b", "n_jobs"),
    "budgets": ("T_min", "T_max", "per_decade", "n_seeds", "n_seeds_pl", "exponents", "c_nonconvex", "spike_T",
                "n_spike_seeds", "n_jobs"),
    "frequent_zero_mean": ("T", "gammas", "seeds", "metric_every", "precision", "n_jobs", "sigma_f_levels",
                           "sigma_b_levels", "fig3_gammas"),
    "nonzero_mean": ("T", "gammas", "seeds", "metric_every", "precision", "n_jobs", "sigma_b_levels"),
    "intermittent": ("T", "gammas", "seeds", "metric_every", "precision", "n_jobs", "sigma_f_panels", "intervals"),
    "reproducibility": ("T", "gammas", "seeds", "metric_every", "precision", "n_jobs", "sigma_f_levels",
                        "sigma_b_levels", "fig6_levels"),
    "forward_gradients": tuple(REFERENCE["forward_gradients"]),
    "sgd_derivatives": tuple(REFERENCE["sgd_derivatives"]),
    "real_mechanisms": tuple(REFERENCE["real_mechanisms"]),
    "correctors": tuple(REFERENCE["correctors"]),
    "formats": tuple(REFERENCE["formats"]),
}
CHAPTERS = tuple(_ESTIMATORS)


def _check_chapter(chapter: str):
    if chapter not in _ESTIMATORS:
        raise ValueError(f"chapter must be one of {list(CHAPTERS)}, got {chapter!r}")


def estimate(chapter: str, params: dict) -> Estimate:
    """The chapter's stages from its resolved parameters (a dict by name; only the names the chapter's
    estimate reads are used, see :func:`rules`)."""
    _check_chapter(chapter)
    return Estimate(chapter, tuple(_ESTIMATORS[chapter](params)))


def _seconds_of(e: Estimate) -> float:
    return e.seconds


def _bytes_of(e: Estimate) -> float:
    return e.bytes


def driver(chapter: str, params: dict, measure: Callable[[Estimate], float] = _seconds_of,
           exclude=()) -> str | None:
    """The parameter that drives ``measure`` of the estimate: the one whose paper default
    (:data:`REFERENCE`) would shrink it by the largest factor; None when none would."""
    base = measure(estimate(chapter, params))
    best, best_ratio = None, 1.0 + 1e-9
    for name, ref in REFERENCE[chapter].items():
        if name in exclude or name not in params or params[name] == ref:
            continue
        try:
            smaller = measure(estimate(chapter, {**params, name: ref}))
        except (ValueError, ZeroDivisionError, OverflowError):
            continue
        ratio = base / smaller if smaller > 0 else math.inf
        if ratio > best_ratio:
            best, best_ratio = name, ratio
    return best


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        if len(value) <= 8:
            return "[" + ", ".join(_shown(v) for v in value) + "]"
        return f"a list of {len(value):,} values"
    if isinstance(value, bool) or isinstance(value, str):
        return repr(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _advice(name: str, value, reference) -> str:
    if isinstance(value, (list, tuple)):
        return f"use fewer or smaller values in {name}"
    if isinstance(value, str):
        return f"use {name} = {reference!r}"
    return f"{'raise' if value < reference else 'lower'} {name}"


def memory_problem(chapter: str, params: dict) -> str | None:
    """The problem, naming the driving parameter, if the chapter's largest stage needs more than
    half of the machine's memory; None otherwise (or when the machine's memory is unknown)."""
    have = machine_memory()
    e = estimate(chapter, params)
    if not have or e.bytes <= MEMORY_FRACTION * have:
        return None
    stage = e.largest("bytes")
    name = driver(chapter, params, _bytes_of) or stage.params[0]
    return (f"parameter {name!r} is too large for this machine's memory: with {name} = {_shown(params[name])}, the "
            f"{stage.name} would hold about {_size(e.bytes)} at once ({stage.memory_what}), more than "
            f"{MEMORY_FRACTION:.0%} of this machine's {_size(have)}; {_advice(name, params[name], REFERENCE[chapter][name])}")


def time_problem(chapter: str, params: dict, max_hours: float = DEFAULT_MAX_HOURS) -> str | None:
    """The problem, naming the driving parameter, if the chapter's estimated time exceeds
    ``max_hours``; None otherwise."""
    e = estimate(chapter, params)
    if e.hours <= max_hours:
        return None
    stage = e.largest("seconds")
    name = driver(chapter, params, _seconds_of, exclude=("n_jobs",)) or stage.params[0]
    return (f"parameter {name!r} makes this chapter run too long: with {name} = {_shown(params[name])}, it would take "
            f"about {_hours(e.hours)} by a generous estimate (the {stage.name}: {stage.time_what}), more than "
            f"max_hours = {max_hours:g}; {_advice(name, params[name], REFERENCE[chapter][name])}, "
            f"or raise max_hours to run it anyway")


def _rule(chapter: str, check: Callable, with_hours: bool) -> P.Rule:
    """A :class:`fbsgd.book.params.Rule` whose test takes, by name, the parameters the chapter's
    estimate reads (and ``max_hours``, optional, default 3)."""
    def test(**values):
        hours = values.pop("max_hours", DEFAULT_MAX_HOURS)
        return check(chapter, values, hours) if with_hours else check(chapter, values)

    kind = inspect.Parameter.KEYWORD_ONLY
    names = [inspect.Parameter(n, kind) for n in _NEEDS[chapter]]
    if with_hours:
        names.append(inspect.Parameter("max_hours", kind, default=DEFAULT_MAX_HOURS))
    test.__signature__ = inspect.Signature(names)
    test.__name__ = test.__qualname__ = f"{'time' if with_hours else 'memory'}_of_{chapter}"
    return P.rule(test)


def rules(chapter: str) -> list[P.Rule]:
    """The cost checks of a chapter for :func:`fbsgd.book.params.resolve`: its memory within half of
    the machine's, its time within ``max_hours`` (see the module docstring).  ``chapter``: the
    notebook's file stem ("setting", "real_mechanisms", ...)."""
    _check_chapter(chapter)
    return [_rule(chapter, memory_problem, False), _rule(chapter, time_problem, True)]
