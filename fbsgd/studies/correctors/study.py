"""The runs of the correctors chapter: Section 7's logistic regression with compressed or
noisy messages, plain and corrected, through the engine (:class:`fbsgd.engine.chains.ChainConfig`
run by :func:`fbsgd.engine.sweeps.run_sweep`: the compiled chain kernel, or its reference path
``train(PassGradient(net, plan), …)`` for what the kernel cannot run).

The Section 7 setting as a chain (:func:`chain_config`): f₁ = ``Linear(d, 1)``, s = hᵀw (w₀ = 0),
then ``LogisticLoss``, ℓ = ln(1 + e^{−y s}); full batch, the non-convex regularizer with ρ = 0.001
and ξ_t ~ N(0, 10⁻⁶ I) added to the gradient.  The messages differ from Section 7's by the sign of
the label: the chain's forward message is s = hᵀw where Section 7's is z = −y hᵀw, and its backward
message is ∂ℓ/∂s = −y σ(−y s̃) where Section 7's is σ(z̃).  The magnitudes agree (|s| = |z|,
|∂ℓ/∂s| = σ(z̃) with z̃ = −y s̃), the signs follow y.  So Top-K and Rand-K keep the same samples,
rounding to nearest (symmetric formats) gives the same magnitudes, error feedback and delta
compression act alike; zero-mean noise δ on s is noise −yδ on z, the same law, other draws.

:class:`ChainMessageFix`   a de-biasing of Section 7's message v = σ(z̃) (:class:`fbsgd.correctors.SecondOrderDebias`,
    :class:`~fbsgd.correctors.UniformDebias`) applied to the chain's message u = ∂ℓ/∂s:
    u ↦ sign(u)·g(|u|) = −y·g(σ(z̃)), the corrected Section 7 message with the chain's sign.
:func:`compression_settings`, :func:`debias_settings`   the configurations (tidy rows).
:func:`gamma_scan`   stable gradient norm per (setting, γ, seed), as in Figure 4.
:func:`rate_scan`    (1/T) Σ_t ‖∇f(w_t)‖² per (setting, T, seed) with γ = c/√T (Remark 1).
:func:`a3_scan`      Appendix A.3's Top-1 example with the correctors, per (setting, γ).
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from fbsgd.correctors import DeltaCompression, SecondOrderDebias, UniformDebias
from fbsgd.studies.counterexamples.study import PAPER_SETTINGS, fate, spectral_radius, topk_iteration_matrix, topk_net
from fbsgd.metrics import drift_ratio
from fbsgd.operators import Linear, LogisticLoss
from fbsgd.optimizers import SGD, HeavyBall, descend
from fbsgd.passes import Composite
from fbsgd.perturbations import ErrorFeedback, Perturbation, Plan, RandK, Round, TopK, canonical, zero_mean_uniform
from fbsgd.problems import Dataset, LogisticRegression
from fbsgd.studies.rates.schedules import FLOW_TIME
from fbsgd.engine.chains import ChainConfig
from fbsgd.engine.sweeps import run_sweep

__all__ = ["ChainMessageFix", "chain_config", "chain_data", "compression_settings", "debias_settings", "gamma_scan",
           "rate_scan", "rate_metric_every", "a3_scan", "figure9_radii", "problem", "NOISE_STD", "METRIC_EVERY", "EWMA"]

NOISE_STD = 1e-3  # the sampling noise ξ_t ~ N(0, NOISE_STD² I) of Section 7
METRIC_EVERY = 10  # the γ scan's gradient norms: every 10th iterate
EWMA = 0.99  # β of the EWMA of the gradient norm (Section 7.1)


@lru_cache(maxsize=4)
def problem(d: int = 10, M: int = 2000, rho: float = 0.001, regularizer: str = "nonconvex", data_seed: int = 0):
    return LogisticRegression.generate(d=d, M=M, rho=rho, regularizer=regularizer, data_seed=data_seed)


@lru_cache(maxsize=4)
def chain_data(d: int = 10, M: int = 2000, data_seed: int = 0) -> Dataset:
    """The problem's features and ±1 labels as a :class:`fbsgd.problems.Dataset`."""
    pr = problem(d=d, M=M, data_seed=data_seed)
    return Dataset(pr.features, pr.labels, name=f"Section 7 logistic regression (d = {d}, M = {M})")


def chain_config(plan: Plan, gamma: float, seed: int, T: int, metric_every: int = METRIC_EVERY) -> ChainConfig:
    """One run of the Section 7 setting as a chain (see the module docstring) with the plan's
    perturbations: forward[1] on s = hᵀw, backward[2] on ∂ℓ/∂s."""
    pr = problem()
    return ChainConfig(net=Composite([Linear(pr.d, 1, init="zeros"), LogisticLoss()]), data=chain_data(),
                       optimizer="sgd", lr=float(gamma), batch=0, T=int(T), seed=int(seed),
                       forward=dict(plan.forward), backward=dict(plan.backward), metric_every=int(metric_every),
                       ewma=EWMA, regularizer="nonconvex", rho=pr.rho, noise_std=NOISE_STD)


