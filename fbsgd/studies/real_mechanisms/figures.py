"""Figures of the real-mechanisms chapter: Figure 4 with mechanisms, growth with depth, the bit-flip atlas."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from fbsgd.book.figures import LEGEND_PT, PAGE_WIDTH, legend_outside
from fbsgd.studies.section7.figures import stable_norm_vs_gamma

__all__ = ["mechanism_panels", "depth_panels", "atlas_map", "power_label"]

_CLASSES = {"recovered": 0, "plateau": 1, "diverged": 2, "?": 3}  # "?": undecided (too few seeds share a class)


def power_label(x: float) -> str:
    """A positive number as a mathtext tick label like the log axes of the other figures:
    $10^{-6}$, or $2\\times 10^{-6}$ when it is not a power of ten."""
    e = int(np.floor(np.log10(x) + 1e-9))
    m = round(x / 10.0 ** e, 6)
    return f"$10^{{{e}}}$" if m == 1 else f"${m:g}\\times 10^{{{e}}}$"


OFF_SCALE = 1e-2  # a prediction below this × the smallest measured norm is marked on the bottom edge


def mechanism_panels(table, slopes, places=("forward", "backward")):
    """One panel per place: every mechanism's S(γ) with standard SGD, and every curve's γ → 0 prediction
    (``slopes.predicted_limit``, :func:`fbsgd.studies.real_mechanisms.study.attach_predictions`): a dotted
    line ending in a triangle left of the grid in the curve's colour, as in the Section 7 figures; a
    prediction below the panels' range (under OFF_SCALE × the smallest measured norm) is a triangle
    pointing down on the bottom edge, so no curve's prediction is left out."""
    fig, axes = plt.subplots(len(places), 1, figsize=(PAGE_WIDTH, 3.8 * len(places)), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    t = table.assign(level=np.where(table.panel == "baseline", "standard SGD", table.figure))
    measured = table[~table.diverged].stable_grad_norm
    shown = OFF_SCALE * measured.min()
    preds = slopes[slopes.place.isin(places)].predicted_limit
    bottom = min(measured.min(), np.min(preds[preds >= shown].to_numpy(), initial=np.inf)) / 2
    for ax, place in zip(axes[:, 0], places):
        part = slopes[slopes.place == place]
        order = ["standard SGD"] + list(part.level)
        stable_norm_vs_gamma(ax, t[t.panel.isin([place, "baseline"])], order=order, title=f"{place} message rounded")
        _predictions(ax, order, dict(zip(part.level, part.predicted_limit)), table.gamma.min(), shown, bottom)
        legend_outside(ax)
    axes[0, 0].set_ylim(bottom=bottom)
    for ax in axes[:-1, 0]:  # the x label once, under the bottom panel
        ax.set_xlabel("")
    return fig


def _predictions(ax, order, predictions, gmin, shown, bottom):
    """Each level's prediction in the colour :func:`fbsgd.studies.section7.figures.stable_norm_vs_gamma`
    gave it (its place in ``order``): on scale a dotted line and a triangle at γ_min/4, off scale a
    triangle pointing down just above ``bottom`` (spread along γ so they stay apart)."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    off = 0
    for i, level in enumerate(order):
        y = predictions.get(level)
        if y is None or not np.isfinite(y):
            continue
        colour = colours[i % len(colours)]
        if y >= shown:
            ax.plot([gmin / 4, gmin / 1.3], [y, y], ":", color=colour, lw=1.6)
            ax.plot([gmin / 4], [y], "<", color=colour, ms=5)
        else:
            ax.plot([gmin / 4 * 10 ** (0.06 * off)], [bottom * 1.25], "v", color=colour, ms=6, clip_on=False)
            off += 1
    ax.plot([], [], ":", marker="<", ms=5, color="0.4", label=r"$\gamma \to 0$ prediction")
    if off:
        ax.plot([], [], "v", ms=6, color="0.4", label="prediction below the axis")


def depth_panels(comparable, stable, optimizers):
    """One row per optimizer: left, the relative gradient error at comparable points against N
    (``comparable``: :func:`fbsgd.studies.real_mechanisms.deep_chain.comparable_table`; markers: geometric
    mean over seeds, bars: the range over seeds); right, the stable norm over the clean run's (``stable``)."""
    fig, axes = plt.subplots(len(optimizers), 2, figsize=(PAGE_WIDTH, 2.9 * len(optimizers) + 0.8), sharex=True,
                             squeeze=False, layout="constrained")
    for j, opt in enumerate(optimizers):
        c = comparable[(comparable.optimizer == opt) & (comparable.place != "none")]
        for lab, g in c.groupby("label", sort=False):
            style = "o-" if "forward" in lab else "s--"
            y = g.relative_gradient_error.to_numpy()
            axes[j, 0].errorbar(g.N, y, yerr=[y - g.error_low.to_numpy(), g.error_high.to_numpy() - y], fmt=style, ms=4,
                                capsize=2, label=lab)
            axes[j, 0].set_yscale("log")
        s = stable[(stable.optimizer == opt) & (stable.place != "none")]
        for lab, g in s.groupby("label", sort=False):
            style = "o-" if "forward" in lab else "s--"
            axes[j, 1].plot(g.N, g.over_clean, style, ms=4, label=lab)
        name = {"sgd": "SGD", "heavyball": "heavy-ball", "adam": "Adam"}.get(opt, opt)
        axes[j, 0].set_title(f"{name}: gradient error at the common loss level", fontsize=10)
        axes[j, 1].set_title(f"{name}: stable norm", fontsize=10)
        axes[j, 1].axhline(1.0, color="k", lw=0.8)
        axes[j, 0].set_ylabel(r"$E\|\tilde u - u\|^2 / \|u\|^2$")
        axes[j, 1].set_ylabel("stable norm / clean")
        for ax in axes[j]:
            ax.set_xscale("log", base=2)
    for ax in axes[-1]:
        ax.set_xlabel("layers N")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=2, fontsize=LEGEND_PT)
    return fig


