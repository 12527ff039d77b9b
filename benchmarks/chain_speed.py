"""Speed of the chain engine (fbsgd.engine.chains) on the deep chain of issue 22, measured in one run.

The workload: N = 8 tanh layers of width 32 (no bias) and a readout to one score with the
logistic loss, batch 32 drawn from 512 generated samples, every layer's forward output rounded to
float8 e5m2 (nearest), plain SGD, 16 configurations (seeds 0..15).  Peers, side by side:

  * engine f32 / f64: fbsgd.engine.chains.run_chain_chunk (the compiled kernel, one core);
  * deep_chain: the deep chain's own loop of 2026-12-07, before the chapter moved onto the engine
    (benchmarks/peers/deep_chain_2026_12_07.py, a frozen copy; numpy batched over the
    configurations, a compiled batched matmul, the mechanism through Perturbation.apply);
  * numpy: the same network written here with np.matmul over (C, B, D) arrays, rounding by
    fbsgd.lowprec.round_array;
  * jax f32 / f64 (optional): jit + vmap over configurations + lax.scan over steps, rounding by
    JAX's native float8_e5m2 cast ("jax: not installed" when it is not importable; held to one thread by XLA_FLAGS).

The engine and deep_chain compute the clean full-data metric a few times per run (the engine's
metric_every = T/2, deep_chain's train_group at t = 0, T/2 and T − 1); the numpy and jax peers only
train.  The peers are repeated, interleaved; the time reported is the fastest CPU time
(time.process_time) per configuration-iteration, so other processes on a shared machine inflate it
less than wall time.  BLAS is held to one thread.

The arithmetic floor: the flops of one configuration-iteration (the three matrix products per
layer: forward, the message back, the weight gradient; elementwise work not counted) over the
peak of a 2000×2000 product measured in this run (the faster of numpy's BLAS and the BLAS numba
calls, which are different OpenBLAS builds).  The engine's layout choice is justified in the lines
"blas 32x32x32": BLAS multiplies untransposed operands about twice as fast as a transposed one at
this size, so the engine keeps each matrix transposed (fbsgd.engine.chain_kernel.engine_order).

Run:  .venv/bin/python benchmarks/chain_speed.py [--T 2000] [--deep-T 60] [--repeats 3]
The last line is machine-readable:
  engine_f32_us=<a> engine_f64_us=<b> deep_chain_us=<c> numpy_us=<d> speedup_f32_vs_deep_chain=<x> floor_f32_us=<f>
"""
from __future__ import annotations

