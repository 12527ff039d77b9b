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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fbsgd import operators as OP
from fbsgd.engine.chains import ChainConfig, reference_chain_run, run_chain_chunk
from fbsgd.engine.sweeps import not_compiled, run_sweep
from fbsgd.passes import Composite, passes, perturbed_passes
from fbsgd.problems import Dataset
from fbsgd.studies.real_mechanisms.mechanisms import mechanism_label
from fbsgd.metrics import fit_line
from fbsgd.studies.section7.verdicts import geometric_mean
from fbsgd.book.verdicts import Verdict, outcome_of_cases
from fbsgd.studies.section7.verdicts import in_band
from fbsgd.studies.section7.verdicts import AGREEMENT_BAND
from fbsgd.theory import error_bounds as bounds

__all__ = ["DeepRun", "classification_data", "chain_net", "sites", "deep_configs", "final_weights",
           "relative_gradient_error", "run_deep", "stable_table", "depth_growth", "compounding_verdict",
           "forward_sensitive_verdict", "optimizer_verdict", "optimizer_floor_table", "optimizer_floor_verdict",
           "lemma_factors"]

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
                 T: int, batch: int, metric_every: int, lr: dict, places=PLACES) -> list[tuple[DeepRun, ChainConfig]]:
    """Every run as (DeepRun, ChainConfig): per depth and optimizer the clean runs, then each mechanism
    at each place, every seed (seed and init_seed both the run's seed; float64 passes)."""
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
                                    metric_every=metric_every, **fields, **sites(N, r.place, r.mechanism)))
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


def relative_gradient_error(cfg: ChainConfig, w: np.ndarray, draws: int = ERROR_DRAWS) -> float:
    """E‖ũ − u‖²/‖u‖² at the weights ``w`` over the full data: u the clean gradient
    (:func:`fbsgd.passes.passes`), ũ the perturbed one (:func:`fbsgd.passes.perturbed_passes`) with the
    configuration's plan, its streams (``plan.init(seed)``) at the steps T, T + 1, …, T + draws − 1
    (the draws the run would make next).  0 for a configuration without perturbation."""
    plan = cfg.plan()
    if not plan.places():
        return 0.0
    X, y = cfg.data.features, cfg.data.labels
    with np.errstate(all="ignore"):
        g0 = passes(cfg.net, X, w, labels=y).gradient()
        state0, err = plan.init(cfg.seed), 0.0
        for s in range(draws):
            state = {place: st._replace(step=cfg.T + s) for place, st in state0.items()}
            gp = perturbed_passes(cfg.net, X, w, plan, state, labels=y)[0].gradient()
            err += float(np.sum((gp - g0) ** 2)) / draws
        return err / float(np.sum(g0**2))


def _stable_norm(traces: pd.DataFrame, cfg: ChainConfig) -> float:
    """Mean of the clean full-data ‖∇ℓ‖ at t = 0, k, 2k, … over the last half of the run (t ≥ T − ⌊T/2⌋)."""
    t, g = traces.t.to_numpy(), traces.grad_norm.to_numpy()
    k, T = cfg.metric_every, cfg.T
    if not np.array_equal(np.sort(t), np.arange(0, T, k)):
        raise RuntimeError("run_deep: the sweep's traces must hold every metric point (raise trace_points)")
    return float(np.mean(g[t >= T - T // 2]))


def run_deep(depths, mechanisms, optimizers, seeds, *, width: int, gain: float, n_data: int, data_seed: int, T: int,
             batch: int, metric_every: int, lr: dict, places=PLACES, error_draws: int = ERROR_DRAWS,
             n_jobs: int | None = None, cache_dir=True, progress: bool = True) -> pd.DataFrame:
    """Every (depth, optimizer): clean runs and each mechanism at each place, every seed, through one
    :func:`fbsgd.engine.sweeps.run_sweep` call; one row per run.

    Columns: N, place, mechanism, label, optimizer, seed, diverged (the sweep's), stable_grad_norm (mean
    of the clean full-data ‖∇ℓ‖ sampled every ``metric_every`` steps, t = 0, k, 2k, …, over the last half
    of the run, t ≥ T − ⌊T/2⌋; from the sweep's traces), final_loss (at w_T, the sweep's), and
    relative_gradient_error (:func:`relative_gradient_error` at the sweep's w_T; :func:`final_weights`
    recomputes w_T for a sweep result that does not keep it)."""
    pairs = deep_configs(depths, mechanisms, optimizers, seeds, width=width, gain=gain, n_data=n_data,
                         data_seed=data_seed, T=T, batch=batch, metric_every=metric_every, lr=lr, places=places)
    configs = [c for _, c in pairs]
    points = -(-T // metric_every)
    result = run_sweep(configs, n_jobs=n_jobs, cache_dir=cache_dir, progress=progress,
                       trace_points=max(600, 2 * points))
    traces = dict(tuple(result.traces.groupby("config_id", sort=False)))
    perturbed = [j for j, (r, _) in enumerate(pairs) if r.place != "none"]
    kept = getattr(result, "weights", None) or {}  # w_T by config_id, where the sweep keeps it
    ws = {j: kept[configs[j].key()] for j in perturbed if configs[j].key() in kept}
    missing = [j for j in perturbed if j not in ws]
    ws.update(zip(missing, final_weights([configs[j] for j in missing])))
    rows = []
    for j, ((r, c), row) in enumerate(zip(pairs, result.table.itertuples())):
        div = bool(row.diverged)
        rows.append(dict(N=r.N, place=r.place, mechanism=mechanism_label(r.mechanism) if r.mechanism is not None else "none",
                         label=r.label, optimizer=r.optimizer, seed=r.seed, diverged=div,
                         stable_grad_norm=np.nan if div else _stable_norm(traces[row.config_id], c),
                         final_loss=np.nan if div else float(row.final_loss),
                         relative_gradient_error=(relative_gradient_error(c, ws[j], error_draws) if j in ws else 0.0)))
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
        net = chain_net(N, width, gain)
        ws = net.split(net.init_weight(np.random.default_rng(seed)))
        C = max(bounds.linear_constants(ws[2 * i - 1].reshape(width, width), 0.0).C_grad for i in range(1, N + 1))
        rows.append(dict(N=N, C_grad=C, C_v=bounds.c_v(C, N), C_v_per_layer=bounds.c_v(C, N) ** (1.0 / N),
                         eq21_factor=3 * C**2))
    return pd.DataFrame(rows)
