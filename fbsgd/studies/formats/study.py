"""Formats as trained: scaled FP8, MX and NVFP4 rounding (:mod:`fbsgd.formats`) judged by the theory
{cite}`kong2026perturbed`.

Three parts, each a table, a figure and verdicts (:mod:`fbsgd.studies.formats.verdicts`):

* **classes** (:func:`class_table`): each scaled kind's exact conditional law given its input
  (``conditional_law``: one point for nearest rounding, the two element neighbours times the scale for
  stochastic rounding) on realistic messages — the Section 7 chain's forward message z and backward
  message σ(z) at iterates of a clean run (blocks across the batch, ``axis=0``: one value per sample),
  and a digits MLP's activations and backward messages at a clean run's weights (blocks along a sample's
  features, ``axis=-1``) — giving the conditional bias E[δ | x] and the relative error;
* **Figure 4 with scaled formats** (:func:`fig4_configs`): Section 7 runs (``RunConfig``) with a scaled
  kind on the forward or the backward message; every run covers the same γT (T at the smallest γ, T·γ_min/γ
  above it), and the analysis is that of the real-mechanisms chapter
  (:mod:`fbsgd.studies.real_mechanisms.study`: slopes, γ → 0 predictions from the conditional laws, the
  drift test and the book's one floor rule);
* **digits** (:func:`digits_configs`, :func:`digits_table`): scikit-learn's handwritten digits, an MLP with
  bias and softmax cross-entropy trained by SGD (``ChainConfig``), a recipe's format at the forward site
  (after every activation: the input of the next layer's product), the backward site (the gradient at
  every affine layer's output, which feeds both the product to the activations and the one to the
  weights) or both; stable gradient norm, drift, and test accuracy against the full-precision run.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fbsgd import formats as F
from fbsgd.book import params as P
from fbsgd.engine.chains import ChainConfig
from fbsgd.engine.sweeps import RunConfig, run_sweep
from fbsgd.metrics import drift_ratio, geometric_mean
from fbsgd.passes import passes
from fbsgd.problems import Dataset, mlp
from fbsgd.studies.section7.design import section7_spec
from fbsgd.studies.section7.verdicts import is_settled

__all__ = ["ELEMENTS", "kind_catalogue", "kinds_named", "class_table", "section7_messages_names", "mlp_messages",
           "T_of", "fig4_configs", "RECIPES", "recipe_sites", "digits_data", "digits_net", "digits_configs",
           "digits_table", "digits_summary", "site_ratios", "TEST_FRACTION", "chapter_spec",
           "FIG4_PAPER", "RECIPES_PAPER", "glue_values"]

ELEMENTS = ("float8_e4m3fn", "float8_e5m2", "float6_e2m3fn", "float6_e3m2fn", "float4_e2m1fn")
MODES = ("nearest", "stochastic")
ZERO_MEAN_RTOL = 1e-12  # ‖E[δ|x]‖ below this × ‖x‖: zero mean given the input (float64 sums of exact two-point laws)
TEST_FRACTION = 0.25


def kind_catalogue(axis: int, tensor_block: int | None = None) -> dict:
    """Every scaled kind the chapter can name, by its label: MX (each element format, scale rule "ocp"
    and "ceil", nearest and stochastic; block 32 along ``axis``), NVFP4 (block scale rounded to nearest
    or up, both modes), per-tensor amax scaling (E4M3 and E5M2, both modes) and, with ``tensor_block``
    (the batch size M of a one-value-per-sample message), per-tensor scaling with a power-of-two scale
    as MX with one block of ``tensor_block`` values and the ceil rule (compiled; its label says "block M")."""
    out = {}
    for e in ELEMENTS:
        for rule in ("ocp", "ceil"):
            for m in MODES:
                p = F.MX(e, 32, rule, m, axis)
                out[p.label] = p
    for rule in ("nearest", "ceil"):
        for m in MODES:
            p = F.NVFP4(m, axis, rule)
            out[p.label] = p
    for e in ("float8_e4m3fn", "float8_e5m2"):
        for m in MODES:
            p = F.TensorScaled(e, m)
            out[p.label] = p
            if tensor_block:
                q = F.MX(e, int(tensor_block), "ceil", m, axis)
                out[q.label] = q
    return out


def kinds_named(names, axis: int, tensor_block: int | None = None) -> list:
    """The kinds of :func:`kind_catalogue` called ``names`` (a ValueError naming the unknown ones)."""
    cat = kind_catalogue(axis, tensor_block)
    bad = [n for n in names if n not in cat]
    if bad:
        raise ValueError(f"unknown scaled kind(s) {bad}; allowed: {sorted(cat)}")
    return [cat[n] for n in names]


def _law_row(p, x: np.ndarray) -> dict:
    """Conditional bias and relative error of kind ``p`` at input ``x`` (exact law)."""
    law = p.conditional_law(x)
    b = np.asarray(law.bias(), dtype=float).reshape(x.shape)
    pts = np.asarray(law.points, dtype=float)
    prob = np.asarray(law.probabilities, dtype=float)
    dev = pts - x[..., None]
    ax = np.abs(x)
    nz = (ax > 0)[..., None] & (prob > 0)
    rel = np.where(nz, np.abs(dev) / np.where(ax > 0, ax, 1.0)[..., None], 0.0)
    nx = float(np.linalg.norm(x))
    second = float(np.sum(prob * dev**2))
    biased = np.abs(b) > ZERO_MEAN_RTOL * np.maximum(ax, np.max(ax))
    return dict(bias_rel=float(np.linalg.norm(b)) / nx, rms_rel=math.sqrt(second) / nx,
                max_rel=float(rel.max()), biased_share=float(biased.mean()))


def class_table(kinds: dict, messages: dict) -> pd.DataFrame:
    """One row per kind (``kinds``: label → perturbation) and message (``messages``: name → array of
    inputs stacked on a first axis, one per iterate or layer): the largest over the inputs of the
    relative conditional bias ‖E[δ|x]‖/‖x‖ (``bias_rel``), of the relative rms error
    √E‖δ‖²/‖x‖ (``rms_rel``), of max |δ|/|x| over the law's support (``max_rel``, entries x ≠ 0) and of
    the share of entries with E[δ|x] ≠ 0 (``biased_share``); ``zero_mean``: bias_rel below
    ZERO_MEAN_RTOL at every input (zero mean given the input); ``declared``: what the kind declares
    (``law.zero_mean``)."""
    rows = []
    for name, xs in messages.items():
        for label, p in kinds.items():
            parts = [_law_row(p, np.asarray(x, dtype=float)) for x in xs]
            agg = {k: max(r[k] for r in parts) for k in parts[0]}
            rows.append(dict(kind=label, family=label.split()[0], message=name, **agg,
                             zero_mean=bool(agg["bias_rel"] <= ZERO_MEAN_RTOL), declared=bool(p.law.zero_mean),
                             rule=getattr(p, "scale_rule", "amax"), mode=p.mode))
    return pd.DataFrame(rows)


def section7_messages_names():
    return ("Section 7 forward z", "Section 7 backward σ(z)")


def mlp_messages(net, data: Dataset, w: np.ndarray, rows: int = 256):
    """(activations, gradients) of the clean passes of ``net`` at ``w`` on the first ``rows`` rows of
    ``data``: the output of every hidden activation (the forward sites) and the gradient at every affine
    layer's output (the backward sites), as lists of (rows, width) arrays."""
    x, y = data.features[:rows], data.labels[:rows]
    p = passes(net, x, w, labels=y)
    N = len(net)
    acts = [p.ys[i] for i in range(2, N - 1, 2)]
    grads = [p.vs[i] for i in range(1, N, 2)]
    return acts, grads


