"""A deep chain trained by SGD, heavy-ball or Adam with a mechanism at every layer, batched
across configurations (Section 4 in training, {cite}`kong2026perturbed`).

The chain is the tanh network of :func:`fbsgd.studies.error_propagation.injection.tanh_chain` (N layers
y_i = tanh(W_i y_{i−1}) of width D, a readout r) with the logistic loss ℓ = ln(1 + e^{−y rᵀy_N})
on a generated binary classification set (:func:`classification_data`).  A mechanism P acts

* forward:  ỹ_i = P(tanh(W_i ỹ_{i−1}))            for i = 1..N   (eq. 5a at every layer)
* backward: ṽ_{i−1} = P(W_iᵀ[(1 − ỹ_i²) ⊙ ṽ_i])    and ṽ_N = P(∂ℓ/∂y_N)   (eq. 5b)

The passes of C configurations of one depth run together: every array carries a leading
configuration axis; the products are one compiled loop over all configurations (:func:`_bmm`) (:func:`batched_passes`); the
optimizers of :mod:`fbsgd.optimizers` act elementwise on the (C, P) weight matrix.  One
Python loop over iterations serves every configuration of a (depth, optimizer) group.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit
from scipy.special import expit

from fbsgd import optimizers as O
from fbsgd import perturbations as pert
from fbsgd import rng
from fbsgd.studies.real_mechanisms.mechanisms import mechanism_label
from fbsgd.metrics import fit_line
from fbsgd.studies.error_propagation.injection import tanh_chain
from fbsgd.studies.section7.verdicts import geometric_mean
from fbsgd.book.verdicts import Verdict, outcome_of_cases
from fbsgd.studies.section7.verdicts import in_band
from fbsgd.studies.section7.verdicts import AGREEMENT_BAND
from fbsgd.theory import error_bounds as bounds

__all__ = ["DeepRun", "classification_data", "initial_weights", "split_weights", "batched_passes", "train_group",
           "run_deep", "stable_table", "depth_growth", "compounding_verdict", "forward_sensitive_verdict",
           "optimizer_verdict", "optimizer_floor_table", "optimizer_floor_verdict", "lemma_factors"]

OPTIMIZERS = ("sgd", "heavyball", "adam")
OPTIMIZER_NAMES = {"sgd": "SGD", "heavyball": "heavy-ball", "adam": "Adam"}  # as words in verdict texts
COLUMN_WORDS = {"relative_gradient_error": "the relative gradient error E‖ũ − u‖²/‖u‖²",
                "over_clean": "the stable gradient norm over the clean run's"}


@dataclass(frozen=True)
class DeepRun:
    """One configuration: depth N, place ("none", "forward", "backward"), mechanism, optimizer, seed."""

    N: int
    place: str
    mechanism: object
    optimizer: str
    seed: int

    @property
    def label(self) -> str:
        return "clean" if self.place == "none" else f"{mechanism_label(self.mechanism)} {self.place}"


def classification_data(n: int, dim: int, seed: int = 0, label_noise: float = 0.5):
    """x ~ N(0, I/dim)·√dim rows (unit-variance entries), y = sign(xᵀθ/√dim + label_noise·ξ) with θ, ξ standard normal."""
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, dim))
    theta = g.standard_normal(dim)
    y = np.sign(x @ theta / np.sqrt(dim) + label_noise * g.standard_normal(n))
    y[y == 0] = 1.0
    return x, y


def initial_weights(N: int, width: int, gain: float, seed: int) -> np.ndarray:
    """The flat weight (W_1, …, W_N, r) of :func:`fbsgd.studies.error_propagation.injection.tanh_chain` (row-major W_i, out × in)."""
    return tanh_chain(N, width, gain, seed)[1]


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
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


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
        out.append(dict(N=r.N, place=r.place, mechanism=mechanism_label(r.mechanism) if r.mechanism is not None else "none",
                        label=r.label, optimizer=r.optimizer, seed=r.seed, diverged=div,
                        stable_grad_norm=float(half[:, j].mean()) if not div else np.nan,
                        final_loss=float(losses[-1, j]) if not div else np.nan,
                        relative_gradient_error=float(rel[j]) if r.place != "none" else 0.0))
    return out


def run_deep(depths, mechanisms, optimizers, seeds, *, width: int, gain: float, n_data: int, data_seed: int, T: int,
             batch: int, metric_every: int, lr: dict, places=("forward", "backward")) -> pd.DataFrame:
    """Every (depth, optimizer) group: clean runs and each mechanism at each place, every seed; one row per run."""
    data = classification_data(n_data, width, data_seed)
    rows = []
    for N in depths:
        for opt in optimizers:
            runs = [DeepRun(N, "none", None, opt, s) for s in seeds]
            runs += [DeepRun(N, pl, p, opt, s) for p in mechanisms for pl in places for s in seeds]
            rows += train_group(runs, data, width, gain, T, batch, metric_every, lr)
    return pd.DataFrame(rows)


# -- analysis ---------------------------------------------------------------------------------------


def stable_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (optimizer, N, label): geometric means over seeds of the stable norm, of its ratio to the clean
    run of the same seed, and of the relative gradient error at the final weights."""

    clean = runs[runs.place == "none"].set_index(["optimizer", "N", "seed"]).stable_grad_norm
    r = runs.assign(over_clean=runs.stable_grad_norm.to_numpy()
                    / clean.reindex(pd.MultiIndex.from_frame(runs[["optimizer", "N", "seed"]])).to_numpy())
    return (r.groupby(["optimizer", "N", "place", "mechanism", "label"], sort=False)
            .agg(stable_grad_norm=("stable_grad_norm", geometric_mean), over_clean=("over_clean", geometric_mean),
                 relative_gradient_error=("relative_gradient_error", geometric_mean),
                 final_loss=("final_loss", "mean"), diverged=("diverged", "sum"))
            .reset_index())


