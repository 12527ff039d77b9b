"""A deep chain trained by SGD, heavy-ball or Adam with a mechanism at every layer, run through the
engine (Section 4 in training, {cite}`kong2026perturbed`).

The chain is the tanh network of :func:`fbsgd.studies.error_propagation.injection.tanh_chain` (N layers
y_i = tanh(W_i y_{i−1}) of width D, a readout r) with the logistic loss ℓ = ln(1 + e^{−y rᵀy_N})
on a generated binary classification set (:func:`classification_data`), as a chain of library
operators (:func:`chain_net`), numbered from 1:

* operator 2i − 1: ``Linear(D, D, gain)``, W_i = gain·G/√D (i = 1..N); operator 2i: ``Tanh(D)``;
* operator 2N + 1: the readout ``Linear(D, 1, init="unit_norm")`` (a Gaussian row of unit norm);
* operator 2N + 2: ``LogisticLoss()``, which reads the ±1 labels.

``net.init_weight(numpy.random.default_rng(seed))`` gives the bits of ``tanh_chain(N, D, gain, seed)``'s
weights.  A mechanism P acts at the sites of :class:`fbsgd.perturbations.Plan` (forward[i] after
operator i, backward[i] on the message into operator i − 1), :func:`sites`:

* forward:  ỹ_i = P(tanh(W_i ỹ_{i−1})) for i = 1..N (eq. 5a at every layer): ``forward[2i]``, after
  every Tanh;
* backward: ṽ_i = P(∂ℓ/∂y_i) for i = 1..N (eq. 5b on the message into every Tanh, the gradient with
  respect to a layer's output: P(W_{i+1}ᵀ[(1 − ỹ_{i+1}²) ⊙ ṽ_{i+1}]) and ṽ_N = P(r ∂ℓ/∂out)):
  ``backward[2i + 1]``, the message operator 2i + 1 sends into operator 2i.  The messages through
  tanh′ into the Linears and the loss's message into the readout are left exact.

Each run is a :class:`fbsgd.engine.chains.ChainConfig` (:func:`deep_configs`); :func:`run_deep`
runs them all with one :func:`fbsgd.engine.sweeps.run_sweep` call (compiled kernel, cache, workers,
progress bar).  A run and its clean twin share the seed: the same minibatches and initial weights
(common random numbers).

Each run's stable norm counts only if the run has settled (the drift test,
:func:`fbsgd.studies.section7.verdicts.is_settled` on :func:`fbsgd.metrics.drift_ratio` of its EWMA).
Depths are compared at **comparable points**: every mechanism and place of a depth at the same weights,
those of the clean run where its full-data loss first reaches the optimizer's common level
(:func:`loss_level`, :func:`comparable_points`, :func:`prefix_weights`), not at each run's own final
weights.  A verdict's case is decided only when the seeds agree (:func:`seed_flag`) or, for the
floors, when the runs settled and the seed spread is smaller than the effect (:func:`interval_flag`);
otherwise it is undecided and the verdict follows :func:`fbsgd.book.verdicts.outcome_of_flags`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fbsgd import operators as OP
from fbsgd.engine.chains import ChainConfig, reference_chain_run, run_chain_chunk
from fbsgd.engine.sweeps import not_compiled, run_sweep
from fbsgd.passes import Composite, WithLabels
from fbsgd.perturbations import Plan
from fbsgd.problems import Dataset
from fbsgd.studies.real_mechanisms.mechanisms import mechanism_label
from fbsgd.metrics import fit_line
from fbsgd.metrics import drift_ratio
from fbsgd.studies.section7.verdicts import geometric_mean
from fbsgd.book.verdicts import Verdict, outcome_of_flags
from fbsgd.studies.section7.verdicts import is_settled
from fbsgd.studies.section7.verdicts import AGREEMENT_BAND
from fbsgd.theory import error_bounds as bounds

__all__ = ["DeepRun", "DeepResult", "classification_data", "chain_net", "sites", "deep_configs", "final_weights",
           "mean_gradient", "relative_gradient_error", "loss_level", "comparable_points", "prefix_weights", "run_deep",
           "stable_table", "comparable_table", "depth_growth", "compounding_verdict", "forward_sensitive_verdict",
           "optimizer_verdict", "seed_flag", "interval_flag", "optimizer_floor_table", "optimizer_floor_verdict",
           "lemma_factors", "settled_text"]

OPTIMIZERS = ("sgd", "heavyball", "adam")
PLACES = ("forward", "backward")
ERROR_DRAWS = 4  # draws of the mechanism in the relative gradient error at the final weights
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


def chain_net(N: int, width: int, gain: float) -> Composite:
    """The deep chain as library operators: (Linear(width, width, gain), Tanh(width)) × N, the readout
    Linear(width, 1, init="unit_norm") and LogisticLoss() (the module docstring numbers them)."""
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"chain_net: N (the number of tanh layers) must be an integer >= 1, got {N!r}")
    ops = []
    for _ in range(N):
        ops += [OP.Linear(width, width, gain=gain), OP.Tanh(width)]
    return Composite(ops + [OP.Linear(width, 1, init="unit_norm"), OP.LogisticLoss()])


def sites(N: int, place: str, mechanism) -> dict:
    """The ChainConfig fields ``forward`` and ``backward`` of ``mechanism`` at ``place`` of a depth-N
    chain: forward[2i] (after Tanh i) or backward[2i + 1] (the message into Tanh i), i = 1..N; none for
    place "none"."""
    if place == "none":
        return dict(forward={}, backward={})
    if place == "forward":
        return dict(forward={2 * i: mechanism for i in range(1, N + 1)}, backward={})
    if place == "backward":
        return dict(forward={}, backward={2 * i + 1: mechanism for i in range(1, N + 1)})
    raise ValueError(f"place must be one of ('none', 'forward', 'backward'), got {place!r}")


def _optimizer_fields(name: str, lr: dict) -> dict:
    if name == "sgd":
        return dict(optimizer="sgd", lr=lr["sgd"])
    if name == "heavyball":
        return dict(optimizer="heavyball", lr=lr["heavyball"], beta=lr["beta"])
    if name == "adam":  # β₁, β₂, eps: Adam's defaults (fbsgd.optimizers.Adam)
        return dict(optimizer="adam", lr=lr["adam"])
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def deep_configs(depths, mechanisms, optimizers, seeds, *, width: int, gain: float, n_data: int, data_seed: int,
                 T: int, batch: int, metric_every: int, lr: dict, places=PLACES, regularizer: str = "none",
                 rho: float = 0.0) -> list[tuple[DeepRun, ChainConfig]]:
    """Every run as (DeepRun, ChainConfig): per depth and optimizer the clean runs, then each mechanism
    at each place, every seed (seed and init_seed both the run's seed; float64 passes; the penalty
    ρR(w) of ``regularizer`` added to the loss, none by default)."""
    for pl in places:
        if pl not in PLACES:
            raise ValueError(f"places must be among {PLACES}, got {pl!r}")
    data = Dataset(*classification_data(n_data, width, data_seed),
                   name=f"deep-chain data (n={n_data}, dim={width}, seed={data_seed})")
    out = []
    for N in depths:
        net = chain_net(N, width, gain)
        for opt in optimizers:
            fields = _optimizer_fields(opt, lr)
            runs = [DeepRun(N, "none", None, opt, s) for s in seeds]
            runs += [DeepRun(N, pl, p, opt, s) for p in mechanisms for pl in places for s in seeds]
            out += [(r, ChainConfig(net, data, batch=batch, T=T, seed=r.seed, init_seed=r.seed, precision="float64",
                                    metric_every=metric_every, regularizer=regularizer, rho=rho, **fields,
                                    **sites(N, r.place, r.mechanism)))
                    for r in runs]
    return out


def final_weights(configs: list[ChainConfig]) -> list[np.ndarray]:
    """w_T of each configuration, recomputed — the fallback of :func:`run_deep` for a sweep result that
    does not keep w_T (``SweepResult.weights``): the runs of one shape go once more through
    :func:`fbsgd.engine.chains.run_chain_chunk` (batch-invariant: the bits the sweep computed; a
    configuration the kernel cannot run through :func:`fbsgd.engine.chains.reference_chain_run`)."""
    out: list = [None] * len(configs)
    groups: dict = {}
    for j, c in enumerate(configs):
        groups.setdefault(("reference", j) if not_compiled(c) is not None else c.shape(), []).append(j)
    for key, idx in groups.items():
        raws = [reference_chain_run(configs[idx[0]])] if key[0] == "reference" else run_chain_chunk([configs[j] for j in idx])
        for j, raw in zip(idx, raws):
            out[j] = raw["w"]
    return out


def mean_gradient(net: Composite, x: np.ndarray, w: np.ndarray, plan: Plan | None = None, state: dict | None = None,
                  labels=None) -> np.ndarray:
    """The batch-mean weight gradient of one perturbed pass — what
    ``perturbed_passes(net, x, w, plan, state, labels=labels)[0].gradient()`` returns — without the
    per-sample weight gradients: the same operators and the same :meth:`fbsgd.perturbations.Plan.perturb`
    calls in the same order (so the same draws), a Linear's mean gradient as vᵀy/B (one matrix product
    instead of B outer products; equal up to the rounding of the sums).  For the error at many weights
    on thousands of samples (tests/studies/real_mechanisms checks it against ``perturbed_passes``)."""
    plan = plan if plan is not None else Plan()
    state = state if state is not None else {}
    ws, N, B = net.split(w), len(net), x.shape[0]
    ops = [None, *net.ops]
    if labels is not None:
        ops[N] = WithLabels(ops[N], labels)
    ys = [x]
    for i in range(1, N + 1):
        y, state = plan.perturb("forward", i, ops[i].forward(ys[i - 1], ws[i]), state)
        ys.append(y)
    v, grads = np.ones((B, 1)), [None] * (N + 1)
    for i in range(N, 0, -1):
        op = net.op(i)
        if op.weight_size == 0:
            grads[i] = np.zeros(0)
        elif type(op) is OP.Linear:  # its weight gradient per sample is the outer product v_i y_{i-1}ᵀ
            grads[i] = (v.T @ ys[i - 1]).ravel() / B
        else:
            grads[i] = ops[i].vjp_weight(ys[i - 1], ws[i], v).mean(axis=0)
        if i >= 2:
            v, state = plan.perturb("backward", i, ops[i].vjp_input(ys[i - 1], ws[i], v), state)
    return np.concatenate(grads[1:])


def relative_gradient_error(cfg: ChainConfig, w: np.ndarray, draws: int = ERROR_DRAWS, step: int | None = None,
                            clean: np.ndarray | None = None) -> float:
    """E‖ũ − u‖²/‖u‖² at the weights ``w`` over the full data: u the clean gradient of the passes,
    ũ the perturbed one with the configuration's plan (:func:`mean_gradient`, the batch mean of
    :func:`fbsgd.passes.perturbed_passes`), its streams (``plan.init(seed)``) at the steps ``step``,
    ``step`` + 1, …, ``step`` + draws − 1 (default ``cfg.T``: the draws the run would make next).
    ``clean``: u, when already computed at ``w``.  The penalty ρ∇R is exact and left out of both.
    0 for a configuration without perturbation."""
    plan = cfg.plan()
    if not plan.places():
        return 0.0
    step = cfg.T if step is None else int(step)
    X, y = cfg.data.features, cfg.data.labels
    with np.errstate(all="ignore"):
        g0 = mean_gradient(cfg.net, X, w, labels=y) if clean is None else clean
        state0, err = plan.init(cfg.seed), 0.0
        for s in range(draws):
            state = {place: st._replace(step=step + s) for place, st in state0.items()}
            gp = mean_gradient(cfg.net, X, w, plan, state, labels=y)
            err += float(np.sum((gp - g0) ** 2)) / draws
        return err / float(np.sum(g0**2))


def _full_trace(traces: pd.DataFrame, cfg: ChainConfig) -> pd.DataFrame:
    """A run's trace at every metric point t = 0, k, 2k, … < T (sorted), or a RuntimeError."""
    tr = traces.sort_values("t")
    if not np.array_equal(tr.t.to_numpy(), np.arange(0, cfg.T, cfg.metric_every)):
        raise RuntimeError("run_deep: the sweep's traces must hold every metric point (raise trace_points)")
    return tr


