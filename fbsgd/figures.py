"""Plotting helpers.  They read arrays or tidy tables; they never run experiments."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

__all__ = ["chain_diagram", "band", "style"]


def style():
    plt.rcParams.update({
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "font.size": 10,
    })


def _arrow(ax, p, q, colour, style="-|>", lw=1.4, ls="-"):
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=12, color=colour, lw=lw, linestyle=ls))


def chain_diagram(n_shown: int = 3, ax=None):
    """Figure 1 of the paper redrawn: the forward pass left to right with δ_i
    added to each output, the backward pass right to left with ε_i added to each
    intermediate gradient, and the weight gradients ũ_i leaving each operator."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.6))
    fwd, bwd, pert, grad = "#1f5fa8", "#b3541e", "#7a1fa2", "#2e7d32"
    labels = [f"$f_{{{i}}}$" for i in range(1, n_shown)] + ["$f_N$"]
    xs = np.arange(n_shown) * 3.0
    yf, yb = 2.0, 0.0
    for k, (x, lab) in enumerate(zip(xs, labels)):
        ax.add_patch(FancyBboxPatch((x - 0.55, yb - 0.1), 1.1, 2.2, boxstyle="round,pad=0.05", fc="#f4f4f4", ec="#555"))
        ax.text(x, 1.0, lab, ha="center", va="center", fontsize=15)
        idx = "N" if k == n_shown - 1 else str(k + 1)
        ax.text(x, -1.0, rf"$\tilde u_{{{idx}}} = \nabla_2 f_{{{idx}}}^\top \tilde v_{{{idx}}}$", ha="center", color=grad, fontsize=10)
        _arrow(ax, (x, yb - 0.15), (x, -0.7), grad)
        ax.text(x, 3.05, rf"$w_{{{idx}}}$", ha="center", fontsize=11)
        _arrow(ax, (x, 2.9), (x, 2.2), "#555")
    ax.text(xs[0] - 2.2, yf, "$y_0 = x$", ha="center", va="center", fontsize=11)
    _arrow(ax, (xs[0] - 1.6, yf), (xs[0] - 0.6, yf), fwd)
    for k in range(n_shown - 1):
        a, b = xs[k] + 0.6, xs[k + 1] - 0.6
        mid = 0.5 * (a + b)
        gap = "" if k < n_shown - 2 else r"$\cdots$"
        i = k + 1
        # forward: y_i = f_i(...) + δ_i
        _arrow(ax, (a, yf), (mid - 0.2, yf), fwd)
        _arrow(ax, (mid + 0.2, yf), (b, yf), fwd)
        ax.add_patch(plt.Circle((mid, yf), 0.2, fc="white", ec=pert, lw=1.4))
        ax.text(mid, yf, "+", ha="center", va="center", color=pert, fontsize=11)
        ax.text(mid, yf + 0.55, rf"$\delta_{{{i}}}$", ha="center", color=pert, fontsize=12)
        _arrow(ax, (mid, yf + 0.42), (mid, yf + 0.22), pert, lw=1.2)
        ax.text(mid - 0.75, yf - 0.32, rf"$\tilde y_{{{i}}}$", ha="center", color=fwd, fontsize=10)
        # backward: v_i = ∇₁f_{i+1}ᵀ v_{i+1} + ε_{i+1}
        _arrow(ax, (b, yb + 0.4), (mid + 0.2, yb + 0.4), bwd)
        _arrow(ax, (mid - 0.2, yb + 0.4), (a, yb + 0.4), bwd)
        ax.add_patch(plt.Circle((mid, yb + 0.4), 0.2, fc="white", ec=pert, lw=1.4))
        ax.text(mid, yb + 0.4, "+", ha="center", va="center", color=pert, fontsize=11)
        nxt = "N" if k == n_shown - 2 else str(i + 1)
        ax.text(mid, yb - 0.3, rf"$\varepsilon_{{{nxt}}}$", ha="center", color=pert, fontsize=12)
        _arrow(ax, (mid, yb - 0.02), (mid, yb + 0.18), pert, lw=1.2)
        ax.text(mid + 0.75, yb + 0.68, rf"$\tilde v_{{{i}}}$", ha="center", color=bwd, fontsize=10)
        if gap:
            ax.text(mid, 1.0, gap, ha="center", va="center", fontsize=16)
    ax.text(xs[-1] + 1.5, yf, r"$\mathcal{F}(x;\mathbf{w})$", ha="left", va="center", fontsize=12)
    _arrow(ax, (xs[-1] + 0.6, yf), (xs[-1] + 1.4, yf), fwd)
    ax.text(xs[-1] + 1.5, yb + 0.4, r"$v_N = 1$", ha="left", va="center", fontsize=11, color=bwd)
    ax.set_xlim(xs[0] - 2.8, xs[-1] + 2.6)
    ax.set_ylim(-1.4, 3.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.text(xs[0] - 2.7, 2.75, "forward pass (5a) →", color=fwd, fontsize=10, va="top")
    ax.text(xs[0] - 2.7, 0.2, "← backward pass (5b)", color=bwd, fontsize=10, va="top")
    return ax


def band(ax, x, samples, label=None, colour=None, log=False, **kw):
    """Median line with a min–max band over the rows of ``samples`` (e.g. seeds)."""
    samples = np.atleast_2d(np.asarray(samples, dtype=float))
    if log:
        mid = np.exp(np.nanmean(np.log(samples), axis=0))
    else:
        mid = np.nanmedian(samples, axis=0)
    line, = ax.plot(x, mid, label=label, color=colour, **kw)
    if samples.shape[0] > 1:
        ax.fill_between(x, np.nanmin(samples, axis=0), np.nanmax(samples, axis=0), color=line.get_color(), alpha=0.2, lw=0)
    return line
