"""The runs of the correctors chapter: Section 7's logistic regression with compressed or
noisy messages, plain and corrected, through :func:`fbsgd.optimizers.train` (the compiled
engine runs only memoryless uniform / rounding / bit-flip kinds).

:class:`LogisticChainGradient`  the perturbed passes (5a)–(5c) of the two-operator chain
    f₁ = −y hᵀw, f₂ = softplus, written out for this chain: the same numbers as
    :class:`fbsgd.optimizers.PassGradient` with the same plan and seed (tested), about
    five times faster.
:func:`compression_settings`, :func:`debias_settings`   the configurations (tidy rows).
:func:`gamma_scan`   stable gradient norm per (setting, γ, seed), as in Figure 4.
:func:`rate_scan`    (1/T) Σ_t ‖∇f(w_t)‖² per (setting, T, seed) with γ = c/√T (Remark 1).
:func:`a3_scan`      Appendix A.3's Top-1 example with the correctors, per (setting, γ).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import expit

from fbsgd import rng
from fbsgd.correctors import DeltaCompression, SecondOrderDebias, UniformDebias
from fbsgd.studies.counterexamples.study import PAPER_SETTINGS, fate, spectral_radius, topk_iteration_matrix, topk_net
from fbsgd.metrics import drift_ratio, ewma
from fbsgd.optimizers import SGD, AddNoise, HeavyBall, descend, train
from fbsgd.perturbations import ErrorFeedback, Plan, RandK, Round, TopK, zero_mean_uniform
from fbsgd.problems import LogisticRegression
from fbsgd.studies.rates.schedules import FLOW_TIME
from fbsgd.engine.sweeps import stable_summary

__all__ = ["LogisticChainGradient", "compression_settings", "debias_settings", "run_stable", "run_rate",
           "gamma_scan", "rate_scan", "a3_scan", "figure9_radii", "problem"]

NOISE_STD = 1e-3  # the sampling noise ξ_t ~ N(0, NOISE_STD² I) of Section 7


@lru_cache(maxsize=4)
def problem(d: int = 10, M: int = 2000, rho: float = 0.001, regularizer: str = "nonconvex", data_seed: int = 0):
    return LogisticRegression.generate(d=d, M=M, rho=rho, regularizer=regularizer, data_seed=data_seed)


@dataclass(frozen=True)
class LogisticChainGradient:
    """The perturbed passes of eq. (5) for f₁ = −y hᵀw, f₂ = ln(1 + e^{f₁}) on rows [h, y]:
    z̃ = P_f(−y hᵀw) (forward[1]), ṽ = P_b(σ(z̃)) (backward[2]), gradient = mean of −y h ṽ."""

    plan: Plan

    def init(self, seed: int):
        return self.plan.init(seed)

    def __call__(self, w, x, state):
        d = x.shape[1] - 1
        a = x[:, :d] * x[:, d:]
        z, state = self.plan.perturb("forward", 1, -(a @ w)[:, None], state)
        v, state = self.plan.perturb("backward", 2, expit(z), state)
        return -(a * v).mean(axis=0), state


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
    second-order and the exact de-biasing of the backward message."""
    rows = []
    for s in sigma_fs:
        noise = zero_mean_uniform(s, d)
        for corr, fix in (("plain", None), ("second-order", SecondOrderDebias.for_noise(noise)),
                          ("exact", UniformDebias.for_noise(noise))):
            plan = Plan(forward={1: noise}, backward={2: fix} if fix is not None else {})
            rows.append(dict(part="debias", place="forward", perturbation=f"uniform σ_f = {s:g}", corrector=corr,
                             sigma_f=float(s), plan=plan))
    return rows


def baseline_setting() -> dict:
    return dict(part="baseline", place="none", perturbation="none", corrector="none", plan=Plan())


# -- one run -----------------------------------------------------------------------------------

def _train(plan, gamma, seed, T, every, prob):
    opt = AddNoise(SGD(gamma), NOISE_STD, rng.derive_key("fbsgd.correctors.xi", int(seed)))
    reg = lambda w: prob.rho * prob.regularizer.gradient(w)
    with np.errstate(all="ignore"):
        return train(LogisticChainGradient(plan), np.zeros(prob.d), opt, T, prob.data, seed=int(seed),
                     regularizer_grad=reg, metrics={"g": lambda w: float(np.linalg.norm(prob.gradient(w)))},
                     record_every=every)


def run_stable(plan, gamma: float, seed: int, T: int, metric_every: int = 10, beta: float = 0.99) -> dict:
    """Stable gradient norm (mean EWMA of ‖∇f‖ over the last ⌊T/2⌋ iterations, Section 7.1) of one run,
    and its drift (:func:`fbsgd.metrics.drift_ratio`: has the run settled?)."""

    run = _train(plan, gamma, seed, T, metric_every, problem())
    if run.diverged:
        return dict(stable_grad_norm=float("nan"), drift=float("nan"), diverged=True)
    trace = ewma(run["g"][:-1], beta, metric_every)
    stable, _ = stable_summary(trace, T, metric_every)
    return dict(stable_grad_norm=stable, drift=drift_ratio(trace), diverged=False)


def run_rate(plan, T: int, seed: int, c: float) -> dict:
    """(1/T) Σ_t ‖∇f(w_t)‖² with γ = c/√T, from every k-th iterate, k = max(1, ⌊FLOW_TIME/γ⌋)
    (as :mod:`fbsgd.studies.rates.schedules` samples it)."""
    gamma = c / np.sqrt(T)
    every = max(1, min(int(FLOW_TIME / gamma), T // 2))
    run = _train(plan, gamma, seed, T, every, problem())
    g = run["g"][:-1]
    return dict(gamma=gamma, mean_sq_grad_norm=float(np.mean(g**2)) if not run.diverged else float("nan"),
                diverged=bool(run.diverged))


def _labels(s):
    return {k: v for k, v in s.items() if k != "plan"}


def _parallel(tasks, n_jobs):
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(f)(*args) for f, args in tasks)


def gamma_scan(settings, gammas, seeds, T: int, n_jobs: int = -1) -> pd.DataFrame:
    """One row per (setting, γ, seed): the stable gradient norm after T iterations."""
    keys = [(s, g, k) for s in settings for g in gammas for k in seeds]
    out = _parallel([(run_stable, (s["plan"], g, k, T)) for s, g, k in keys], n_jobs)
    return pd.DataFrame([{**_labels(s), "gamma": float(g), "seed": int(k), "T": int(T), **r}
                         for (s, g, k), r in zip(keys, out)])


def rate_scan(settings, horizons, seeds, c: float, n_jobs: int = -1) -> pd.DataFrame:
    """One row per (setting, T, seed): (1/T) Σ ‖∇f(w_t)‖² under γ = c/√T."""
    keys = [(s, T, k) for s in settings for T in horizons for k in seeds]
    out = _parallel([(run_rate, (s["plan"], T, k, c)) for s, T, k in keys], n_jobs)
    return pd.DataFrame([{**_labels(s), "T": int(T), "seed": int(k), **r} for (s, T, k), r in zip(keys, out)])


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
