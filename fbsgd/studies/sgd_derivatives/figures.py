"""Figures of the chapter on derivatives of SGD (from the tables of :mod:`fbsgd.studies.sgd_derivatives.study`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from fbsgd.book.figures import LEGEND_PT, PAGE_WIDTH, legend_outside
from fbsgd.studies.sgd_derivatives.study import ZERO, mean_curve

__all__ = ["label_decades", "fraction_colours", "constant_figure", "plateau_figure", "decreasing_figure", "interpolation_figure",
           "error_term_figure"]


def label_decades(axis, max_decades: float = 2.5):
    """A log axis that spans few decades gets labels at 1, 2 and 5 times each power of ten
    (otherwise a single labelled tick may be all it shows); minor labels off."""
    lo, hi = axis.get_view_interval()
    if lo > 0 and np.log10(hi / lo) < max_decades:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(_power_label))
    axis.set_minor_formatter(NullFormatter())


def _power_label(x, pos=None) -> str:
    """10⁻² or 2×10⁻² in mathtext (the look of matplotlib's own log labels)."""
    if x <= 0:
        return ""
    e = int(np.floor(np.log10(x) + 1e-9))
    m = round(x / 10.0 ** e, 6)
    return f"$10^{{{e}}}$" if m == 1 else f"${m:g}\\times 10^{{{e}}}$"


def fraction_colours(fractions):
    return plt.cm.viridis(np.linspace(0.1, 0.85, len(fractions)))


def _exact(exact, **sel):
    sub = exact
    for k, v in sel.items():
        sub = sub[sub[k] == v]
    return sub.set_index("k").exact if len(sub) else None


def constant_figure(curves, exact, plateaus, settings, curvatures, fractions):
    colours = fraction_colours(fractions)
    fig, axes = plt.subplots(len(settings), len(curvatures), figsize=(PAGE_WIDTH, 2.6 * len(settings) + 0.6),
                             squeeze=False, sharex=True, layout="constrained")
    for j, b in enumerate(curvatures):
        for i, s in enumerate(settings):
            ax = axes[i, j]
            for frac, col in zip(fractions, colours):
                mean = mean_curve(curves, "D_err2", setting=s, beta=b, fraction=frac)
                ax.loglog(mean.index[1:], np.maximum(mean.to_numpy()[1:], 1e-300), color=col, lw=1.3, label=f"η = {frac:g}/L")
                ex = _exact(exact, setting=s, beta=b, fraction=frac)
                if ex is not None:
                    ax.loglog(ex.index[1:], np.maximum(ex.to_numpy()[1:], 1e-300), "--", color="k", lw=0.7)
            if plateaus[(plateaus.setting == s) & (plateaus.beta == b)].sigma2_D.iloc[0] < ZERO:
                ax.set_ylim(1e-30, 10)  # interpolation: down to rounding level
            ax.set_title(f"{s.replace('_', ' ')}, β = {b:g}", fontsize=10)
            if i == len(settings) - 1:
                ax.set_xlabel("iteration $k$")
            if j == 0:
                ax.set_ylabel(r"mean $\|D_k - \partial_\theta x^\star\|^2$")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), fontsize=LEGEND_PT)
    return fig


def plateau_figure(plateaus, slopes, settings, curvatures):
    fig, axes = plt.subplots(len(curvatures), 1, figsize=(PAGE_WIDTH, 3.4 * len(curvatures)), squeeze=False, layout="constrained")
    for i, b in enumerate(curvatures):
        ax = axes[i, 0]
        for j, s in enumerate(settings):
            g = plateaus[(plateaus.setting == s) & (plateaus.beta == b)]
            fit = slopes[(slopes.setting == s) & (slopes.beta == b)]
            if not len(fit):
                continue  # no plateau: the interpolation regime
            # settings whose plateaus coincide stay visible: open large markers and wide lines
            # first, filled smaller markers and thin lines on top
            look = dict(marker="os^"[j % 3], ms=9 - 2.5 * (j % 2), mew=1.5, zorder=3 + j,
                        mfc="none" if j % 2 == 0 else f"C{j}")
            ax.loglog(g.eta, g.plateau, ls="none", color=f"C{j}",
                      label=f"{s.replace('_', ' ')}: slope {fit.slope.iloc[0]:.3f}", **look)
            if b == 0:
                ax.loglog(g.eta, g.exact_stationary, "-", color=f"C{j}", lw=2.4 if j == 0 else 1, zorder=2 + j)
                ax.loglog(g.eta, g.poster_bound, ":", color=f"C{j}", lw=2.4 if j == 0 else 1.2, zorder=2 + j)
        label_decades(ax.xaxis)
        label_decades(ax.yaxis)
        ax.set_xlabel(r"step size $\eta$")
        ax.set_ylabel(r"plateau of $\mathbb{E}\|D_k - \partial_\theta x^\star\|^2$")
        ax.set_title(f"β = {b:g}" + (" (lines: exact; dotted: the bound)" if b == 0 else ""), fontsize=10)
        legend_outside(ax)
    return fig