def atlas_map(cells, boundary_rates):
    """One map per place: class of each (γ, rate) cell; dashed: Table 1's boundary rate (``boundary_rates[place]``)."""
    from matplotlib.colors import ListedColormap

    places = list(dict.fromkeys(cells.place))
    fig, axes = plt.subplots(len(places), 1, figsize=(PAGE_WIDTH, 3.4 * len(places)), sharex=True, squeeze=False,
                             layout="constrained")
    cmap = ListedColormap(["#8fd694", "#f2c14e", "#d1495b", "#d0d7de"])
    for ax, place in zip(axes[:, 0], places):
        c = cells[cells.place == place]
        gam, rates = np.sort(c.gamma.unique()), np.sort(c.rate.unique())
        grid = c.pivot(index="rate", columns="gamma", values="cls").loc[rates, gam].replace(_CLASSES).to_numpy(float)
        ax.imshow(grid, origin="lower", cmap=cmap, vmin=0, vmax=3, aspect="auto")
        for (i, k) in zip(*np.nonzero(grid == _CLASSES["?"])):
            ax.text(k, i, "?", ha="center", va="center", fontsize=11, color="0.25")
        ax.set_xticks(range(len(gam)), [f"{g:g}" for g in gam])
        ax.set_yticks(range(len(rates)), [power_label(r) for r in rates])
        y = np.interp(np.log10(boundary_rates[place]), np.log10(rates), np.arange(len(rates)), left=-0.5, right=len(rates) - 0.5)
        ax.axhline(y, color="k", ls="--", lw=1.5, label=r"Table 1: $Q = T^{a}$")
        ax.set_title(f"exponent flips, {place} pass", fontsize=10)
        ax.set_ylabel("flip rate per bit")
    axes[-1, 0].set_xlabel(r"step size $\gamma$")
    present = [name for name, i in _CLASSES.items() if (cells.cls == name).any()]  # only classes that occur
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(_CLASSES[name])) for name in present] + [axes[0, 0].lines[0]]
    words = ["undecided (?)" if name == "?" else name for name in present]
    axes[0, 0].legend(handles, words + [r"Table 1: $Q = T^{a}$"], loc="upper left", bbox_to_anchor=(1.02, 1.0),
                      borderaxespad=0.0, fontsize=LEGEND_PT)
    return fig