# -- Figure 4 with scaled formats ---------------------------------------------------------------------


def T_of(T: int, gamma: float, gamma_min: float, metric_every: int) -> int:
    """The iterations of a run at step size γ: T at the smallest γ, T·γ_min/γ above it (the same γT, the
    same stretch of the small-step flow's time), at least 20 metric points."""
    return max(int(round(T * gamma_min / gamma)), 20 * int(metric_every))


def fig4_configs(kinds, gammas, seeds, T: int, places=("forward", "backward"), **common) -> list[RunConfig]:
    """Standard SGD (figure "standard SGD", panel "baseline") and every kind at every place, γ and seed
    (figure = the kind's label, panel = the place), T by :func:`T_of`."""
    g0 = min(gammas)
    out = []
    every = common.get("metric_every", 10)
    for g in gammas:
        Tg = T_of(T, g, g0, every)
        for s in seeds:
            out.append(RunConfig(figure="standard SGD", panel="baseline", gamma=g, seed=s, T=Tg, **common))
            for p in kinds:
                for place in places:
                    out.append(RunConfig(figure=p.label, panel=place, gamma=g, seed=s, T=Tg, **{place: p}, **common))
    return out


# -- digits ---------------------------------------------------------------------------------------------

# recipe name -> (forward kind, backward kind) factories (axis −1: blocks along a sample's features)
RECIPES = {
    "MXFP8": (lambda: F.MX("float8_e4m3fn", 32, "ocp", "nearest", -1), lambda: F.MX("float8_e5m2", 32, "ocp", "nearest", -1)),
    "MXFP8 ceil": (lambda: F.MX("float8_e4m3fn", 32, "ceil", "nearest", -1), lambda: F.MX("float8_e5m2", 32, "ceil", "nearest", -1)),
    "MXFP4 SR": (lambda: F.MX("float4_e2m1fn", 32, "ocp", "nearest", -1), lambda: F.MX("float4_e2m1fn", 32, "ocp", "stochastic", -1)),
    "MXFP4 SR ceil": (lambda: F.MX("float4_e2m1fn", 32, "ceil", "nearest", -1), lambda: F.MX("float4_e2m1fn", 32, "ceil", "stochastic", -1)),
    "MXFP4 nearest": (lambda: F.MX("float4_e2m1fn", 32, "ocp", "nearest", -1), lambda: F.MX("float4_e2m1fn", 32, "ocp", "nearest", -1)),
    "FP8 tensor": (lambda: F.TensorScaled("float8_e4m3fn"), lambda: F.TensorScaled("float8_e5m2")),
    "NVFP4 SR": (lambda: F.NVFP4("nearest", -1), lambda: F.NVFP4("stochastic", -1)),
}
"""The recipes of the digits part: E4M3 forward / E5M2 backward (MXFP8, per-tensor FP8), E2M1 forward
rounded to nearest and gradients rounded stochastically (MXFP4, NVFP4), with the OCP scale or the
scale rounded up.  MX kinds compile; per-tensor FP8 and NVFP4 run on the reference path."""

