"""The runs of the correctors chapter: Section 7's logistic regression with compressed or
noisy messages, plain and corrected, on the Section 7 kernel (:class:`fbsgd.engine.sweeps.RunConfig`
run by :func:`fbsgd.engine.sweeps.run_sweep`), at the scale of the Section 7 chapters.

Every run is a RunConfig built from the fields the Section 7 chapters and the real-mechanisms
chapter share (:func:`common`: :func:`fbsgd.studies.section7.design.common` of :data:`SECTION7`,
float32 passes, per-sample draws, the exact gradient norm every 10th iterate, EWMA β = 0.99), so a
configuration both chapters run — standard SGD, plain rounding to a format at either place — has
one cache key (the labels ``figure`` and ``panel`` are not part of it) and is computed once.  The
compressors and correctors sit in RunConfig's ``forward`` (after f₁: Section 7's message z = −y hᵀw)
and ``backward`` (after ∂f₂/∂f₁: the message σ(z̃)) fields; the de-biasing kinds
(:class:`fbsgd.correctors.SecondOrderDebias`, :class:`~fbsgd.correctors.UniformDebias`) act on σ(z̃)
as written, beside the paper's forward noise ``perturbation="forward", sigma_f=σ_f`` (the law
U(−σ_f/√d, σ_f/√d) of :func:`fbsgd.perturbations.zero_mean_uniform`).

:func:`compression_settings`, :func:`debias_settings`, :func:`baseline_setting`   the settings (tidy
    rows: labels, ``mechanism``, the label of a plain mechanism, and ``fields``, the RunConfig fields).
:func:`run_config`   one RunConfig of a setting.
:func:`gamma_scan`   stable gradient norm and its drift per (setting, γ, seed), as in Figure 4.
:func:`rate_scan`    (1/T) Σ_t ‖∇f(w_t)‖² per (setting, T, seed) with γ = c/√T (Remark 1).
:func:`a3_scan`      Appendix A.3's Top-1 example with the correctors, per (setting, γ).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.correctors import DeltaCompression, SecondOrderDebias, UniformDebias
from fbsgd.studies.counterexamples.study import PAPER_SETTINGS, fate, spectral_radius, topk_iteration_matrix, topk_net
from fbsgd.studies.section7.verdicts import trace_drift
from fbsgd.optimizers import SGD, HeavyBall, descend
from fbsgd.perturbations import ErrorFeedback, Plan, RandK, Round, TopK, zero_mean_uniform
from fbsgd.studies.rates.schedules import FLOW_TIME
from fbsgd.studies.real_mechanisms.mechanisms import mechanism_label
from fbsgd.studies.section7 import design as X
from fbsgd.engine.sweeps import RunConfig, run_sweep

__all__ = ["SECTION7", "common", "problem", "run_config", "compression_settings", "debias_settings",
           "baseline_setting", "gamma_scan", "rate_scan", "rate_metric_every", "a3_scan",
           "figure9_radii"]

# the Section 7 chapters' and the real-mechanisms chapter's defaults of the fields they share
# (the parameters cells of chapters/real_mechanisms.ipynb and the Section 7 chapters; a test checks them)
SECTION7 = dict(mode="per_sample", ewma=0.99, metric_every=10, precision="float32", data_seed=0)


def common(T: int) -> dict:
    """The RunConfig fields of every run of horizon T (:func:`fbsgd.studies.section7.design.common`)."""
    return X.common({"T": int(T), **SECTION7})


def problem():
    """Section 7's logistic regression (d = 10, M = 2000, non-convex regularizer, ρ = 0.001) of these runs."""
    return RunConfig(**common(2 * SECTION7["metric_every"])).problem()


def run_config(setting: dict, gamma: float, seed: int, T: int, metric_every: int | None = None) -> RunConfig:
    """The RunConfig of one run of ``setting`` (a row of the settings below); ``figure`` and ``panel``
    label it ("correctors", "<place> <perturbation> <corrector>") and are not part of its key."""
    fields = common(T)
    if metric_every is not None:
        fields["metric_every"] = int(metric_every)
    return RunConfig(figure="correctors", panel=f"{setting['place']} {setting['perturbation']} {setting['corrector']}",
                     gamma=float(gamma), seed=int(seed), **fields, **setting["fields"])


