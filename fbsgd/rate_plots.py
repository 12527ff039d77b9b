"""Figures of the Sections 5–6 chapters used more than once: the convergence metric against T."""
from __future__ import annotations

import matplotlib.pyplot as plt

__all__ = ["CASE_COLOURS", "colour_of", "metric_panels"]

CASE_COLOURS = {"forward, zero-mean": "C0", "backward, zero-mean": "C2", "backward, biased": "C3"}


def colour_of(name, i: int, n: int):
    """Black for standard SGD, the case's colour for a named case, else a viridis shade (cut at 0.8,
    before viridis turns yellow and vanishes on white)."""
    if name == "standard SGD":
        return "k"
    for prefix, col in CASE_COLOURS.items():
        if str(name).startswith(prefix):
            return col
    return plt.cm.viridis(0.8 * i / max(1, n - 1))


def _style(name) -> str:
    if name == "standard SGD":
        return "s--"
    if "as allowed" in str(name):
        return "^-"
    return "v:" if "half as fast" in str(name) else "o-"


def metric_panels(df, key: str, order, geos=("nonconvex", "pl")):
    """One panel per geometry: mean over seeds of ``convergence_metric`` against T (band: range
    over seeds), one line per value of column ``key`` in ``order``.  Returns the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.6))
    for ax, geo in zip(axes, geos):
        part = df[df.geometry == geo]
        for i, name in enumerate(order):
            sub = part[part[key] == name]
            if not len(sub):
                continue
            st = sub.groupby("T").convergence_metric.agg(["mean", "min", "max"]).reset_index()
            col = colour_of(name, i, len(order))
            ax.loglog(st["T"], st["mean"], _style(name), color=col, ms=3.5, lw=1.2, label=name if geo == geos[0] else None)
            ax.fill_between(st["T"], st["min"], st["max"], color=col, alpha=0.12, lw=0)
        ax.set_xlabel("horizon $T$")
        ax.set_ylabel(r"mean of $\|\nabla\ell(w_t)\|^2$ over $t<T$" if geo == "nonconvex" else r"$\ell(w_T) - \ell^*$")
        ax.set_title(r"non-convex, $\gamma = c/\sqrt{T}$" if geo == "nonconvex" else r"PL, $\gamma = c\,\ln T/T$", fontsize=10)
    ncol = 3 if len(order) > 4 else 2
    fig.legend(loc="lower center", ncol=ncol)
    fig.tight_layout(rect=(0, 0.04 + 0.06 * -(-len(order) // ncol), 1, 1))  # room for the legend's rows
    return fig