SITES = ("forward", "backward", "both")


def recipe_sites(N: int, recipe: str, site: str) -> dict:
    """``forward`` and ``backward`` of a depth-N MLP (:func:`fbsgd.problems.mlp`, operators 2k − 1 affine,
    2k activation, 2N + 1 the head, 2N + 2 the loss): the recipe's forward kind after every activation
    (forward[2k], k = 1..N) and its backward kind on the gradient at every affine output (backward[2k],
    k = 1..N + 1: the message operator 2k sends into affine 2k − 1); ``site`` "forward", "backward",
    "both" or "none"."""
    if site == "none":
        return dict(forward={}, backward={})
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {list(RECIPES)}, got {recipe!r}")
    if site not in SITES:
        raise ValueError(f"site must be one of {list(SITES) + ['none']}, got {site!r}")
    fwd, bwd = RECIPES[recipe]
    f = {2 * k: fwd() for k in range(1, N + 1)} if site in ("forward", "both") else {}
    b = {2 * k: bwd() for k in range(1, N + 2)} if site in ("backward", "both") else {}
    return dict(forward=f, backward=b)


def digits_data(seed: int = 0):
    """(train, test): the digits split 3:1 by ``seed``, standardized by the training part's columns."""
    train, test = Dataset.digits().split(TEST_FRACTION, seed=seed)
    return train.standardized(), test.standardized(using=train)


