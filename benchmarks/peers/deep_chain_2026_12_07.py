"""A frozen copy of the deep chain's batched passes and training loop as they were on 2026-12-07
(``fbsgd.studies.real_mechanisms.deep_chain`` before it moved onto the chain engine), kept here
only as a peer for ``benchmarks/chain_speed.py`` ("today's deep_chain" of issue 22).

It is not part of the package and not used by the book: numpy batched over configurations, a
compiled batched matmul, the mechanism through ``Perturbation.apply``.  Only what the benchmark
times is kept (the summaries' labels are dropped).
"""
from __future__ import annotations

import numpy as np
from numba import njit
from scipy.special import expit

from fbsgd import optimizers as O
from fbsgd import perturbations as pert
from fbsgd import rng
from fbsgd.studies.error_propagation.injection import tanh_chain
from fbsgd.studies.real_mechanisms.deep_chain import classification_data  # the same data

__all__ = ["classification_data", "initial_weights", "DeepRun", "train_group"]


def initial_weights(N: int, width: int, gain: float, seed: int) -> np.ndarray:
    return tanh_chain(N, width, gain, seed)[1]


class DeepRun:
    """One configuration: depth N, place ("none", "forward", "backward"), mechanism, optimizer, seed."""

    def __init__(self, N, place, mechanism, optimizer, seed):
        self.N, self.place, self.mechanism, self.optimizer, self.seed = N, place, mechanism, optimizer, seed


def split_weights(W: np.ndarray, N: int, width: int):
    """Views (C, N, D, D) of the layer matrices and (C, D) of the readout of a (C, P) weight matrix."""
    C = W.shape[0]
    return W[:, : N * width * width].reshape(C, N, width, width), W[:, N * width * width:]


def _perturb(arr, groups, where, layer, step):
    """Apply each group's mechanism to its rows of ``arr`` (in place); groups: (rows, place, p, key)."""
    for rows, place, p, key in groups:
        if place == where:
            arr[rows] = p.apply(arr[rows], rng.fold_key(key, where, layer), step)
    return arr


@njit(cache=True)
def _bmm_kernel(a, b, out):
    # loop order c, i, k, j: the inner loop runs along contiguous rows of b and out (it vectorizes),
    # and each out[c, i, j] still sums its k terms in ascending order, as the textbook i, j, k loop does
    for c in range(a.shape[0]):
        for i in range(a.shape[1]):
            for j in range(b.shape[2]):
                out[c, i, j] = 0.0
            for k in range(a.shape[2]):
                aik = a[c, i, k]
                for j in range(b.shape[2]):
                    out[c, i, j] += aik * b[c, k, j]