@dataclass(frozen=True)
class ChainMessageFix(Perturbation):
    """A de-biasing ``fix`` written for Section 7's backward message v = σ(z̃) (values in (0, 1)),
    applied to the chain's backward message u = ∂ℓ/∂s = −y σ(−y s̃): u ↦ sign(u)·fix(|u|).

    |u| = σ(z̃) with z̃ = −y s̃ and sign(u) = −y, so the result is −y·fix(σ(z̃)): the corrected
    Section 7 message with the chain's sign, without reading the labels.  On a message in (0, 1)
    (Section 7's own) it is ``fix`` itself.  No compiled form: it runs on the engine's reference path.
    """

    fix: Perturbation

    def apply(self, x, key, step):
        x = np.asarray(x, dtype=float)
        return np.sign(x) * self.fix.apply(np.abs(x), key, step)

    @property
    def law(self):
        return self.fix.law

    def __fbsgd_canonical__(self) -> str:
        """Its identity in the sweep cache, with a hash of this class's source (a study's class is
        not in the engine's source hash: an edit here must give new keys)."""
        h = hashlib.sha256(inspect.getsource(type(self)).encode()).hexdigest()[:12]
        return f"ChainMessageFix<source:{h}>(fix={canonical(self.fix)})"


# -- configurations ----------------------------------------------------------------------------

def compression_settings(k: int, fmt: str) -> list[dict]:
    """Top-K, Rand-K (scope "batch", k of M samples) and rounding to ``fmt`` on the forward
    and on the backward message, each plain, with error feedback and delta-based; rounding
    also stochastic (the unbiased alternative).  One dict per setting (``plan`` included)."""
    rows = []
    for place, key in (("forward", 1), ("backward", 2)):
        for pert, C, unbiased in (("Top-K", TopK(k, "batch"), None), ("Rand-K", RandK(k, "batch"), None),
                                  (fmt, Round(fmt, "nearest"), Round(fmt, "stochastic"))):
            variants = [("plain", C), ("error feedback", ErrorFeedback(C)), ("delta", DeltaCompression(C))]
            if unbiased is not None:  # rounding has an unbiased alternative
                variants.append(("stochastic rounding", unbiased))
            for corr, p in variants:
                plan = Plan(forward={1: p}) if key == 1 else Plan(backward={2: p})
                rows.append(dict(part="compression", place=place, perturbation=pert, corrector=corr, plan=plan))
    return rows


def debias_settings(sigma_fs, d: int) -> list[dict]:
    """Zero-mean forward noise U(−a, a), a = σ_f/√d (Section 7.2.1), plain and with the
    second-order and the exact de-biasing of the backward message (as :class:`ChainMessageFix`:
    the chain's message carries the label's sign)."""
    rows = []
    for s in sigma_fs:
        noise = zero_mean_uniform(s, d)
        for corr, fix in (("plain", None), ("second-order", SecondOrderDebias.for_noise(noise)),
                          ("exact", UniformDebias.for_noise(noise))):
            plan = Plan(forward={1: noise}, backward={2: ChainMessageFix(fix)} if fix is not None else {})
            rows.append(dict(part="debias", place="forward", perturbation=f"uniform σ_f = {s:g}", corrector=corr,
                             sigma_f=float(s), plan=plan))
    return rows


def baseline_setting() -> dict:
    return dict(part="baseline", place="none", perturbation="none", corrector="none", plan=Plan())


# -- the scans -----------------------------------------------------------------------------------

def _labels(s):
    return {k: v for k, v in s.items() if k != "plan"}


