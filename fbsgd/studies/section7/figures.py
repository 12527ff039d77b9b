"""The Section 7 figures: stable gradient norm against the step size, trajectories, and the
panels of Figures 3–8.  They read the sweeps' tidy tables; they never run experiments."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from fbsgd.book.figures import MARKERS, PAGE_WIDTH, legend_outside, tex_label
from fbsgd.studies.section7.design import interval_labels
from fbsgd.studies.section7.verdicts import geometric_mean

__all__ = ["stable_norm_vs_gamma", "trajectories", "perturbation_panels", "interval_panels", "DODGE"]


def _geo(x):

    return geometric_mean(x)


DODGE = 0.012  # decades of γ between the markers of neighbouring levels


def stable_norm_vs_gamma(ax, table, level_col: str = "level", order=None, predictions=None, title=None,
                         dodge: float = DODGE):
    """Stable gradient norm against γ, one line per level: geometric mean over
    seeds with a min–max band; diverged runs as red crosses on the top edge;
    γ → 0 predictions as short dotted lines with a triangle left of the grid
    (omitted when they are more than 100 times below every measured value).
    Each level is drawn ``dodge`` decades of γ beside the previous one (±0.03 decades,
    about ±7 %, for six levels), so levels that coincide stay visible."""
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
        stats["gamma"] = stats.gamma * 10 ** (dodge * (i - (len(order) - 1) / 2))
        if base:  # on top, dashed with large open squares: levels that coincide with it show beside it
            look = dict(marker="s", ls="--", mfc="none", ms=9, lw=1.2, zorder=5)
        else:  # a marker per level, a little smaller for each later level
            look = dict(marker=MARKERS[i % len(MARKERS)], ls="-", ms=max(4.0, 7.5 - 0.7 * i), lw=1.3,
                        zorder=3 + 0.1 * i, mfc=colour if i % 2 else "none", mew=1.2)
        ax.loglog(stats.gamma, stats["_geo"], color=colour, label=tex_label(level), **look)
        ax.fill_between(stats.gamma, stats["min"], stats["max"], color=colour, alpha=0.12, lw=0)
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
    standard SGD and the γ → 0 predictions of ``slopes`` (:func:`fbsgd.studies.section7.design.slopes_with_predictions`)."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(PAGE_WIDTH, 3.6 * len(panels)), sharex=True, sharey=True, squeeze=False,
                             layout="constrained")
    preds = dict(zip(slopes.level, slopes.predicted_limit))
    for ax, (panel, title) in zip(axes[:, 0], panels):
        order = ["standard SGD"] + list(slopes[slopes.panel == panel].level)
        stable_norm_vs_gamma(ax, table[table.panel.isin([panel, "baseline"])], order=order, predictions=preds, title=title)
        legend_outside(ax)
    _label_bottom_only(axes[:, 0])
    return fig


def _label_bottom_only(axes):
    """Stacked panels that share x: the x label once, under the bottom panel (it would touch the
    title of the panel below otherwise)."""
    for ax in axes[:-1]:
        ax.set_xlabel("")


def interval_panels(table, slopes, sigma_f_panels, intervals):
    """Figures 7 and 8: one panel per σ_f, one line per Δt (levels "Δt = k"), standard SGD and the
    γ → 0 predictions of ``slopes`` (:func:`fbsgd.studies.section7.design.slopes_with_predictions`)."""

    table, slopes = interval_labels(table), interval_labels(slopes)
    fig, axes = plt.subplots(len(sigma_f_panels), 1, figsize=(PAGE_WIDTH, 3.4 * len(sigma_f_panels)), sharex=True,
                             squeeze=False, layout="constrained")
    for ax, sf in zip(axes[:, 0], sigma_f_panels):
        panel = f"sigma_f={sf:g}"
        part = slopes[slopes.panel.isin([panel, "baseline"])]
        stable_norm_vs_gamma(ax, table[table.panel.isin([panel, "baseline"])],
                             order=["standard SGD"] + [f"Δt = {i}" for i in intervals],
                             predictions=dict(zip(part.level, part.predicted_limit)), title=rf"$\sigma_f = {sf:g}$")
        legend_outside(ax)
    _label_bottom_only(axes[:, 0])
    return fig