def depth_growth(stable: pd.DataFrame) -> pd.DataFrame:
    """Per (optimizer, mechanism, place): the growth per layer of the relative gradient error,
    exp(slope of log error against N) with its standard error in the slope, and the factor
    error(N_max)/error(N_min) next to N_max/N_min (what N independent sources that do not
    compound would give)."""
    rows = []
    for (opt, mech, place), g in stable[stable.place != "none"].groupby(["optimizer", "mechanism", "place"], sort=False):
        g = g.sort_values("N")
        fit = fit_line(g.N, np.log(g.relative_gradient_error))
        rows.append(dict(optimizer=opt, mechanism=mech, place=place, per_layer_factor=float(np.exp(fit.slope)),
                         slope_se=fit.slope_se, N_min=int(g.N.min()), N_max=int(g.N.max()),
                         error_ratio=float(g.relative_gradient_error.iloc[-1] / g.relative_gradient_error.iloc[0]),
                         additive_ratio=float(g.N.max() / g.N.min())))
    return pd.DataFrame(rows)


def compounding_verdict(claim, growth: pd.DataFrame, name: str, optimizer: str = "sgd"):
    """Errors compound with depth: error(N_max)/error(N_min) exceeds N_max/N_min for every (mechanism, place)."""

    g = growth[growth.optimizer == optimizer]
    flags = g.error_ratio > g.additive_ratio
    return Verdict(claim(name), outcome_of_cases(flags),
                   rule="E‖ũ − u‖²/‖u‖² at the final weights grows from N_min to N_max by more than N_max/N_min "
                        "(the growth of N sources that add without compounding), for every mechanism and place "
                        "(holds: all; partial: some; fails: none)",
                   evidence="; ".join(f"{r.mechanism} {r.place}: endpoints ×{r.error_ratio:.3g} from N = {r.N_min} to "
                                      f"{r.N_max} (additive ×{r.additive_ratio:g}; "
                                      f"{r.error_ratio ** (1 / (r.N_max - r.N_min)):.3f} per layer between the endpoints), "
                                      f"log-linear fit over all depths {r.per_layer_factor:.3f} per layer"
                                      for r in g.itertuples()) + f" ({OPTIMIZER_NAMES.get(optimizer, optimizer)}). "
                            "The two per-layer factors differ when the error is not geometric in N: the fit weighs "
                            "every depth, the endpoint ratio only the shallowest and deepest chain.",
                   key_number=float(g.error_ratio.min()) if len(g) else None,
                   key_label="smallest endpoint growth error(N_max)/error(N_min)")


def _pass_ratio(stable: pd.DataFrame, optimizer: str, column: str):
    s = stable[(stable.optimizer == optimizer) & (stable.place != "none")]
    f = s[s.place == "forward"].set_index(["mechanism", "N"])[column]
    b = s[s.place == "backward"].set_index(["mechanism", "N"])[column]
    return (f / b).dropna()


def forward_sensitive_verdict(claim, stable: pd.DataFrame, name: str, optimizer: str = "sgd", column: str = "over_clean"):
    """The forward pass is the sensitive one: ``column`` is larger forward than backward at every (mechanism, N)."""

    ratio = _pass_ratio(stable, optimizer, column)
    return Verdict(claim(name), outcome_of_cases(ratio > 1.0),
                   rule=f"{COLUMN_WORDS.get(column, column)} (geometric mean over seeds), forward / backward > 1 at "
                        f"every mechanism and depth "
                        f"(holds: all; partial: some; fails: none)",
                   evidence=f"{OPTIMIZER_NAMES.get(optimizer, optimizer)}: " + "; ".join(f"{m}, N = {n}: {v:.3g}" for (m, n), v in ratio.items()) + ".",
                   key_number=float(ratio.min()), key_label="smallest forward/backward ratio")


