"""Figures of the counterexamples chapter (Appendix A): one function per figure, each drawing
from the chapter's tables (it runs nothing) and returning the figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from fbsgd.studies.counterexamples import study as C
from fbsgd.book.figures import LEGEND_PT, MARKERS, PAGE_WIDTH, legend_outside

__all__ = ["a1_figure", "a2_figure", "a3_figure", "A2_COLOURS"]


def a1_figure(a1, sizes):
    """A.1: σ'(0) − E[σ'(δ)] against the noise half-width a, per law: closed form (line), Monte
    Carlo with ±2 standard errors (markers) and the small-noise asymptote a²/16 or a²/48 (dotted)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    grid = np.geomspace(min(sizes), max(sizes), 200)
    closed = (C.two_point_slope_bias, C.uniform_slope_bias)
    laws = a1.groupby("law", sort=False)
    for (law, g), exact, small, c in zip(laws, closed, (16, 48), ("C0", "C1")):
        ax.loglog(grid, -exact(grid), color=c, lw=1.2, label=f"{law}: closed form")
        ax.errorbar(g.a, -g.monte_carlo, yerr=2 * g.standard_error, fmt="o", ms=4, color=c,
                    label=f"{law}: Monte Carlo (±2 s.e.)")
        ax.loglog(grid, grid**2 / small, color=c, ls=":", lw=1, label=f"$a^2/{small}$")
    ax.set_ylim(1e-5, 0.5)
    ax.set_xlabel("noise half-width $a$")
    ax.set_ylabel(r"$\sigma'(0) - \mathbb{E}[\sigma'(\delta)]$")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


#: One colour per step size of A.2, hues far apart (no red next to a brown), with a marker each.
A2_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#17becf", "#e377c2", "#7f7f7f")


def _fate(gamma: float) -> str:
    """How x_t = −δ + (1 − 2γ)ᵗ (x₀ + δ) behaves: "" (settles), "oscillates" or "diverges"."""
    q = abs(1 - 2 * gamma)
    return "" if q < 1 else ("oscillates" if q == 1 else "diverges")


def a2_figure(runs, x0: float, delta: float, shown: int = 40):
    """A.2, gradient descent on x² with a constant forward error δ, first ``shown`` iterations.
    Top: x_t (markers: the runs of the core passes; lines: the closed form (55)); a diverging run
    is drawn until it leaves the frame, which is fixed by x₀ and δ.  Bottom: the distance
    |x_t + δ| to the limit −δ on a log axis, where the closed form is the straight line
    |1 − 2γ|ᵗ |x₀ + δ| and the series that share the −δ line above come apart; distances below
    10⁻¹⁰ |x₀ + δ| (zero, or round-off) are not drawn.  Legend labels say which step sizes
    oscillate or diverge."""
    fig, (ax, axd) = plt.subplots(2, 1, figsize=(PAGE_WIDTH, 6.4), sharex=True, layout="constrained",
                                  gridspec_kw={"height_ratios": [1.1, 1]})
    lo, hi = -delta - 2 * abs(x0 + delta), 2 * abs(x0) + 1
    floor = 1e-10 * abs(x0 + delta)
    for i, (g, run) in enumerate(runs.items()):
        run = np.asarray(run[: shown + 1], dtype=float)
        t = np.arange(len(run))
        exact = C.quadratic_forward_closed_form(x0, delta, g, shown)[: len(run)]
        colour, marker = A2_COLOURS[i % len(A2_COLOURS)], MARKERS[i % len(MARKERS)]
        fate = _fate(g)
        label = rf"$\gamma = {g:g}$" + (f" ({fate})" if fate else "")
        # up to the first point outside the frame, so that a diverging line visibly leaves it
        out = np.flatnonzero((run < lo) | (run > hi) | (exact < lo) | (exact > hi))
        keep = slice(0, out[0] + 1) if len(out) else slice(None)
        # lines for γ that settle; for γ ≥ 1 a thin light line (it zig-zags over the frame)
        lw, alpha = (1.5, 0.9) if not fate else (0.8, 0.4)
        ax.plot(t[keep], exact[keep], color=colour, lw=lw, alpha=alpha, zorder=2)
        look = dict(ls="none", marker=marker, ms=4.5, color=colour, mew=1.1, mfc="none" if i % 2 else colour)
        ax.plot(t[keep], run[keep], label=label, zorder=3 + 0.1 * i, **look)
        # distance to −δ: closed form |1 − 2γ|ᵗ |x₀ + δ| and the runs
        dist_exact = abs(1 - 2 * g) ** t.astype(float) * abs(x0 + delta)
        dist_run = np.abs(run + delta)
        axd.semilogy(t, np.where(dist_exact > floor, dist_exact, np.nan), color=colour, lw=1.5,
                     alpha=0.9, zorder=2)
        axd.semilogy(t, np.where(dist_run > floor, dist_run, np.nan), zorder=3 + 0.1 * i, **look)
    ax.axhline(-delta, color="k", ls="--", lw=1.1, label=r"limit $-\delta$", zorder=1)
    ax.axhline(0, color="grey", lw=0.6, zorder=1)
    ax.set_ylim(lo, hi)
    ax.set_ylabel("$x_t$")
    ax.set_title(r"iterates $x_t$ (markers: runs; lines: closed form (55))", fontsize=10)
    axd.set_ylim(bottom=floor)
    axd.set_xlabel("iteration $t$")
    axd.set_ylabel(r"$|x_t + \delta|$")
    axd.set_title(r"distance to $-\delta$ (lines: $|1 - 2\gamma|^t\,|x_0 + \delta|$)", fontsize=10)
    axd.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_outside(ax)
    return fig