def _bmm(a, b):
    """a[c] @ b[c] for every configuration c, shape (C, m, n): one single-threaded compiled loop
    (numpy's stacked matmul is slow for these small matrices, and threaded BLAS thrashes on a shared machine)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]))
    _bmm_kernel(a, b, out)
    return out


def batched_passes(W, x, y, N: int, width: int, groups=(), step: int = 0):
    """Loss (C,) and weight gradient (C, P) of the batch mean, through the perturbed passes.

    ``x`` (C, B, D), ``y`` (C, B); ``groups`` as in :func:`_perturb` (empty: the clean passes, eq. 4)."""
    Ws, r = split_weights(W, N, width)
    ys = [x]
    for i in range(N):
        h = _bmm(ys[-1], Ws[:, i].transpose(0, 2, 1))
        ys.append(_perturb(np.tanh(h), groups, "forward", i + 1, step))
    out = (ys[-1] @ r[:, :, None])[:, :, 0]
    loss = np.logaddexp(0.0, -y * out).mean(axis=1)
    dout = -y * expit(-y * out)  # ∂ℓ/∂out per sample
    B = x.shape[1]
    g_r = (dout[:, None, :] @ ys[-1])[:, 0] / B
    v = _perturb(dout[:, :, None] * r[:, None, :], groups, "backward", N, step)
    gW = np.empty_like(Ws)
    for i in range(N, 0, -1):
        dh = v * (1.0 - ys[i] ** 2)
        gW[:, i - 1] = _bmm(dh.transpose(0, 2, 1), ys[i - 1]) / B
        if i > 1:
            v = _perturb(_bmm(dh, Ws[:, i - 1]), groups, "backward", i - 1, step)
    return loss, np.concatenate([gW.reshape(W.shape[0], -1), g_r], axis=1)


def _optimizer(name: str, lr: dict):
    if name == "sgd":
        return O.SGD(lr["sgd"])
    if name == "heavyball":
        return O.HeavyBall(lr["heavyball"], lr["beta"])
    if name == "adam":
        return O.Adam(lr["adam"])
    raise ValueError(f"optimizer must be sgd, heavyball or adam, got {name!r}")


def train_group(runs, data, width: int, gain: float, T: int, batch: int, metric_every: int, lr: dict,
                error_draws: int = 4) -> list[dict]:
    """Train every run of one (depth, optimizer) group in lockstep; one summary dict per run.

    Summaries: stable_grad_norm (mean over the last half of the run of the clean full-batch ‖∇ℓ‖,
    sampled every ``metric_every`` steps), final_loss, diverged, and at the final weights the
    relative gradient error E‖ũ − u‖²/‖u‖² of the run's own mechanism and place (``error_draws`` draws)."""
    N, opt = runs[0].N, _optimizer(runs[0].optimizer, lr)
    X, Y = data
    C = len(runs)
    W = np.array([initial_weights(N, width, gain, r.seed) for r in runs])
    groups = []
    for key_i, (place, p) in enumerate(dict.fromkeys((r.place, r.mechanism) for r in runs if r.place != "none")):
        rows = np.array([j for j, r in enumerate(runs) if (r.place, r.mechanism) == (place, p)])
        groups.append((rows, place, p, rng.derive_key("fbsgd.deep_chain", N, runs[0].optimizer, place, pert.canonical(p))))
    sample_keys = [rng.derive_key("fbsgd.deep_chain.batches", N, r.seed) for r in runs]
    state = opt.init(W)
    norms, losses = [], []
    Xf, Yf = np.broadcast_to(X, (C,) + X.shape), np.broadcast_to(Y, (C,) + Y.shape)
    for t in range(T):
        idx = np.array([O.minibatch_indices(k, t, X.shape[0], batch) for k in sample_keys])
        _, G = batched_passes(W, X[idx], Y[idx], N, width, groups, step=t)
        step, state = opt.update(G, state, W)
        W = W - step
        if t % metric_every == 0 or t == T - 1:
            with np.errstate(all="ignore"):
                loss, g = batched_passes(W, Xf, Yf, N, width)
            norms.append(np.linalg.norm(g, axis=1)), losses.append(loss)
    norms, losses = np.array(norms), np.array(losses)
    half = norms[len(norms) // 2:]
    with np.errstate(all="ignore"):
        _, g0 = batched_passes(W, Xf, Yf, N, width)
        err = np.zeros(C)
        for s in range(error_draws):
            _, gp = batched_passes(W, Xf, Yf, N, width, groups, step=T + s)
            err += np.sum((gp - g0) ** 2, axis=1) / error_draws
    rel = err / np.sum(g0**2, axis=1)
    out = []
    for j, r in enumerate(runs):
        div = not np.all(np.isfinite(half[:, j]))
        out.append(dict(N=r.N, place=r.place, optimizer=r.optimizer, seed=r.seed, diverged=div,
                        stable_grad_norm=float(half[:, j].mean()) if not div else np.nan,
                        final_loss=float(losses[-1, j]) if not div else np.nan,
                        relative_gradient_error=float(rel[j]) if r.place != "none" else 0.0))
    return out