def digits_net(N: int, width: int):
    return mlp(64, [int(width)] * int(N), "tanh", True, "softmax", 10)


def digits_configs(depths, recipes, seeds, *, width: int, T: int, lr: float, batch: int, rho: float,
                   metric_every: int, data_seed: int = 0, sites=SITES):
    """Every digits run as ((N, recipe, site, seed), ChainConfig): per depth and seed the clean run
    (recipe "none", site "none") and each recipe at each site; SGD, float64 passes, penalty ρ‖w‖²."""
    train, _ = digits_data(data_seed)
    out = []
    for N in depths:
        net = digits_net(N, width)
        for s in seeds:
            base = ChainConfig(net, train, optimizer="sgd", lr=lr, batch=batch, T=T, seed=s, init_seed=s,
                               metric_every=metric_every, regularizer="l2", rho=rho, precision="float64",
                               figure="clean", panel="none")
            out.append(((N, "none", "none", s), base))
            for r in recipes:
                for site in sites:
                    out.append(((N, r, site, s), base.replace(figure=r, panel=site, **recipe_sites(N, r, site))))
    return out


def _accuracy(net, data: Dataset, w) -> float:
    p = passes(net, data.features, w, labels=data.labels)
    return float(np.mean(np.argmax(p.ys[-2], axis=1) == data.labels))


