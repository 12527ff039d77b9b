"""Figures of the correctors chapter."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import LogLocator, NullFormatter

from fbsgd.book.figures import LEGEND_PT, PAGE_WIDTH, tex_label
from fbsgd.studies.sgd_derivatives.figures import label_decades
from fbsgd.studies.section7.verdicts import geometric_mean

__all__ = ["gamma_panels", "rate_panels"]

_STYLE = {"plain": ("C3", "o"), "error feedback": ("C0", "s"), "delta": ("C2", "^"),
          "stochastic rounding": ("C4", "v"), "second-order": ("C1", "s"), "exact": ("C2", "^")}


def _curve(ax, sub, x, y, **kw):
    m = sub.groupby(x)[y].apply(geometric_mean)
    m = m[np.isfinite(m)]
    if len(m):
        ax.plot(m.index, m.values, **kw)


def _panels(table, x, y, xlabel, ylabel, base_label):
    """One panel per (place, perturbation), two a row at the page width (one panel: the full
    width); standard SGD dashed with open markers on top; one legend for all panels, above them."""
    groups = list(table[table.part != "baseline"].groupby(["place", "perturbation"], sort=False))
    n = max(len(groups), 1)
    cols = min(2, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH, (2.7 if cols > 1 else 3.6) * rows + 0.6),
                             sharex=True, squeeze=False, layout="constrained")
    base = table[table.part == "baseline"]
    seen = {}
    for ax, ((place, pert), sub) in zip(axes.flat, groups):
        for i, (corr, s) in enumerate(sub.groupby("corrector", sort=False)):
            c, mk = _STYLE.get(corr, ("C7", "x"))
            _curve(ax, s, x, y, color=c, marker=mk, ms=5, lw=1.4, zorder=3,
                   mfc=c if i % 2 == 0 else "none", label=corr)
        _curve(ax, base, x, y, color="k", ls="--", marker="o", mfc="none", ms=7, lw=1.2, zorder=6,
               label=base_label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=5))
        ax.xaxis.set_minor_formatter(NullFormatter())
        label_decades(ax.yaxis)
        ax.set_title(tex_label(f"{pert}, {place} message"), fontsize=10)
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside upper center", ncol=min(len(seen), 4),
                   fontsize=LEGEND_PT)
    return fig


def gamma_panels(scan):
    """Stable gradient norm against γ (geometric mean over seeds), one panel per (place, perturbation)."""
    return _panels(scan, "gamma", "stable_grad_norm", r"step size $\gamma$", "stable gradient norm", "standard SGD")


def rate_panels(rates):
    """(1/T) Σ ‖∇f(w_t)‖² against T under γ = c/√T, one panel per (place, perturbation)."""
    return _panels(rates, "T", "mean_sq_grad_norm", "horizon T", r"$\frac{1}{T}\sum_t\|\nabla f(w_t)\|^2$",
                   "standard SGD")