def decreasing_figure(decr, curves, exact):
    betas = list(decr.beta)
    fig, axes = plt.subplots(len(betas), 1, figsize=(PAGE_WIDTH, 3.4 * len(betas)), squeeze=False, layout="constrained")
    for i, row in enumerate(decr.itertuples()):
        ax = axes[i, 0]
        g = curves[curves.beta == row.beta]
        Y = g.pivot(index="seed", columns="k", values="D_err2")
        kk = Y.columns.to_numpy() + row.k0
        mean = Y.mean(axis=0).to_numpy()
        ax.loglog(kk, mean, color="C0", lw=2.6, alpha=0.8, label=r"mean $\|D_k - \partial_\theta x^\star\|^2$")
        ax.fill_between(kk, Y.min(axis=0), Y.max(axis=0), color="C0", alpha=0.12, lw=0)
        ax.loglog(kk, g.groupby("k").x_err2.mean().to_numpy(), color="C2", lw=1, label=r"mean $\|x_k - x^\star\|^2$")
        ex = _exact(exact, beta=row.beta)
        if ex is not None:
            ax.loglog(kk, ex.to_numpy(), "k--", lw=1.1, zorder=5, label="exact expectation (on top)")
        ref = kk[kk >= kk[0] + row.window_start][0]
        y_ref = np.interp(ref, kk, mean)
        ax.loglog(kk, y_ref * (np.log(kk) ** 2 / kk) / (np.log(ref) ** 2 / ref), ":", color="C3", lw=1.2,
                  label=r"$\propto \log^2(k+k_0)/(k+k_0)$")
        ax.loglog(kk, y_ref * ref / kk, ":", color="grey", lw=1.2, label=r"$\propto 1/(k+k_0)$")
        ax.axvline(kk[0] + row.window_start, color="grey", lw=0.6)
        ax.set_xlabel("$k + k_0$")
        label_decades(ax.xaxis)
        ax.set_title(f"{row.setting}, β = {row.beta:g}, $k_0$ = {row.k0:.0f}", fontsize=10)
        legend_outside(ax)
    return fig


def interpolation_figure(rates, curves, exact, fractions, mu_over_L, iters):
    """Left: double interpolation at the smallest β, error against k; right: −log factor per step
    against η, measured, exact (β = 0) and the bound 1 − μη/2.  ``mu_over_L``: μ/L of the problem shown."""
    dbl = rates[(rates.setting == "double_interpolation") & (rates.quantity == "Jacobian")]
    fig, axes = plt.subplots(2, 1, figsize=(PAGE_WIDTH, 7.2), layout="constrained")
    if not len(dbl):
        for ax in axes:
            ax.text(0.5, 0.5, "no double-interpolation rate in this configuration", ha="center", transform=ax.transAxes)
        return fig
    ax = axes[0]
    b_show = curves[curves.setting == "double_interpolation"].beta.min()
    for frac, col in zip(fractions, fraction_colours(fractions)):
        mean = mean_curve(curves, "D_err2", setting="double_interpolation", beta=b_show, fraction=frac)
        ax.semilogy(mean.index, np.maximum(mean.to_numpy(), 1e-300), color=col, lw=1.3, label=f"η = {frac:g}/L")
        ex = _exact(exact, setting="double_interpolation", beta=b_show, fraction=frac)
        if ex is not None:
            ax.semilogy(ex.index, np.maximum(ex.to_numpy(), 1e-300), "k--", lw=0.7)
    ax.set_ylim(1e-30, 10)
    ax.set_xlim(0, min(iters, int(40 / (mu_over_L * min(fractions)))))
    ax.set_xlabel("iteration $k$")
    ax.set_ylabel(r"mean $\|D_k - I\|^2$")
    ax.set_title(f"double interpolation, β = {b_show:g} (dashed: exact)", fontsize=10)
    legend_outside(ax)
    ax = axes[1]
    for i, (b, g) in enumerate(dbl.groupby("beta")):
        ax.loglog(g.eta, -np.log(g.rate), "o", color=f"C{i}", label=f"measured, β = {b:g}")
        ax.loglog(g.eta, -np.log(g.bound_rate), ":", color=f"C{i}", lw=1.2, label=r"bound $1 - \mu\eta/2$" + f", β = {b:g}")
        if b == 0:
            ax.loglog(g.eta, -np.log(g.exact_rate), "-", color="k", lw=1, label="exact spectral radius, β = 0")
    ax.set_xlabel(r"step size $\eta$")
    ax.set_ylabel(r"$-\log$ (factor per step)")
    legend_outside(ax)
    return fig


