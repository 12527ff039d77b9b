"""Figures of the error-propagation chapter (Section 4): one function per figure, each
drawing from the chapter's tables and returning the figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from fbsgd.book.figures import LEGEND_PT, tex_label
from fbsgd.studies.error_propagation.study import NULL_SERIES, RESOLVED_Z, tightness_cases

__all__ = ["depth_figure", "location_figure", "bias_figure", "tightness_figure"]

_STYLES = {"tanh · zero-mean · δ₁": ("C0", "o"), "tanh · non-zero-mean · δ₁": ("C0", "^"),
           "tanh · zero-mean · ε_N": ("C3", "o"), "tanh · non-zero-mean · ε_N": ("C3", "^"),
           "linear · zero-mean · δ₁": ("C2", "s")}


def _tex(text: str) -> str:
    """A series or perturbation name for a legend, its symbols typeset by mathtext
    ("ε_N" would print its underscore): "tanh · zero-mean · ε_N" → "tanh · zero-mean · $\\varepsilon_N$"."""
    return tex_label(str(text).replace("δ₁", "δ_1"))


def _integer_x(*axes):
    """Depths and layer indices are integers: ticks at integers only."""
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def depth_figure(depth, linear_scale: float, tanh_gain: float):
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    for ax, chain in zip(axes, ("linear", "tanh")):
        sub = depth[(depth.chain == chain) & (depth.law == "zero-mean")]
        for (lab, g), c in zip(sub.groupby("label", sort=False), ("C0", "C3")):
            ax.errorbar(g.N, g.amplification, yerr=1.96 * g.mse_se / g.second, fmt="o", ms=4, color=c,
                        label=f"{_tex(lab)}: measured")
            if chain == "linear":
                ax.plot(g.N, g.exact_mse / g.second, "-", color=c, lw=1, alpha=0.7, label=f"{_tex(lab)}: closed form")
        ax.set_yscale("log")
        ax.set_xlabel("depth $N$ (operators)")
        _integer_x(ax)
        ax.set_title(f"linear chain, $s = {linear_scale:g}$" if chain == "linear" else f"tanh chain, $g = {tanh_gain:g}$")
    axes[0].set_ylabel(r"$\mathbb{E}\|\tilde{\mathbf{u}} - \mathbf{u}\|^2 \,/\, \mathbb{E}\|p\|^2$")
    handles, labels = axes[0].get_legend_handles_labels()  # the linear panel has every entry
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=LEGEND_PT)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def location_figure(location):
    fig, axes = plt.subplots(2, 2, figsize=(8, 6.2), sharex="col")
    for j, chain in enumerate(("linear", "tanh")):
        sub = location[location.chain == chain]
        for where, c, m, name in (("forward", "C0", "o", r"forward $\delta_k$"), ("backward", "C3", "s", r"backward $\varepsilon_k$")):
            g = sub[sub["where"] == where]
            axes[0, j].errorbar(g.k, g.amplification, yerr=1.96 * g.mse_se / g.second, fmt=m + "-", ms=4, lw=0.8, color=c, label=name)
            axes[1, j].plot(g.k, g.bound_coefficient, m + "--", ms=4, lw=0.8, color=c,
                            label=r"$C^e_{\delta_k}$ (21)" if where == "forward" else r"$C^e_{\varepsilon_k}$ (21)")
        for ax in axes[:, j]:
            ax.set_yscale("log")
            ax.legend(fontsize=LEGEND_PT)
            _integer_x(ax)
        axes[0, j].set_title(f"{chain} chain, $N = {int(sub.N.iloc[0])}$")
        axes[1, j].set_xlabel("location $k$ of the perturbation")
    axes[0, 0].set_ylabel("measured\n" + r"$\mathbb{E}\|\tilde{\mathbf{u}} - \mathbf{u}\|^2 / \mathbb{E}\|p\|^2$")
    axes[1, 0].set_ylabel("bound's coefficient")
    fig.tight_layout()
    return fig


def bias_figure(bias, sigmas, N: int):
    """Left: squared bias against σ (95 % intervals; null series as open 95 % upper limits), with
    σ⁴ and σ² guides.  Right: estimate / standard error.  One legend below both panels.  The two
    non-zero-mean series nearly coincide, so the forward one is drawn as large open triangles around
    the small filled backward ones."""
    fig, (ax, axz) = plt.subplots(1, 2, figsize=(8, 5.0), gridspec_kw={"width_ratios": [1.5, 1]})
    for name, (c, m) in _STYLES.items():
        g = bias[bias.series == name]
        opened = name == "tanh · non-zero-mean · δ₁"
        inside = name == "tanh · non-zero-mean · ε_N"  # small filled triangles on top of the open ones
        look = (dict(ms=10, mfc="none", mew=1.5, zorder=4) if opened
                else dict(ms=5, zorder=6) if inside else dict(ms=5, zorder=3))
        if name in NULL_SERIES:  # estimates scatter around zero: show the 95% upper limit
            ax.plot(g.sigma, g.bias_sq + 1.96 * g.bias_sq_se, "v", mfc="none", color=c, ms=6,
                    label=f"{_tex(name)}: 95% upper limit")
        else:
            ax.errorbar(g.sigma, g.bias_sq, yerr=1.96 * g.bias_sq_se, fmt=m, color=c, label=_tex(name), **look)
        axz.plot(g.sigma, g.z, m, ls="--" if inside else "-", color=c, lw=0.8, **look)
    s0 = sigmas[0]
    at = lambda name: bias[(bias.series == name) & (bias.sigma == s0)].bias_sq.iloc[0]  # noqa: E731
    grid = np.geomspace(min(sigmas), max(sigmas), 50)
    ax.plot(grid, at("tanh · zero-mean · δ₁") * (grid / s0) ** 4, "k:", lw=1, label=r"$\propto\sigma^4$")
    ax.plot(grid, at("tanh · non-zero-mean · ε_N") * (grid / s0) ** 2, "k--", lw=0.8, label=r"$\propto\sigma^2$")
    ax.set(xscale="log", yscale="log", xlabel=r"perturbation size $\sigma$", ylabel=r"$\|\mathbb{E}[\tilde{\mathbf{u}} - \mathbf{u}]\|^2$",
           title=f"squared bias, $N = {N}$")
    axz.set_xscale("log")
    axz.set_yscale("symlog", linthresh=3)
    axz.axhspan(-1.96, 1.96, color="grey", alpha=0.2, lw=0)
    axz.set(xlabel=r"perturbation size $\sigma$", ylabel="estimate / standard error", title="is the bias resolved?")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=LEGEND_PT)
    fig.tight_layout(rect=(0, 0.25, 1, 1))
    return fig


def tightness_figure(depth, columns=(0, 1, 2, 3)):
    """Measured quantity and bound (top) and the ratio bound / measured (bottom) against depth, one
    column per case of :func:`tightness_cases` listed in ``columns``; the case of a non-zero-mean δ₁
    (index 3) also shows the bound with the constant its proof derives."""
    cases = tightness_cases(depth)
    fig, axes = plt.subplots(2, len(columns), figsize=(4 * len(columns), 6.6), sharex="col", squeeze=False)
    for j, case in enumerate(columns):
        title, sub, meas, bnd = cases[case]
        ax, axr = axes[0, j], axes[1, j]
        zero_at = None
        for (lab, g), c in zip(sub.groupby("label", sort=False), ("C0", "C3")):
            g = g.sort_values("N")
            se = g[meas + "_se"]
            resolved = g[meas] > RESOLVED_Z * se
            gr = g[resolved]
            second = c == "C3"  # open squares, so that a first series at nearly the same values stays visible
            ax.errorbar(gr.N, gr[meas], yerr=1.96 * se[resolved], fmt="s" if second else "o", ms=7 if second else 4,
                        mfc="none" if second else c, color=c, label=f"{_tex(lab)}: measured")
            positive = g[bnd] > 0
            ax.plot(g.N[positive], g[bnd][positive], "--", color=c, lw=1.2, label=f"{_tex(lab)}: bound, printed constants")
            ratio = g[bnd] / g[meas]
            axr.plot(gr.N, ratio[resolved].where(ratio[resolved] > 0), "o-", color=c, ms=4, lw=0.8,
                     label=f"{_tex(lab)}, printed")
            if case == 3:
                ax.plot(g.N, g[bnd + "_derivation"], ":", color="k", lw=1.2, label=f"{_tex(lab)}: bound, derived constants")
                axr.plot(gr.N, (g[bnd + "_derivation"] / g[meas])[resolved], "s:", color="k", ms=3, lw=0.8,
                         label=f"{_tex(lab)}, derived")
                zero = gr.N[g[bnd][resolved] <= 0]
                if len(zero):  # ratio 0, not drawable on the log axis: a cross on the line of ratio 1
                    axr.plot(zero, [1.0] * len(zero), "x", color="C3", ms=7, mew=1.8, zorder=6)
                    zero_at = zero.iloc[0]
        ax.set_yscale("log")
        axr.set_yscale("log")
        axr.axhline(1, color="k", lw=0.8)
        if case == 3 and zero_at is not None:  # the note under the line of ratio 1, where no ratio is
            top = np.log10(axr.get_ylim()[1])
            axr.set_ylim(bottom=10 ** (-0.12 * max(top, 1.0)))
            axr.annotate("printed bound = 0 here", (zero_at, 1), xytext=(7, -3), textcoords="offset points",
                         ha="left", va="top", fontsize=9, color="C3")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=LEGEND_PT)
        axr.set_xlabel("depth $N$")
        _integer_x(ax, axr)
    axes[0, 0].set_ylabel("measured and bound")
    axes[1, 0].set_ylabel("tightness ratio  bound / measured")
    fig.tight_layout()
    return fig