def digits_table(pairs, *, n_jobs=None, cache_dir=True, progress: bool = True, data_seed: int = 0):
    """Run :func:`digits_configs`'s configurations in one sweep; one row per run: N, recipe, site, seed,
    diverged, stable_grad_norm (the sweep's), drift (:func:`fbsgd.metrics.drift_ratio` of the EWMA of the
    clean full-data ‖∇F‖ at every metric point), settled (the drift test), test_accuracy (at w_T, on the
    held-out quarter), train_accuracy.  Returns (table, sweep result)."""
    configs = [c for _, c in pairs]
    res = run_sweep(configs, n_jobs=n_jobs, cache_dir=cache_dir, progress=progress,
                    trace_points=max(600, 2 * -(-configs[0].T // configs[0].metric_every)))
    traces = {cid: g.sort_values("t") for cid, g in res.traces.groupby("config_id")}
    _, test = digits_data(data_seed)
    rows = []
    for ((N, r, site, s), c), row in zip(pairs, res.table.itertuples()):
        div = bool(row.diverged)
        tr = traces[row.config_id]
        grid = np.arange(0, c.T, c.metric_every)
        drift = np.nan if div else drift_ratio(np.interp(grid, tr.t.to_numpy(float), tr.ewma.to_numpy(float)))
        w = res.weights.get(row.config_id)
        acc = np.nan if div or w is None else _accuracy(c.net, test, w)
        rows.append(dict(N=N, recipe=r, site=site, seed=s, diverged=div,
                         stable_grad_norm=np.nan if div else float(row.stable_grad_norm), drift=drift,
                         settled=bool(not div and is_settled([drift])), test_accuracy=acc,
                         train_accuracy=float(row.train_accuracy), path=row.path))
    return pd.DataFrame(rows), res


def digits_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (N, recipe, site): geometric means over seeds of the stable norm and of its ratio to the clean
    run of the same depth and seed (``over_clean``), its smallest and largest seed ratio, the mean test
    accuracy minus the clean runs' (``accuracy_change``), and ``settled`` (every seed's run and its
    clean twin passed the drift test)."""
    clean = table[table.recipe == "none"].set_index(["N", "seed"])
    key = pd.MultiIndex.from_frame(table[["N", "seed"]])
    t = table.assign(over_clean=table.stable_grad_norm.to_numpy() / clean.stable_grad_norm.reindex(key).to_numpy(),
                     clean_settled=clean.settled.reindex(key).to_numpy(),
                     accuracy_change=table.test_accuracy.to_numpy() - clean.test_accuracy.reindex(key).to_numpy())
    out = (t.groupby(["N", "recipe", "site"], sort=False)
           .agg(stable_grad_norm=("stable_grad_norm", geometric_mean), over_clean=("over_clean", geometric_mean),
                over_clean_low=("over_clean", "min"), over_clean_high=("over_clean", "max"),
                test_accuracy=("test_accuracy", "mean"), accuracy_change=("accuracy_change", "mean"),
                diverged=("diverged", "sum"), settled=("settled", "all"), clean_settled=("clean_settled", "all"),
                drift_min=("drift", "min"), drift_max=("drift", "max"), seeds=("seed", "nunique"))
           .reset_index())
    out["settled"] = out.settled & out.clean_settled.astype(bool)
    return out.drop(columns="clean_settled")


def site_ratios(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (N, recipe): the forward site's stable norm over clean, the backward site's, both, and their
    ratio forward / backward (which site dominates)."""
    s = summary[summary.recipe != "none"].pivot_table(index=["N", "recipe"], columns="site", values="over_clean")
    s = s.reindex(columns=list(SITES)).reset_index()
    s.columns.name = None
    s["forward_over_backward"] = s.forward / s.backward
    return s


# -- the chapter's parameters, rules and cost ----------------------------------------------------------

FIG4_PAPER = ["MXFP8 E4M3 ocp nearest", "MXFP4 E2M1 ocp stochastic", "MXFP4 E2M1 ceil stochastic",
              "MXFP8 E4M3 block 2000 ceil nearest"]
FIG4_QUICK = ["float8_e4m3fn tensor-scaled stochastic", "NVFP4 ceil stochastic"]
RECIPES_PAPER = ["MXFP8", "MXFP4 SR"]
RECIPES_QUICK = ["NVFP4 SR"]
def chapter_spec() -> dict:
    """The chapter's parameter declarations for :func:`fbsgd.book.params.resolve`."""
    s7 = section7_spec()
    s7["T"] = P.Int(paper=200_000, quick=1_000, min=20, max=2**31 - 1)
    s7["gammas"] = P.FloatList(paper=[0.01, 0.03, 0.1], quick=[0.3, 1.0], min=1e-9, max=1e3, min_len=2)
    s7["seeds"] = P.IntList(paper=[0, 1, 2], quick=[0, 1], min=0)
    return dict(
        **s7,
        fig4_kinds=P.StrList(paper=FIG4_PAPER, quick=FIG4_QUICK, choices=tuple(kind_catalogue(0, 2000))),
        message_gamma=P.Float(min=1e-9), message_T=P.Int(paper=20_000, quick=2_000, min=2),
        message_checkpoints=P.Int(min=1, max=100),
        depths=P.IntList(paper=[2, 4, 8], quick=[2, 3], min=1, max=32),
        recipes=P.StrList(paper=RECIPES_PAPER, quick=RECIPES_QUICK, choices=tuple(RECIPES)),
        digits_T=P.Int(paper=4000, quick=60, min=20), digits_seeds=P.IntList(paper=[0, 1, 2], quick=[0, 1], min=0),
        digits_metric_every=P.Int(paper=20, quick=6, min=1),
        width=P.Int(min=1, max=1024), lr=P.Float(min=1e-12), batch=P.Int(min=1), rho=P.Float(min=0.0),
    )


def _words(items) -> str:
    items = list(items)
    return "none" if not items else items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _mark(v) -> str:
    return f"{v.mark} {v.outcome}" if v is not None else "not judged"


def glue_values(params: dict, classes: pd.DataFrame, floors: pd.DataFrame, summary: pd.DataFrame, verdicts: dict) -> dict:
    """Every number and sentence the chapter's prose glues (name → value), computed from the tables and
    the verdicts (``verdicts``: by claim name), never typed."""
    def n(x, what):
        return f"{len(x)} {what}{'s' if len(x) != 1 else ''}"

    out = {"fmt-checkpoints": str(params["message_checkpoints"]), "fmt-T": f"{params['T']:,}",
           "fmt-fig4-kinds": _words(params["fig4_kinds"]), "fmt-seeds": n(params["seeds"], "seed"),
           "fmt-width": str(params["width"]), "fmt-batch": str(params["batch"]), "fmt-rho": f"{params['rho']:g}",
           "fmt-digits-T": f"{params['digits_T']:,}", "fmt-digits-seeds": n(params["digits_seeds"], "seed"),
           "fmt-recipes": _words(f"{r} (forward {RECIPES[r][0]().label}, backward {RECIPES[r][1]().label})"
                                 for r in params["recipes"])}
    sr = classes[classes["mode"] == "stochastic"]
    biased = sr.groupby("kind").zero_mean.all()
    biased = biased[~biased].index
    vc = verdicts.get("classes_scale_rule")
    out["fmt-classes-text"] = (
        f"with stochastic rounding, {len(set(sr.kind) - set(biased))} of {sr.kind.nunique()} scaled kinds are zero-mean "
        f"given the input on every message and {len(biased)} are biased on at least one (largest relative conditional "
        f"bias {sr[sr.kind.isin(biased)].bias_rel.max() if len(biased) else 0.0:.2g}); the verdict that the scale "
        f"rule decides bias: {_mark(vc)}.")
    fl = floors.assign(word=[("undecided" if f is None or (isinstance(f, float) and np.isnan(f)) else "floor" if f
                              else "no floor") for f in floors.floor])
    out["fmt-floors-text"] = "by the book's floor rule, " + "; ".join(
        f"{r.mechanism} {r.place}: {r.word} (S(γ_min) {r.over_sgd:.2f}× standard SGD's, predicted γ → 0 norm "
        f"{r.predicted:.2g})" for r in fl.itertuples()) + "."
    vp, vs = verdicts.get("fig4_prediction"), verdicts.get("fig4_ceil_sr_no_floor")
    out["fmt-pred-text"] = (f"Measured against predicted: {_mark(vp)}"
                            + (f" (measured / predicted farthest from 1: {vp.key_number:.2f})" if vp is not None and vp.key_number is not None else "")
                            + f"; stochastic rounding with the scale rounded up leaves no floor on the backward message: {_mark(vs)}.")
    vsite, vsr, vd = verdicts.get("digits_site"), verdicts.get("digits_sr_no_floor"), verdicts.get("digits_depth")
    rec = summary[summary.recipe != "none"]
    f = rec[rec.site == "forward"].over_clean
    b = rec[rec.site == "backward"].over_clean
    out["fmt-site-text"] = (f"the forward site moves the stable norm by a factor {f.min():.2f}–{f.max():.2f} of the clean "
                            f"run's, the backward site by {b.min():.2f}–{b.max():.2f} (geometric means over seeds, every "
                            f"depth and recipe); the forward site dominates: {_mark(vsite)}"
                            + (f" (largest S_forward/S_backward {vsite.key_number:.2f})." if vsite is not None and vsite.key_number is not None else "."))
    acc = rec.accuracy_change
    out["fmt-sr-text"] = (f"Stochastic rounding of the gradients leaves no floor: {_mark(vsr)}; test accuracy changes by "
                          f"{acc.min():+.3f} to {acc.max():+.3f} against the full-precision runs.")
    out["fmt-depth-text"] = (f"Depth amplifies the effect: {_mark(vd)}"
                             + (f" (largest deepest/shallowest ratio {vd.key_number:.2f})." if vd is not None and vd.key_number is not None else "."))
    return out