# -- configurations ----------------------------------------------------------------------------

def compression_settings(k: int, fmt: str) -> list[dict]:
    """Top-K, Rand-K (scope "batch", k of M samples) and rounding to ``fmt`` on the forward message z
    and on the backward message σ(z̃), each plain, with error feedback and delta-based; rounding also
    stochastic (the unbiased alternative).  ``mechanism``: the label
    (:func:`fbsgd.studies.real_mechanisms.mechanisms.mechanism_label`) of a plain mechanism (the plain
    compressor, stochastic rounding), "" for a compressor with memory."""
    rows = []
    for place in ("forward", "backward"):
        for pert, C, unbiased in (("Top-K", TopK(k, "batch"), None), ("Rand-K", RandK(k, "batch"), None),
                                  (fmt, Round(fmt, "nearest"), Round(fmt, "stochastic"))):
            variants = [("plain", C, mechanism_label(C)), ("error feedback", ErrorFeedback(C), ""),
                        ("delta", DeltaCompression(C), "")]
            if unbiased is not None:  # rounding has an unbiased alternative
                variants.append(("stochastic rounding", unbiased, mechanism_label(unbiased)))
            for corr, p, label in variants:
                rows.append(dict(part="compression", place=place, perturbation=pert, corrector=corr, mechanism=label,
                                 fields={place: p}))
    return rows


def debias_settings(sigma_fs, d: int) -> list[dict]:
    """Zero-mean forward noise U(−a, a), a = σ_f/√d (Section 7.2.1: ``perturbation="forward"``,
    ``sigma_f``), plain and with the second-order and the exact de-biasing of the backward message σ(z̃)."""
    rows = []
    for s in sigma_fs:
        noise = zero_mean_uniform(s, d)
        for corr, fix in (("plain", None), ("second-order", SecondOrderDebias.for_noise(noise)),
                          ("exact", UniformDebias.for_noise(noise))):
            fields = dict(perturbation="forward", sigma_f=float(s), **({"backward": fix} if fix is not None else {}))
            rows.append(dict(part="debias", place="forward", perturbation=f"uniform σ_f = {s:g}", corrector=corr,
                             mechanism=mechanism_label(noise) if fix is None else "", sigma_f=float(s), fields=fields))
    return rows


def baseline_setting() -> dict:
    return dict(part="baseline", place="none", perturbation="none", corrector="none", mechanism="", fields={})


# -- the scans -----------------------------------------------------------------------------------

def _labels(s):
    return {k: v for k, v in s.items() if k != "fields"}


def gamma_scan(settings, gammas, seeds, T: int, n_jobs: int = -1, cache_dir=True, progress: bool = True) -> pd.DataFrame:
    """One row per (setting, γ, seed): the stable gradient norm after T iterations (mean EWMA of
    ‖∇f‖ over the last ⌊T/2⌋ iterations, Section 7.1: run_sweep's ``stable_grad_norm``), its drift
    (:func:`trace_drift`: has the run settled?), ``diverged``, the engine's ``path`` ("compiled" or
    "reference") and ``config_id`` (the cache key).  One run_sweep call, with run_sweep's default trace
    (that of the other Section 7 chapters, so their runs and these share cache entries)."""
    keys = [(s, g, k) for s in settings for g in gammas for k in seeds]
    configs = [run_config(s, g, k, T) for s, g, k in keys]
    res = run_sweep(configs, n_jobs=n_jobs, cache_dir=cache_dir, progress=progress)
    traces = {cid: (g.t.to_numpy(), g.ewma.to_numpy()) for cid, g in res.traces.sort_values("t").groupby("config_id")}
    every = SECTION7["metric_every"]
    rows = []
    for (s, g, k), r in zip(keys, res.table.itertuples()):
        rows.append({**_labels(s), "gamma": float(g), "seed": int(k), "T": int(T),
                     "stable_grad_norm": float(r.stable_grad_norm),
                     "drift": float("nan") if r.diverged else trace_drift(*traces[r.config_id], T, every),
                     "diverged": bool(r.diverged), "path": r.path, "config_id": r.config_id})
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
    configs = [run_config(s, g, k, T, rate_metric_every(g, T)) for (s, T, k), g in zip(keys, gammas)]
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