def _stable_norm(trace: pd.DataFrame, cfg: ChainConfig) -> float:
    """Mean of the clean full-data ‖∇ℓ‖ at t = 0, k, 2k, … over the last half of the run (t ≥ T − ⌊T/2⌋)."""
    t, g = trace.t.to_numpy(), trace.grad_norm.to_numpy()
    return float(np.mean(g[t >= cfg.T - cfg.T // 2]))


def loss_level(clean: pd.DataFrame) -> dict:
    """Per optimizer, the common loss level L*: the highest of the lowest losses its clean runs reach
    (over depths and seeds; ``clean``: one row per clean run and metric point, columns optimizer, N,
    seed, t, loss) — the lowest level that every clean run of that optimizer reaches."""
    lows = clean.groupby(["optimizer", "N", "seed"]).loss.min()
    return {opt: float(v.max()) for opt, v in lows.groupby(level=0)}


def comparable_points(clean: pd.DataFrame, levels: dict) -> pd.DataFrame:
    """Per clean run (optimizer, N, seed): the first metric point t (t ≠ 1: a run needs two steps) at
    which its full-data loss reaches the optimizer's common level ``levels[optimizer]``
    (:func:`loss_level`), with the loss there: the point of its trajectory at which every depth is
    compared."""
    rows = []
    for (opt, N, seed), g in clean.groupby(["optimizer", "N", "seed"], sort=False):
        g = g[g.t != 1].sort_values("t")
        hit = g[g.loss <= levels[opt]]
        if not len(hit):
            raise ValueError(f"comparable_points: the clean run ({opt}, N = {N}, seed {seed}) never reaches the "
                             f"level {levels[opt]:.6g} (levels must be reached by every run: loss_level)")
        first = hit.iloc[0]
        rows.append(dict(optimizer=opt, N=int(N), seed=int(seed), t=int(first.t), loss=float(first.loss),
                         level=float(levels[opt])))
    return pd.DataFrame(rows)


def prefix_weights(configs: list[ChainConfig], steps, losses, *, n_jobs=None, cache_dir=True,
                   progress: bool = False) -> list[np.ndarray]:
    """w_t of each clean configuration after ``steps[j]`` of its steps: the configuration with T = t
    (the minibatch rows and streams of step s depend on the seed and s only, so its t steps are the
    longer run's first t; tests/studies/real_mechanisms checks this prefix property against ``train``),
    through :func:`fbsgd.engine.sweeps.run_sweep` (cache, workers); t = 0 gives the initial weights.
    ``losses[j]``: the longer run's full-data loss at t; a run whose F(w_t) differs from it by more
    than 1e-9 relatively is refused (RuntimeError), so the weights are those of the same trajectory."""
    out: list = [None] * len(configs)
    todo = []
    for j, (c, t) in enumerate(zip(configs, steps)):
        if int(t) == 0:
            out[j] = c.initial_weights()
        else:
            todo.append((j, c.replace(T=int(t), metric_every=max(1, int(t) // 2))))
    if todo:
        res = run_sweep([c for _, c in todo], n_jobs=n_jobs, cache_dir=cache_dir, progress=progress, trace_points=4)
        for (j, c), row in zip(todo, res.table.itertuples()):
            if not abs(row.final_loss - losses[j]) <= 1e-9 * abs(losses[j]):
                raise RuntimeError(f"prefix_weights: the run of {c.T} steps ends at loss {row.final_loss!r}, the longer "
                                   f"run's loss at t = {c.T} is {losses[j]!r}: not the same trajectory")
            out[j] = res.weights[c.key()]
    return out


@dataclass
class DeepResult:
    """What :func:`run_deep` measured: ``runs`` (one row per run), ``points`` (the comparable point of
    each clean run: :func:`comparable_points`) and ``errors`` (each mechanism's relative gradient error
    at the clean weights of that point, one row per (optimizer, N, seed, mechanism, place))."""

    runs: pd.DataFrame
    points: pd.DataFrame
    errors: pd.DataFrame


def run_deep(depths, mechanisms, optimizers, seeds, *, width: int, gain: float, n_data: int, data_seed: int, T: int,
             batch: int, metric_every: int, lr: dict, places=PLACES, error_draws: int = ERROR_DRAWS,
             regularizer: str = "none", rho: float = 0.0, n_jobs: int | None = None, cache_dir=True,
             progress: bool = True) -> DeepResult:
    """Every (depth, optimizer): clean runs and each mechanism at each place, every seed, through one
    :func:`fbsgd.engine.sweeps.run_sweep` call; then the comparable points and the errors there.

    ``runs`` columns: N, place, mechanism, label, optimizer, seed, diverged (the sweep's),
    stable_grad_norm (mean of the clean full-data ‖∇F‖ sampled every ``metric_every`` steps, t = 0, k,
    2k, …, over the last half of the run, t ≥ T − ⌊T/2⌋; from the sweep's traces), drift
    (:func:`fbsgd.metrics.drift_ratio` of the run's EWMA of ‖∇F‖ at every metric point: the mean over
    the last quarter of the run over the quarter before), settled (the drift test
    :func:`fbsgd.studies.section7.verdicts.is_settled`; False for a diverged run), final_loss (at w_T,
    the sweep's), and relative_gradient_error (at the run's own w_T: evidence only, each run ends
    elsewhere).

    ``points``: per clean run the first metric point whose loss reaches the optimizer's common level
    (:func:`loss_level`, :func:`comparable_points`); ``errors``: at the clean run's weights there
    (:func:`prefix_weights`), every mechanism and place of that depth, optimizer and seed
    (:func:`relative_gradient_error`, the streams at the point's step)."""
    pairs = deep_configs(depths, mechanisms, optimizers, seeds, width=width, gain=gain, n_data=n_data,
                         data_seed=data_seed, T=T, batch=batch, metric_every=metric_every, lr=lr, places=places,
                         regularizer=regularizer, rho=rho)
    configs = [c for _, c in pairs]
    points = -(-T // metric_every)
    result = run_sweep(configs, n_jobs=n_jobs, cache_dir=cache_dir, progress=progress,
                       trace_points=max(600, 2 * points))
    traces = dict(tuple(result.traces.groupby("config_id", sort=False)))
    kept = getattr(result, "weights", None) or {}  # w_T by config_id, where the sweep keeps it
    perturbed = [j for j, (r, _) in enumerate(pairs) if r.place != "none"]
    ws = {j: kept[configs[j].key()] for j in perturbed if configs[j].key() in kept}
    missing = [j for j in perturbed if j not in ws]
    ws.update(zip(missing, final_weights([configs[j] for j in missing])))
    rows, clean = [], []
    for j, ((r, c), row) in enumerate(zip(pairs, result.table.itertuples())):
        div = bool(row.diverged)
        tr = _full_trace(traces[row.config_id], c)
        drift = np.nan if div else drift_ratio(tr.ewma.to_numpy())
        rows.append(dict(N=r.N, place=r.place, mechanism=mechanism_label(r.mechanism) if r.mechanism is not None else "none",
                         label=r.label, optimizer=r.optimizer, seed=r.seed, diverged=div,
                         stable_grad_norm=np.nan if div else _stable_norm(tr, c), drift=drift,
                         settled=bool(not div and is_settled([drift])),
                         final_loss=np.nan if div else float(row.final_loss),
                         relative_gradient_error=(relative_gradient_error(c, ws[j], error_draws) if j in ws and not div
                                                  else (0.0 if r.place == "none" else np.nan))))
        if r.place == "none" and not div:
            clean.append(pd.DataFrame(dict(optimizer=r.optimizer, N=r.N, seed=r.seed, t=tr.t.to_numpy(),
                                           loss=tr.loss.to_numpy(), j=j)))
    runs = pd.DataFrame(rows)
    clean = pd.concat(clean, ignore_index=True)
    pts = comparable_points(clean, loss_level(clean))
    where = {(r.optimizer, r.N, r.seed): j for j, (r, _) in enumerate(pairs) if r.place == "none"}
    base = [configs[where[(p.optimizer, p.N, p.seed)]] for p in pts.itertuples()]
    wpts = prefix_weights(base, pts.t.tolist(), pts.loss.tolist(), n_jobs=n_jobs, cache_dir=cache_dir)
    errs = []
    for p, c0, w in zip(pts.itertuples(), base, wpts):
        g0 = mean_gradient(c0.net, c0.data.features, w, labels=c0.data.labels)
        for (r, c) in pairs:
            if (r.place == "none" or r.optimizer != p.optimizer or r.N != p.N or r.seed != p.seed):
                continue
            errs.append(dict(optimizer=p.optimizer, N=p.N, place=r.place, mechanism=mechanism_label(r.mechanism),
                             label=r.label, seed=p.seed, t=p.t, loss=p.loss,
                             relative_gradient_error=relative_gradient_error(c, w, error_draws, step=p.t, clean=g0)))
    errors = pd.DataFrame(errs, columns=["optimizer", "N", "place", "mechanism", "label", "seed", "t", "loss",
                                         "relative_gradient_error"])
    return DeepResult(runs, pts, errors)


# -- analysis ---------------------------------------------------------------------------------------


def seed_flag(ratios, threshold: float):
    """A case judged seed by seed: True if every seed's ratio exceeds ``threshold``, False if none does,
    None (undecided: the seeds disagree, so no single seed decides) otherwise; None without seeds."""
    r = np.asarray(list(ratios), dtype=float)
    r = r[np.isfinite(r)]
    if not r.size:
        return None
    if np.all(r > threshold):
        return True
    if np.all(r <= threshold):
        return False
    return None


def interval_flag(ratio: float, spread: float, band=AGREEMENT_BAND):
    """Whether ``ratio`` lies in ``band`` once the seed ``spread`` (a factor ≥ 1) is allowed either way:
    True if [ratio/spread, ratio·spread] lies inside the band, False if it lies wholly outside, None
    (undecided) if it straddles an edge of the band — the spread is not smaller than the effect judged,
    the distance of the ratio from the band's edge.  None for a ratio or spread that is not finite."""
    if not (np.isfinite(ratio) and np.isfinite(spread) and ratio > 0 and spread >= 1):
        return None
    lo, hi = ratio / spread, ratio * spread
    if band[0] <= lo and hi <= band[1]:
        return True
    if hi < band[0] or lo > band[1]:
        return False
    return None


def _spread(x) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    return float(x.max() / x.min()) if x.size else np.nan


def stable_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (optimizer, N, label): geometric means over seeds of the stable norm, of its ratio to the clean
    run of the same seed, and of the relative gradient error at the run's own final weights (evidence);
    the seed spread of the stable norm (max/min over seeds), the smallest and largest drift, and
    ``settled`` (every seed's run passed the drift test)."""

    clean = runs[runs.place == "none"].set_index(["optimizer", "N", "seed"]).stable_grad_norm
    r = runs.assign(over_clean=runs.stable_grad_norm.to_numpy()
                    / clean.reindex(pd.MultiIndex.from_frame(runs[["optimizer", "N", "seed"]])).to_numpy())
    if "settled" not in r:
        r = r.assign(settled=True, drift=1.0)
    return (r.groupby(["optimizer", "N", "place", "mechanism", "label"], sort=False)
            .agg(stable_grad_norm=("stable_grad_norm", geometric_mean), over_clean=("over_clean", geometric_mean),
                 seed_spread=("stable_grad_norm", _spread),
                 relative_gradient_error=("relative_gradient_error", geometric_mean),
                 final_loss=("final_loss", "mean"), diverged=("diverged", "sum"),
                 drift_min=("drift", "min"), drift_max=("drift", "max"), settled=("settled", "all"))
            .reset_index())


def comparable_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (optimizer, N, place, mechanism): the relative gradient error at the comparable points
    (:attr:`DeepResult.errors`), geometric mean over seeds with its smallest and largest seed, the
    points' iterations and loss."""
    return (errors.groupby(["optimizer", "N", "place", "mechanism", "label"], sort=False)
            .agg(relative_gradient_error=("relative_gradient_error", geometric_mean),
                 error_low=("relative_gradient_error", "min"), error_high=("relative_gradient_error", "max"),
                 t_min=("t", "min"), t_max=("t", "max"), loss=("loss", "mean"), seeds=("seed", "nunique"))
            .reset_index())


def depth_growth(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (optimizer, mechanism, place), from the errors at comparable points (:attr:`DeepResult.errors`,
    one row per seed): the growth per layer, exp(slope of log error against N) over the geometric
    means, with its standard error in the slope; the factor error(N_max)/error(N_min) of the geometric
    means next to N_max/N_min (what N sources that add without compounding give); each seed's own
    endpoint factor (``seed_low``–``seed_high``) and ``compounds`` (:func:`seed_flag`: True if every
    seed's factor exceeds N_max/N_min, False if none does, None if the seeds disagree)."""
    rows = []
    for (opt, mech, place), g in errors.groupby(["optimizer", "mechanism", "place"], sort=False):
        gm = g.groupby("N").relative_gradient_error.apply(geometric_mean).sort_index()
        fit = fit_line(gm.index.to_numpy(float), np.log(gm.to_numpy()))
        n0, n1 = int(gm.index.min()), int(gm.index.max())
        e = g.set_index(["N", "seed"]).relative_gradient_error
        per_seed = (e.xs(n1, level="N") / e.xs(n0, level="N")).dropna()
        additive = n1 / n0
        rows.append(dict(optimizer=opt, mechanism=mech, place=place, per_layer_factor=float(np.exp(fit.slope)),
                         slope_se=fit.slope_se, N_min=n0, N_max=n1, error_ratio=float(gm.iloc[-1] / gm.iloc[0]),
                         additive_ratio=float(additive),
                         seed_low=float(per_seed.min()) if len(per_seed) else np.nan,
                         seed_high=float(per_seed.max()) if len(per_seed) else np.nan,
                         seeds=len(per_seed), compounds=seed_flag(per_seed, additive)))
    return pd.DataFrame(rows)


def _word(flag) -> str:
    return "undecided (the seeds disagree)" if flag is None else ("yes" if flag else "no")


def compounding_verdict(claim, growth: pd.DataFrame, name: str):
    """Errors compound with depth, under every optimizer: at comparable points, error(N_max)/error(N_min)
    exceeds N_max/N_min for every (optimizer, mechanism, place), seed by seed (:func:`depth_growth`)."""

    parts = []
    for opt, g in growth.groupby("optimizer", sort=False):
        parts.append(f"{OPTIMIZER_NAMES.get(opt, opt)}: " + "; ".join(
            f"{r.mechanism} {r.place}: ×{r.error_ratio:.3g} from N = {r.N_min} to {r.N_max} (seeds ×{r.seed_low:.3g}–"
            f"×{r.seed_high:.3g}; additive ×{r.additive_ratio:g}; fit {r.per_layer_factor:.3f} per layer) → "
            f"{_word(r.compounds)}" for r in g.itertuples()))
    flags = list(growth.compounds)
    decided = [f for f in flags if f is not None]
    return Verdict(claim(name), outcome_of_flags(flags),
                   rule="E‖ũ − u‖²/‖u‖² at comparable points — each depth's clean trajectory where its full-data "
                        "loss first reaches the optimizer's common level L*, every mechanism and place at the same "
                        "weights — grows from N_min to N_max by more than N_max/N_min (the growth of N sources that "
                        "add without compounding), each (optimizer, mechanism, place) a case; a case is decided only "
                        "when every seed agrees (else undecided); holds: all decided cases and none undecided; "
                        "partial/fails: by the share of decided cases that compound",
                   evidence=" | ".join(parts) + f". Decided: {len(decided)} of {len(flags)} cases, "
                            f"{sum(decided)} compound.",
                   key_number=float(growth.error_ratio.min()) if len(growth) else None,
                   key_label="smallest endpoint growth error(N_max)/error(N_min) (geometric means)")


def _seed_ratios(errors: pd.DataFrame, optimizer: str) -> pd.DataFrame:
    """Per (mechanism, N, seed): forward / backward error at the same weights (the comparable point)."""
    e = errors[errors.optimizer == optimizer]
    f = e[e.place == "forward"].set_index(["mechanism", "N", "seed"]).relative_gradient_error
    b = e[e.place == "backward"].set_index(["mechanism", "N", "seed"]).relative_gradient_error
    return (f / b).dropna().rename("ratio").reset_index()


def _ratio_cases(errors: pd.DataFrame, optimizer: str, deepest: bool = False) -> list[tuple]:
    """(mechanism, N, geometric-mean ratio, seed low, seed high, flag) per (mechanism, N)."""
    r = _seed_ratios(errors, optimizer)
    if deepest and len(r):
        r = r[r.N == r.N.max()]
    out = []
    for (m, n), g in r.groupby(["mechanism", "N"], sort=False):
        out.append((m, int(n), geometric_mean(g.ratio), float(g.ratio.min()), float(g.ratio.max()),
                    seed_flag(g.ratio, 1.0)))
    return out


def forward_sensitive_verdict(claim, errors: pd.DataFrame, name: str, optimizer: str = "sgd"):
    """The forward pass is the sensitive one: at the comparable points (the same weights for both places),
    the relative gradient error is larger forward than backward at every (mechanism, N), seed by seed."""

    cases = _ratio_cases(errors, optimizer)
    flags = [c[-1] for c in cases]
    return Verdict(claim(name), outcome_of_flags(flags),
                   rule="the relative gradient error E‖ũ − u‖²/‖u‖² at comparable points (the clean weights where the "
                        "loss first reaches the common level, the same for both places), forward / backward > 1 at "
                        "every mechanism and depth; a case is decided only when every seed agrees "
                        "(holds: all; partial: at least half of the decided cases; fails: fewer)",
                   evidence=f"{OPTIMIZER_NAMES.get(optimizer, optimizer)}: " + "; ".join(
                       f"{m}, N = {n}: {v:.3g} (seeds {lo:.3g}–{hi:.3g}) → {_word(f)}" for m, n, v, lo, hi, f in cases) + ".",
                   key_number=float(min(c[2] for c in cases)) if cases else None,
                   key_label="smallest forward/backward ratio (geometric mean over seeds)")


def optimizer_verdict(claim, errors: pd.DataFrame, name: str, optimizers=("heavyball", "adam")):
    """The asymmetry survives momentum and Adam: forward/backward error > 1 at the deepest chain, at the
    comparable points, per optimizer and mechanism, seed by seed."""

    flags, parts = [], []
    for opt in optimizers:
        cases = _ratio_cases(errors, opt, deepest=True)
        if not cases:
            continue
        flags += [c[-1] for c in cases]
        parts.append(f"{OPTIMIZER_NAMES.get(opt, opt)}: " + ", ".join(
            f"{m} at N = {n}: {v:.3g} (seeds {lo:.3g}–{hi:.3g}) → {_word(f)}" for m, n, v, lo, hi, f in cases))
    return Verdict(claim(name), outcome_of_flags(flags),
                   rule="the relative gradient error E‖ũ − u‖²/‖u‖² at comparable points, forward / backward > 1 at "
                        "the deepest chain for every optimizer and mechanism; a case is decided only when every seed "
                        "agrees (holds: all; partial: at least half of the decided cases; fails: fewer)",
                   evidence="; ".join(parts) + ".", key_number=None)


def optimizer_floor_table(runs: pd.DataFrame, optimizers=("heavyball", "adam"), base: str = "sgd") -> pd.DataFrame:
    """Per (optimizer, mechanism, place, N): the floor of the runs — their stable norm over the clean
    run's of the same optimizer and seed (``over_clean``, geometric mean over seeds, :func:`stable_table`)
    — next to plain SGD's, their ratio, the seed ``spread`` beside it (the larger of the two clean
    runs' max/min stable norm over seeds), ``settled`` (every run of the case — clean and perturbed,
    both optimizers, every seed — passed the drift test) and ``same_floor``: :func:`interval_flag` of
    the ratio and spread (True: inside the agreement band even after the spread; False: outside
    it; None: undecided), None when a run has not settled."""

    st = stable_table(runs)
    s = st[st.place != "none"]
    cl = st[st.place == "none"].set_index(["optimizer", "N"])
    ref = s[s.optimizer == base].set_index(["mechanism", "place", "N"])
    rows = []
    for r in s[s.optimizer.isin(optimizers)].itertuples():
        b = ref.loc[(r.mechanism, r.place, r.N)] if (r.mechanism, r.place, r.N) in ref.index else None
        bo = float(b.over_clean) if b is not None else np.nan
        ratio = r.over_clean / bo
        spread = max(float(cl.seed_spread.get((r.optimizer, r.N), np.nan)), float(cl.seed_spread.get((base, r.N), np.nan)))
        settled = bool(r.settled and b is not None and b.settled and cl.settled.get((r.optimizer, r.N), False)
                       and cl.settled.get((base, r.N), False))
        rows.append(dict(optimizer=r.optimizer, mechanism=r.mechanism, place=r.place, N=r.N, over_clean=r.over_clean,
                         base_over_clean=bo, ratio_to_base=ratio, spread=spread, settled=settled,
                         same_floor=interval_flag(ratio, spread) if settled else None))
    return pd.DataFrame(rows, columns=["optimizer", "mechanism", "place", "N", "over_clean", "base_over_clean",
                                       "ratio_to_base", "spread", "settled", "same_floor"])


def _floor_word(r) -> str:
    if not r.settled:
        return "undecided (not settled)"
    return {True: "same floor", False: "different floor", None: "undecided (spread)"}[r.same_floor]


def optimizer_floor_verdict(claim, floors: pd.DataFrame, name: str, optimizer: str):
    """``optimizer`` leaves the deep chain's floor where plain SGD has it: the ratio of the two floors
    (:func:`optimizer_floor_table`) in the agreement band at every mechanism, place and depth, each a
    case decided only where the runs settled and the seed spread is smaller than the effect
    (:func:`interval_flag`)."""

    f = floors[floors.optimizer == optimizer].dropna(subset=["ratio_to_base"])
    lo, hi = AGREEMENT_BAND
    far = f.iloc[int(np.argmax(np.abs(np.log(f.ratio_to_base.to_numpy()))))] if len(f) else None
    flags = list(f.same_floor)
    decided = [x for x in flags if x is not None]
    return Verdict(claim(name), outcome_of_flags(flags),
                   rule=f"floor = stable gradient norm over the clean run's of the same seed (geometric mean over "
                        f"seeds); the floor under {OPTIMIZER_NAMES.get(optimizer, optimizer)} / the floor under plain SGD "
                        f"within {lo:g}–{hi:g} at every mechanism, place and depth; beside each ratio the seed spread s "
                        f"of the clean runs (max/min of the clean stable norm over seeds, the larger of the two "
                        f"optimizers'): a case is decided only if every run of it passed the drift test and "
                        f"[ratio/s, ratio·s] lies wholly inside the band (same floor) or wholly outside it (different "
                        f"floor), else undecided; holds: every case decided and the same; partial/fails: by the share "
                        f"of decided cases",
                   evidence=f"{len(decided)} of {len(f)} cases decided, {sum(decided)} with the same floor; "
                            + "; ".join(f"{r.mechanism} {r.place}, N = {r.N}: {r.over_clean:.3g} vs SGD "
                                        f"{r.base_over_clean:.3g} (×{r.ratio_to_base:.3g}, spread ×{r.spread:.3g}) → "
                                        f"{_floor_word(r)}" for r in f.itertuples()) + ".",
                   key_number=float(far.ratio_to_base) if far is not None else None,
                   key_label=f"{OPTIMIZER_NAMES.get(optimizer, optimizer)}/SGD floor ratio farthest from 1")


def settled_text(runs: pd.DataFrame) -> str:
    """How many runs passed the drift test, per optimizer, and the range of the drift ratios."""
    parts = []
    for opt, g in runs.groupby("optimizer", sort=False):
        parts.append(f"{OPTIMIZER_NAMES.get(opt, opt)} {int(g.settled.sum())} of {len(g)}")
    d = runs.drift.to_numpy(dtype=float)
    d = d[np.isfinite(d)]
    rng = f" (drift ratios {d.min():.3g}–{d.max():.3g})" if d.size else ""
    return ", ".join(parts) + rng


def lemma_factors(depths, width: int, gain: float, seed: int = 0) -> pd.DataFrame:
    """Section 4's constants for the initial chains: C_∇f = max_i ‖W_i‖_op (tanh' ≤ 1, so a layer's
    Jacobian is bounded by its matrix; :func:`fbsgd.theory.error_bounds.linear_constants`), Lemma 1's
    C_v = max{1, C_∇f^N} (:func:`fbsgd.theory.error_bounds.c_v`) with its growth per layer, and (21)'s factor
    3C²_∇f per operator in the forward coefficient."""

    rows = []
    for N in depths:
        net = chain_net(N, width, gain)
        ws = net.split(net.init_weight(np.random.default_rng(seed)))
        C = max(bounds.linear_constants(ws[2 * i - 1].reshape(width, width), 0.0).C_grad for i in range(1, N + 1))
        rows.append(dict(N=N, C_grad=C, C_v=bounds.c_v(C, N), C_v_per_layer=bounds.c_v(C, N) ** (1.0 / N),
                         eq21_factor=3 * C**2))
    return pd.DataFrame(rows)
