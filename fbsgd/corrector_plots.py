"""Figures of the correctors chapter."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .section7_verdicts import geometric_mean

__all__ = ["gamma_panels", "rate_panels"]

_STYLE = {"plain": ("C3", "o"), "error feedback": ("C0", "s"), "delta": ("C2", "^"),
          "stochastic rounding": ("C4", "v"), "second-order": ("C1", "s"), "exact": ("C2", "^")}


def _curve(ax, sub, x, y, **kw):
    m = sub.groupby(x)[y].apply(geometric_mean)
    m = m[np.isfinite(m)]
    if len(m):
        ax.plot(m.index, m.values, **kw)


def _panels(table, x, y, xlabel, ylabel, base_label):
    groups = list(table[table.part != "baseline"].groupby(["place", "perturbation"], sort=False))
    n = len(groups)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), sharex=True, squeeze=False)
    base = table[table.part == "baseline"]
    for ax, ((place, pert), sub) in zip(axes.flat, groups):
        for corr, s in sub.groupby("corrector", sort=False):
            c, mk = _STYLE.get(corr, ("C7", "x"))
            _curve(ax, s, x, y, color=c, marker=mk, label=corr)
        _curve(ax, base, x, y, color="k", ls="--", label=base_label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{pert}, {place} message", fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def gamma_panels(scan):
    """Stable gradient norm against γ (geometric mean over seeds), one panel per (place, perturbation)."""
    return _panels(scan, "gamma", "stable_grad_norm", r"step size $\gamma$", "stable gradient norm", "standard SGD")


def rate_panels(rates):
    """(1/T) Σ ‖∇f(w_t)‖² against T under γ = c/√T, one panel per (place, perturbation)."""
    return _panels(rates, "T", "mean_sq_grad_norm", "horizon T", r"$\frac{1}{T}\sum_t\|\nabla f(w_t)\|^2$",
                   "standard SGD")