import argparse
import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one core per peer, before numpy loads
    os.environ.setdefault(_v, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import time  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from fbsgd import lowprec, rng  # noqa: E402
from fbsgd import perturbations as P  # noqa: E402
from fbsgd.engine import chains as CH  # noqa: E402
from fbsgd.optimizers import minibatch_indices  # noqa: E402
from fbsgd.problems import Dataset, mlp  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
import deep_chain_2026_12_07 as DC  # noqa: E402  (the deep chain's own loop before it moved onto the engine)

N, WIDTH, BATCH, CONFIGS, N_DATA, LR = 8, 32, 32, 16, 512, 0.05
FORMAT = "float8_e5m2"


def flops_per_config_iteration() -> int:
    """Forward products of every layer, messages back into layers 2..N+1, weight gradients of every layer."""
    layers = [(WIDTH, WIDTH)] * N + [(WIDTH, 1)]
    fwd = sum(2 * BATCH * a * b for a, b in layers)
    back = sum(2 * BATCH * a * b for a, b in layers[1:])
    grad = fwd
    return fwd + back + grad


def cpu_best(fn, repeats: int) -> float:
    """The fastest CPU time of ``repeats`` calls of fn(), in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


# -- the engine ---------------------------------------------------------------------------------------

def engine_configs(T: int, precision: str):
    data = Dataset.classification(N_DATA, WIDTH, seed=0)
    net = mlp(WIDTH, [WIDTH] * N, activation="tanh", bias=False)
    rounding = P.Round(FORMAT)
    forward = {2 * i: rounding for i in range(1, N + 1)}  # the output of every tanh
    return [CH.ChainConfig(net, data, lr=LR, batch=BATCH, T=T, metric_every=T // 2, seed=s, forward=forward,
                           precision=precision) for s in range(CONFIGS)]


# -- today's deep chain ---------------------------------------------------------------------------------

def deep_chain_run(T: int):
    data = DC.classification_data(N_DATA, WIDTH, 0)
    runs = [DC.DeepRun(N, "forward", P.Round(FORMAT), "sgd", s) for s in range(CONFIGS)]
    lr = dict(sgd=LR, heavyball=LR, beta=0.9, adam=1e-3)
    return lambda: DC.train_group(runs, data, WIDTH, 1.0, T, BATCH, T // 2, lr, error_draws=0)


# -- plain numpy ----------------------------------------------------------------------------------------

def numpy_run(T: int):
    """The same network and step in plain numpy: np.matmul over (C, B, D), tanh, round_array, SGD."""
    data = Dataset.classification(N_DATA, WIDTH, seed=0)
    X, Y = data.features, data.labels
    g = np.random.default_rng(0)
    Ws0 = g.standard_normal((CONFIGS, N, WIDTH, WIDTH)) / np.sqrt(WIDTH)
    r0 = g.standard_normal((CONFIGS, WIDTH)) / np.sqrt(WIDTH)
    keys = [rng.derive_key("fbsgd.train.batch", s) for s in range(CONFIGS)]

    def run():
        Ws, r = Ws0.copy(), r0.copy()
        for t in range(T):
            idx = np.array([minibatch_indices(k, t, N_DATA, BATCH) for k in keys])
            ys = [X[idx]]
            for i in range(N):
                ys.append(lowprec.round_array(np.tanh(ys[-1] @ Ws[:, i].transpose(0, 2, 1)), FORMAT))
            s = np.einsum("cbd,cd->cb", ys[-1], r)
            lab = Y[idx]
            v = (-lab / (1.0 + np.exp(lab * s))) / BATCH  # ∂ mean loss / ∂ score
            g_r = np.einsum("cb,cbd->cd", v, ys[-1])
            m = v[:, :, None] * r[:, None, :]
            gW = np.empty_like(Ws)
            for i in range(N, 0, -1):
                dh = m * (1.0 - ys[i] ** 2)
                gW[:, i - 1] = dh.transpose(0, 2, 1) @ ys[i - 1]
                if i > 1:
                    m = dh @ Ws[:, i - 1]
            Ws -= LR * gW
            r -= LR * g_r
        return Ws

    return run


# -- jax (optional) -----------------------------------------------------------------------------------------

def jax_run(T: int, precision: str):
    """jit + vmap over configurations + lax.scan over steps; None when JAX is not installed."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if precision == "float64":
        jax.config.update("jax_enable_x64", True)
    dt = jnp.float32 if precision == "float32" else jnp.float64
    data = Dataset.classification(N_DATA, WIDTH, seed=0)
    X, Y = jnp.asarray(data.features, dt), jnp.asarray(data.labels, dt)
    keys = [rng.derive_key("fbsgd.train.batch", s) for s in range(CONFIGS)]
    idx = jnp.asarray(np.array([[minibatch_indices(k, t, N_DATA, BATCH) for k in keys] for t in range(T)]))
    g = np.random.default_rng(0)
    Ws0 = jnp.asarray(g.standard_normal((CONFIGS, N, WIDTH, WIDTH)) / np.sqrt(WIDTH), dt)
    r0 = jnp.asarray(g.standard_normal((CONFIGS, WIDTH)) / np.sqrt(WIDTH), dt)

    def loss(params, rows):
        Ws, r = params
        y = X[rows]
        for i in range(N):
            y = jnp.tanh(y @ Ws[i].T)
            y = y + jax.lax.stop_gradient(y.astype(jnp.float8_e5m2).astype(dt) - y)  # rounded forward, straight back
        s = y @ r
        return jnp.mean(jnp.logaddexp(0.0, -Y[rows] * s))

    def step(params, rows):
        grads = jax.grad(loss)(params, rows)
        return jax.tree_util.tree_map(lambda p, q: p - LR * q, params, grads), None

    def train_one(params, rows_t):
        return jax.lax.scan(step, params, rows_t)[0]

    run = jax.jit(jax.vmap(train_one, in_axes=(0, 1)))
    jax.block_until_ready(run((Ws0, r0), idx))  # compile
    return lambda: jax.block_until_ready(run((Ws0, r0), idx))


# -- the machine ----------------------------------------------------------------------------------------------

@njit(cache=True)
def _numba_dot(a, b, out, reps):
    for _ in range(reps):
        np.dot(a, b, out)


def peak_gflops(dtype, repeats: int = 4) -> tuple[float, float]:
    """GFlop/s of a 2000×2000 product (CPU time, the fastest of ``repeats``): numpy's BLAS, and the BLAS numba calls."""
    n = 2000
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    t_np = cpu_best(lambda: np.matmul(a, a, out=out), repeats)
    _numba_dot(a, a, out, 1)
    t_nb = cpu_best(lambda: _numba_dot(a, a, out, 1), repeats)
    return 2 * n**3 / t_np / 1e9, 2 * n**3 / t_nb / 1e9


@njit(cache=True)
def _small(a, b, out, reps, layout):
    for _ in range(reps):
        if layout == 0:
            np.dot(a, b, out)
        elif layout == 1:
            np.dot(a, b.T, out)
        else:
            np.dot(a.T, b, out)


def small_products(dtype) -> dict:
    """µs per 32×32×32 product for the three operand layouts the passes need."""
    g = np.random.default_rng(1)
    a, b = (g.standard_normal((32, 32)).astype(dtype) for _ in range(2))
    out = np.empty((32, 32), dtype)
    res = {}
    for layout, name in ((0, "a b"), (1, "a bT"), (2, "aT b")):
        _small(a, b, out, 2, layout)
        res[name] = cpu_best(lambda: _small(a, b, out, 20000, layout), 3) / 20000 * 1e6
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", type=int, default=2000, help="steps of the engine's runs")
    ap.add_argument("--deep-T", type=int, default=60, help="steps of deep_chain's, numpy's and jax's runs")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    T, Td = args.T, args.deep_T

    flops = flops_per_config_iteration()
    peaks = {name: peak_gflops(dt) for name, dt in (("f32", np.float32), ("f64", np.float64))}
    for name, (p_np, p_nb) in peaks.items():
        print(f"peak {name}: {p_np:.1f} GFlop/s (numpy's BLAS, 2000x2000), {p_nb:.1f} GFlop/s (numba's BLAS)")
    for name, dt in (("f32", np.float32), ("f64", np.float64)):
        sp = small_products(dt)
        print(f"blas 32x32x32 {name}: " + ", ".join(f"{k} {v:.2f} us" for k, v in sp.items())
              + f"  (untransposed / transposed: {sp['a bT'] / sp['a b']:.2f}x)")

    peers = {}
    for prec in ("float32", "float64"):
        cfgs = engine_configs(T, prec)
        CH.run_chain_chunk(engine_configs(4, prec)[:1])  # compile (or load machine code)
        peers[f"engine {prec[-2:]}"] = (lambda c=cfgs: CH.run_chain_chunk(c), T)
    peers["deep_chain"] = (deep_chain_run(Td), Td)
    peers["numpy"] = (numpy_run(Td), Td)
    jax_missing = False
    for prec in ("float32", "float64"):
        fn = jax_run(Td, prec)
        if fn is None:
            jax_missing = True
            break
        peers[f"jax {prec[-2:]}"] = (fn, Td)
    for fn, _ in peers.values():  # warm up: numba's batched matmul, jax's retrace after enabling float64
        fn()
    best = {k: float("inf") for k in peers}
    for _ in range(args.repeats):  # interleaved, so that a busy moment hits every peer alike
        for name, (fn, steps) in peers.items():
            best[name] = min(best[name], cpu_best(fn, 1) / (CONFIGS * steps) * 1e6)

    print(f"workload: N = {N} tanh layers of width {WIDTH}, batch {BATCH}, {FORMAT} rounding at every layer's "
          f"forward output, SGD, {CONFIGS} configurations; {flops / 1e6:.2f} MFlop per configuration-iteration")
    if jax_missing:
        print("jax: not installed")
    for name, us in best.items():
        pk = max(peaks["f64" if name.endswith("64") or name in ("deep_chain", "numpy") else "f32"])
        floor = flops / (pk * 1e9) * 1e6
        print(f"{name:>12}: {us:8.1f} us per configuration-iteration (CPU), {best['deep_chain'] / us:6.1f}x deep_chain, "
              f"{us / floor:5.1f}x the arithmetic floor ({floor:.1f} us at {pk:.0f} GFlop/s)")
    for prec in ("32", "64"):
        if f"jax {prec}" in best:
            print(f"engine f{prec} / jax f{prec}: {best[f'jax {prec}'] / best[f'engine {prec}']:.2f}x faster")
    floor32 = flops / (max(peaks["f32"]) * 1e9) * 1e6
    print(f"engine_f32_us={best['engine 32']:.2f} engine_f64_us={best['engine 64']:.2f} "
          f"deep_chain_us={best['deep_chain']:.1f} numpy_us={best['numpy']:.1f} "
          f"speedup_f32_vs_deep_chain={best['deep_chain'] / best['engine 32']:.1f} floor_f32_us={floor32:.1f}")


if __name__ == "__main__":
    main()
