"""Figures of the formats chapter: the conditional bias of each kind (classes), Figure 4 with scaled formats
(drawn by the real-mechanisms chapter's :func:`fbsgd.studies.real_mechanisms.figures.mechanism_panels`),
and the digits MLP's stable norm against depth."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from fbsgd.book.figures import MARKERS, PAGE_WIDTH, legend_outside
from fbsgd.studies.real_mechanisms.figures import mechanism_panels

__all__ = ["class_panels", "fig4_panels", "digits_panels", "ZERO_SHOWN"]

ZERO_SHOWN = 1e-17  # a conditional bias of zero (to float64 rounding) is drawn at this height


def class_panels(classes):
    """One panel per rounding mode: each kind's largest relative conditional bias ‖E[δ|x]‖/‖x‖ over the
    inputs, one marker per message; filled: the ceil scale rule, open: the OCP rule (NVFP4: the nearest block
    scale) or per-tensor amax; a bias of zero is drawn on the bottom line."""
    modes = ["nearest", "stochastic"]
    kinds = list(dict.fromkeys(classes[classes["mode"] == "stochastic"].kind.str.replace(" stochastic", "")))
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 0.28 * len(kinds) + 1.6), sharey=True, layout="constrained")
    messages = list(dict.fromkeys(classes.message))
    for ax, mode in zip(axes, modes):
        part = classes[classes["mode"] == mode]
        for j, msg in enumerate(messages):
            sub = part[part.message == msg]
            y = [kinds.index(k.replace(f" {mode}", "")) for k in sub.kind]
            x = np.maximum(sub.bias_rel.to_numpy(float), ZERO_SHOWN)
            filled = (sub.rule == "ceil").to_numpy()
            c = f"C{j}"
            ax.scatter(x[filled], np.array(y)[filled] + 0.12 * (j - 1.5), marker=MARKERS[j], color=c, s=22, label=msg)
            ax.scatter(x[~filled], np.array(y)[~filled] + 0.12 * (j - 1.5), marker=MARKERS[j], facecolors="none",
                       edgecolors=c, s=22)
        ax.set_xscale("log")
        ax.axvline(ZERO_SHOWN * 3, color="0.6", lw=0.6, ls=":")
        ax.set_title(f"{mode} rounding")
        ax.set_xlabel(r"$\|\mathbb{E}[\delta\mid x]\|/\|x\|$")
    axes[0].set_yticks(range(len(kinds)))
    axes[0].set_yticklabels(kinds, fontsize=7)
    axes[0].invert_yaxis()
    legend_outside(axes[1])
    return fig


def fig4_panels(table, slopes):
    """Figure 4 with scaled formats: S(γ) per kind, forward and backward, with each curve's γ → 0 prediction."""
    return mechanism_panels(table, slopes)


def digits_panels(summary):
    """One panel per recipe: the stable gradient norm over the clean run's (geometric mean over seeds,
    bars: range over seeds) against the depth N, one line per site (forward, backward, both)."""
    recipes = [r for r in dict.fromkeys(summary.recipe) if r != "none"]
    fig, axes = plt.subplots(1, len(recipes), figsize=(PAGE_WIDTH, 2.8), sharey=True, squeeze=False, layout="constrained")
    for ax, rec in zip(axes[0], recipes):
        for j, site in enumerate(["forward", "backward", "both"]):
            g = summary[(summary.recipe == rec) & (summary.site == site)].sort_values("N")
            if not len(g):
                continue
            y = g.over_clean.to_numpy(float)
            err = np.vstack([y - g.over_clean_low.to_numpy(float), g.over_clean_high.to_numpy(float) - y])
            ax.errorbar(g.N, y, yerr=np.abs(err), marker=MARKERS[j], color=f"C{j}", capsize=2, label=site,
                        ls="-" if site != "both" else "--")
        ax.axhline(1.0, color="k", lw=0.7, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(rec, fontsize=9)
        ax.set_xlabel("hidden layers $N$")
    axes[0, 0].set_ylabel(r"$S / S_{\mathrm{clean}}$")
    legend_outside(axes[0, -1])
    return fig