def gamma_scan(settings, gammas, seeds, T: int, n_jobs: int = -1, cache_dir=True, progress: bool = True) -> pd.DataFrame:
    """One row per (setting, γ, seed): the stable gradient norm after T iterations (mean EWMA of
    ‖∇f‖ over the last ⌊T/2⌋ iterations, Section 7.1: run_sweep's ``stable_grad_norm``), its drift
    (:func:`fbsgd.metrics.drift_ratio` of the EWMA at every METRIC_EVERY-th iterate: has the run
    settled?), ``diverged`` and the engine's ``path`` ("compiled" or "reference").  One run_sweep call."""
    keys = [(s, g, k) for s in settings for g in gammas for k in seeds]
    configs = [chain_config(s["plan"], g, k, T) for s, g, k in keys]
    points = -(-int(T) // METRIC_EVERY)  # every recorded iterate: the trace is the full EWMA
    res = run_sweep(configs, n_jobs=n_jobs, cache_dir=cache_dir, trace_points=2 * points, progress=progress)
    traces = {cid: g.sort_values("t").ewma.to_numpy() for cid, g in res.traces.groupby("config_id")}
    rows = []
    for (s, g, k), r in zip(keys, res.table.itertuples()):
        trace = traces[r.config_id]
        if trace.size != points:  # drift_ratio's quarters are of the full trace
            raise RuntimeError(f"gamma_scan: run_sweep returned {trace.size} trace points, not every recorded iterate ({points})")
        rows.append({**_labels(s), "gamma": float(g), "seed": int(k), "T": int(T),
                     "stable_grad_norm": float(r.stable_grad_norm),
                     "drift": float("nan") if r.diverged else drift_ratio(trace),
                     "diverged": bool(r.diverged), "path": r.path})
    return pd.DataFrame(rows)


def rate_metric_every(gamma: float, T: int) -> int:
    """k = max(1, ⌊FLOW_TIME/γ⌋), at most T/2: the interval of the rate runs' gradient norms (as
    :mod:`fbsgd.studies.rates.schedules` samples them)."""
    return max(1, min(int(FLOW_TIME / gamma), int(T) // 2))


def rate_scan(settings, horizons, seeds, c: float, n_jobs: int = -1, cache_dir=True, progress: bool = True) -> pd.DataFrame:
    """One row per (setting, T, seed): (1/T) Σ ‖∇f(w_t)‖² under γ = c/√T, the mean of ‖∇f(w_t)‖²
    over t = 0, k, 2k, … < T (run_sweep's ``mean_sq_grad_norm``, k = :func:`rate_metric_every`),
    ``diverged`` and ``path``.  One run_sweep call."""
    keys = [(s, T, k) for s in settings for T in horizons for k in seeds]
    gammas = [c / np.sqrt(T) for _, T, _ in keys]
    configs = [chain_config(s["plan"], g, k, T, rate_metric_every(g, T)) for (s, T, k), g in zip(keys, gammas)]
    res = run_sweep(configs, n_jobs=n_jobs, cache_dir=cache_dir, trace_points=4, progress=progress)
    return pd.DataFrame([{**_labels(s), "T": int(T), "seed": int(k), "gamma": float(g),
                          "mean_sq_grad_norm": float(r.mean_sq_grad_norm), "diverged": bool(r.diverged), "path": r.path}
                         for (s, T, k), g, r in zip(keys, gammas, res.table.itertuples())])


# -- Appendix A.3 with correctors --------------------------------------------------------------

A3_VARIANTS = ("uncompressed", "Top-1", "Top-1 + error feedback", "Top-1 + delta")


def _a3_plan(variant: str) -> Plan:
    return {"uncompressed": Plan(), "Top-1": Plan(backward={2: TopK(1)}),
            "Top-1 + error feedback": Plan(backward={2: ErrorFeedback(TopK(1))}),
            "Top-1 + delta": Plan(backward={2: DeltaCompression(TopK(1))})}[variant]


def a3_scan(gammas, steps: int, offset: float = 1e-6) -> pd.DataFrame:
    """Appendix A.3 (both settings of Figure 9: A, β) over ``gammas``: the spectral radius of the
    uncompressed iteration and the fate (:func:`fbsgd.studies.counterexamples.study.fate`) of ‖w₁‖ for each
    variant, all started from w₁ = (1, 1 + offset), w₂ = 0."""
    rows = []
    for name, (A, _, beta) in PAPER_SETTINGS.items():
        for g in gammas:
            radius = spectral_radius(topk_iteration_matrix(A, g, beta))
            for variant in A3_VARIANTS:
                opt = HeavyBall(g, beta) if beta else SGD(g)
                with np.errstate(all="ignore"):
                    ws = descend(topk_net(A), np.ones((1, 2)), np.array([1.0, 1.0 + offset, 0.0, 0.0]), opt, steps,
                                 _a3_plan(variant))
                norms = np.linalg.norm(ws[:, :2], axis=1)
                rows.append(dict(setting=name, beta=float(beta), gamma=float(g), radius_uncompressed=radius,
                                 stable_uncompressed=bool(radius < 1), variant=variant, final_norm=float(norms[-1]),
                                 fate="diverges" if len(norms) < steps + 1 else fate(norms)))
    return pd.DataFrame(rows)


def figure9_radii() -> pd.DataFrame:
    """The step size, momentum and spectral radius of the uncompressed iteration of each panel of
    the paper's Figure 9 (Appendix A.3): radius < 1 means that panel's step size is stable."""
    rows = [dict(setting=name, gamma=float(g), beta=float(beta),
                 radius=spectral_radius(topk_iteration_matrix(A, g, beta)))
            for name, (A, g, beta) in PAPER_SETTINGS.items()]
    return pd.DataFrame(rows).assign(stable=lambda d: d.radius < 1)