def error_term_figure(const_curves, decr_curves, decr, beta, setting_const, fractions):
    fig, axes = plt.subplots(3, 1, figsize=(PAGE_WIDTH, 10.5), layout="constrained")
    if beta <= 0:
        for ax in axes:
            ax.text(0.5, 0.5, "no β > 0 among the curvatures: the error term is zero", ha="center", transform=ax.transAxes,
                    fontsize=10)
        return fig
    ax = axes[0]
    for frac, col in zip(fractions, fraction_colours(fractions)):
        sel = dict(setting=setting_const, beta=beta, fraction=frac)
        bias = mean_curve(const_curves, "eps_bias", **sel)
        rms = np.sqrt(mean_curve(const_curves.assign(eps2=const_curves.eps_rms ** 2), "eps2", **sel))
        ax.loglog(bias.index[1:], bias.to_numpy()[1:], color=col, lw=1.2, label=f"η = {frac:g}/L")
        ax.loglog(rms.index[1:], rms.to_numpy()[1:], color=col, lw=0.8, ls="--")
    ax.set_xlabel("iteration $k$")
    ax.set_ylabel(r"$\|\mathbb{E}_k e_{k+1}\|/\eta$ (solid), RMS (dashed)")
    ax.set_title(f"constant steps, {setting_const}, β = {beta:g}", fontsize=10)
    legend_outside(ax)
    ax = axes[1]
    row = decr[decr.beta == beta].iloc[0]
    g = decr_curves[decr_curves.beta == beta].groupby("k")
    kk = np.asarray(list(g.groups)) + row.k0
    bias = g.eps_bias.mean().to_numpy()
    ax.loglog(kk, bias, color="C3", lw=1.3, label=r"bias $\|\mathbb{E}_k e_{k+1}\|/\eta_k$")
    ax.loglog(kk, np.sqrt((decr_curves[decr_curves.beta == beta].assign(e2=lambda t: t.eps_rms ** 2).groupby("k").e2.mean()).to_numpy()),
              color="C3", lw=0.8, ls="--", label="RMS")
    ax.loglog(kk, np.sqrt(g.x_err2.mean().to_numpy()), color="C2", lw=1, label=r"$\|x_k - x^\star\|$ (RMS)")
    ax.loglog(kk, bias[-1] * np.sqrt(kk[-1] / kk), ":", color="grey", label=r"$\propto (k+k_0)^{-1/2}$")
    ax.set_xlabel("$k + k_0$")
    label_decades(ax.xaxis)
    ax.set_title(f"decreasing steps, {row.setting}, β = {beta:g}", fontsize=10)
    legend_outside(ax)
    ax = axes[2]
    groups = list(const_curves[const_curves.beta == beta].groupby("setting", sort=False))
    for j, (s, g) in reversed(list(enumerate(groups))):  # the first setting (its small cloud) drawn last, on top
        for frac in (fractions[0], fractions[-1]):
            h = g[g.fraction == frac]
            dx, bb = np.sqrt(h.x_err2.to_numpy()), h.eps_bias.to_numpy()
            ok = (dx > 1e-12) & (bb > 0)
            ax.loglog(dx[ok], bb[ok], "o^s"[j % 3], ms=2.2, mew=0, color=f"C{j}", alpha=0.45, zorder=3 + len(groups) - j,
                      label=s.replace("_", " ") if frac == fractions[0] else None)
    grid = np.geomspace(1e-6, 1, 10)
    ax.loglog(grid, grid, "k:", lw=0.8, label="slope 1")
    ax.loglog(grid, grid**2, "k--", lw=0.8, label="slope 2")
    ax.set_xlabel(r"$\|x_k - x^\star\|$ (forward deviation $\delta_k$)")
    ax.set_ylabel(r"$\|\mathbb{E}_k e_{k+1}\|/\eta$")
    ax.set_title(f"bias against the deviation, β = {beta:g}", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    names = [s.replace("_", " ") for s, _ in groups]
    order = sorted(range(len(labels)), key=lambda i: names.index(labels[i]) if labels[i] in names else len(names))
    legend_outside(ax, handles=[handles[i] for i in order], labels=[labels[i] for i in order], markerscale=4)
    return fig
