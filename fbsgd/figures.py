"""Plotting helpers.  They read arrays or tidy tables; they never run experiments."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

__all__ = ["chain_diagram", "band", "style", "stable_norm_vs_gamma", "trajectories", "perturbation_panels", "interval_panels"]


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


def _geo(x):
    from .section7_verdicts import geometric_mean

    return geometric_mean(x)


def stable_norm_vs_gamma(ax, table, level_col: str = "level", order=None, predictions=None, title=None):
    """Stable gradient norm against γ, one line per level: geometric mean over
    seeds with a min–max band; diverged runs as red crosses on the top edge;
    γ → 0 predictions as short dotted lines with a triangle left of the grid
    (omitted when they are more than 100 times below every measured value)."""
    order = order or list(dict.fromkeys(table[level_col]))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    gmin, gmax = table.gamma.min(), table.gamma.max()
    top = table.stable_grad_norm.max()
    shown_floor = 1e-2 * table.stable_grad_norm.min()  # predictions below this are "zero" for the picture
    any_div = False
    for i, level in enumerate(order):
        g = table[table[level_col] == level]
        base = level == "standard SGD"
        colour = "k" if base else colours[i % len(colours)]
        ok = g[~g.diverged]
        stats = ok.groupby("gamma").stable_grad_norm.agg([_geo, "min", "max"]).reset_index()
        ax.loglog(stats.gamma, stats["_geo"], "o-" if not base else "s--", ms=3.5, lw=1.3, color=colour, label=level)
        ax.fill_between(stats.gamma, stats["min"], stats["max"], color=colour, alpha=0.15, lw=0)
        div = g[g.diverged]
        if len(div):
            any_div = True
            ax.plot(div.gamma, np.full(len(div), top * 1.6), "x", color="red", ms=7, mew=1.8)
        if predictions is not None and level in predictions and np.isfinite(predictions[level]) and predictions[level] > shown_floor:
            y = predictions[level]
            ax.plot([gmin / 4, gmin / 1.3], [y, y], ":", color=colour, lw=1.6)
            ax.plot([gmin / 4], [y], "<", color=colour, ms=5)
    if any_div:
        ax.plot([], [], "x", color="red", label="diverged run")
    ax.set_xlim(gmin / 5, gmax * 1.5)
    ax.set_xlabel(r"step size $\gamma$")
    ax.set_ylabel("stable gradient norm")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def trajectories(ax, traces, table, select, label_col: str = "gamma", title=None):
    """EWMA of ‖∇f(w_t)‖ against t for the runs in ``select`` (a table subset),
    one line per value of ``label_col``: geometric mean over seeds with a min–max band."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (value, g) in enumerate(select.groupby(label_col)):
        curves = [traces[traces.config_id == cid].sort_values("t") for cid in g.config_id]
        t = curves[0].t.to_numpy()
        Y = np.array([c.ewma.to_numpy() for c in curves if len(c) == len(t)])
        with np.errstate(divide="ignore", invalid="ignore"):
            mid = np.exp(np.nanmean(np.log(Y), axis=0))
        ax.loglog(t + 1, mid, color=colours[i % len(colours)], lw=1.2, label=f"{label_col} = {value:g}" if label_col != "gamma" else rf"$\gamma = {value:g}$")
        ax.fill_between(t + 1, np.nanmin(Y, axis=0), np.nanmax(Y, axis=0), color=colours[i % len(colours)], alpha=0.15, lw=0)
    ax.set_xlabel("iteration $t$")
    ax.set_ylabel(r"EWMA of $\|\nabla f(w_t)\|$")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def perturbation_panels(table, slopes, panels=(("left", r"forward perturbations ($\sigma_b = 0$)"),
                                                ("right", r"backward perturbations ($\sigma_f = 0$)"))):
    """Figures 4 and 5: one :func:`stable_norm_vs_gamma` panel per (panel label, title), each with
    standard SGD and the γ → 0 predictions of ``slopes`` (:func:`fbsgd.experiments.slopes_with_predictions`)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=True, squeeze=False)
    preds = dict(zip(slopes.level, slopes.predicted_limit))
    for ax, (panel, title) in zip(axes[0], panels):
        order = ["standard SGD"] + list(slopes[slopes.panel == panel].level)
        stable_norm_vs_gamma(ax, table[table.panel.isin([panel, "baseline"])], order=order, predictions=preds, title=title)
        ax.legend(fontsize=7.5)
    fig.tight_layout()
    return fig


def interval_panels(table, slopes, sigma_f_panels, intervals):
    """Figures 7 and 8: one panel per σ_f, one line per Δt (levels "Δt = k"), standard SGD and the
    γ → 0 predictions of ``slopes`` (:func:`fbsgd.experiments.slopes_with_predictions`)."""
    from .experiments import interval_labels

    table, slopes = interval_labels(table), interval_labels(slopes)
    fig, axes = plt.subplots(1, len(sigma_f_panels), figsize=(5 * len(sigma_f_panels), 4), sharey=True, squeeze=False)
    for ax, sf in zip(axes[0], sigma_f_panels):
        panel = f"sigma_f={sf:g}"
        part = slopes[slopes.panel.isin([panel, "baseline"])]
        stable_norm_vs_gamma(ax, table[table.panel.isin([panel, "baseline"])],
                             order=["standard SGD"] + [f"Δt = {i}" for i in intervals],
                             predictions=dict(zip(part.level, part.predicted_limit)), title=rf"$\sigma_f = {sf:g}$")
        ax.legend(fontsize=7.5)
    fig.tight_layout()
    return fig