def optimizer_verdict(claim, stable: pd.DataFrame, name: str, optimizers=("heavyball", "adam"), column: str = "over_clean"):
    """The asymmetry survives momentum and Adam: forward/backward ``column`` > 1 at the deepest chain, per optimizer and mechanism."""

    flags, parts = [], []
    for opt in optimizers:
        ratio = _pass_ratio(stable, opt, column)
        if not len(ratio):
            continue
        deepest = ratio[ratio.index.get_level_values(1) == ratio.index.get_level_values(1).max()]
        flags += list(deepest > 1.0)
        parts.append(f"{OPTIMIZER_NAMES.get(opt, opt)}: " + ", ".join(f"{m} at N = {n}: {v:.3g}" for (m, n), v in deepest.items()))
    return Verdict(claim(name), outcome_of_cases(flags),
                   rule=f"{COLUMN_WORDS.get(column, column)}, forward / backward > 1 at the deepest chain for every optimizer and mechanism "
                        f"(holds: all; partial: some; fails: none)",
                   evidence="; ".join(parts) + ".", key_number=None)


def optimizer_floor_table(stable: pd.DataFrame, optimizers=("heavyball", "adam"), base: str = "sgd") -> pd.DataFrame:
    """Per (optimizer, mechanism, place, N): the floor of the run — its stable norm over the clean
    run's of the same optimizer (``over_clean``, :func:`stable_table`) — next to plain SGD's, their
    ratio, and whether that ratio lies in the agreement band (the optimizer leaves the floor where
    SGD has it)."""

    s = stable[stable.place != "none"]
    ref = s[s.optimizer == base].set_index(["mechanism", "place", "N"]).over_clean
    rows = []
    for r in s[s.optimizer.isin(optimizers)].itertuples():
        b = float(ref.get((r.mechanism, r.place, r.N), np.nan))
        ratio = r.over_clean / b
        rows.append(dict(optimizer=r.optimizer, mechanism=r.mechanism, place=r.place, N=r.N, over_clean=r.over_clean,
                         base_over_clean=b, ratio_to_base=ratio, same_floor=bool(in_band(ratio))))
    return pd.DataFrame(rows)


def optimizer_floor_verdict(claim, floors: pd.DataFrame, name: str, optimizer: str):
    """``optimizer`` leaves the deep chain's floor where plain SGD has it: the ratio of the two floors
    (:func:`optimizer_floor_table`) in the agreement band at every mechanism, place and depth."""

    f = floors[floors.optimizer == optimizer].dropna(subset=["ratio_to_base"])
    lo, hi = AGREEMENT_BAND
    far = f.iloc[int(np.argmax(np.abs(np.log(f.ratio_to_base.to_numpy()))))] if len(f) else None
    return Verdict(claim(name), outcome_of_cases(f.same_floor),
                   rule=f"floor = stable gradient norm over the clean run's (geometric mean over seeds); the floor under "
                        f"{OPTIMIZER_NAMES.get(optimizer, optimizer)} / the floor under plain SGD within {lo:g}–{hi:g} at every mechanism, place and depth "
                        f"(holds: all; partial: some; fails: none)",
                   evidence=f"{int(f.same_floor.sum())} of {len(f)} cases within {lo:g}–{hi:g}; "
                            + "; ".join(f"{r.mechanism} {r.place}, N = {r.N}: {r.over_clean:.3g} vs SGD {r.base_over_clean:.3g} "
                                        f"(×{r.ratio_to_base:.3g})" for r in f.itertuples()) + ".",
                   key_number=float(far.ratio_to_base) if far is not None else None,
                   key_label=f"{OPTIMIZER_NAMES.get(optimizer, optimizer)}/SGD floor ratio farthest from 1")


def lemma_factors(depths, width: int, gain: float, seed: int = 0) -> pd.DataFrame:
    """Section 4's constants for the initial chains: C_∇f = max_i ‖W_i‖_op (tanh' ≤ 1, so a layer's
    Jacobian is bounded by its matrix; :func:`fbsgd.theory.error_bounds.linear_constants`), Lemma 1's
    C_v = max{1, C_∇f^N} (:func:`fbsgd.theory.error_bounds.c_v`) with its growth per layer, and (21)'s factor
    3C²_∇f per operator in the forward coefficient."""

    rows = []
    for N in depths:
        w = initial_weights(N, width, gain, seed)
        Ws = w[: N * width * width].reshape(N, width, width)
        C = max(bounds.linear_constants(W, 0.0).C_grad for W in Ws)
        rows.append(dict(N=N, C_grad=C, C_v=bounds.c_v(C, N), C_v_per_layer=bounds.c_v(C, N) ** (1.0 / N),
                         eq21_factor=3 * C**2))
    return pd.DataFrame(rows)