def a3_figure(a3_traj, offset: float | None = None):
    """A.3, both panels of the paper's Figure 9: ‖w₁⁽ᵗ⁾‖ per curve (uncompressed from (s, s),
    Top-1 from (s, s), uncompressed from the nudged start).  The two uncompressed runs coincide in
    the momentum panel: the first is drawn first, wide and light, with open circles on top at
    regular steps; the second dashed over it with small filled triangles between the circles.
    ``offset`` (the nudge) is printed as a power of ten in the legend."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.9), sharey=True, layout="constrained")
    for ax, (name, traj) in zip(axes, a3_traj.groupby("setting", sort=False)):
        curves = list(traj.groupby("curve", sort=False))
        every = max(1, int(traj.t.max()) // 12)
        looks = (dict(ls="-", lw=3.0, alpha=0.35, zorder=2),
                 dict(ls="-", lw=1.3, zorder=3),
                 dict(ls="--", lw=1.3, zorder=4, marker="^", ms=4, markevery=(every // 2, every)))
        for k, ((curve, g), look, c) in enumerate(zip(curves, looks, ("C0", "C1", "C2"))):
            y = g.norm_w1.where(g.norm_w1 > 0)
            if offset is not None:
                curve = curve.replace(f"{offset:g}", C.power_of_ten(offset))
            line, = ax.semilogy(g.t, y, color=c, label=curve, **look)
            if k == 0:  # open circles on top, so that the line stays visible under the dashed one
                ax.semilogy(g.t, y, ls="none", marker="o", ms=6, mfc="white", mec=c, mew=1.3,
                            markevery=(0, every), zorder=5)
                line.set_marker("o")  # the legend shows the circle with the wide line
                line.set_markevery([])
                line.set_mfc("white")
                line.set_mec(c)
        gamma, beta = traj.gamma.iloc[0], traj.beta.iloc[0]
        ax.set_title(f"{name}: $\\gamma = {gamma:g}$, $\\beta = {beta:g}$")
        ax.set_xlabel("iteration $t$")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(r"$\|w_1^{(t)}\|$")
    # in the free space under the lines (the uncompressed run from (s, s) is 0 from t = 1 on)
    axes[0].text(0.97, 0.05, "no compression from (s, s):\nexactly 0 after one step", ha="right",
                 va="bottom", fontsize=9, color="C0", transform=axes[0].transAxes)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=LEGEND_PT)
    return fig
