"""Figures of the forward-gradient chapter, and the views of its tables it displays
(:func:`beale_table`, :func:`variance_table`, :func:`floors_table`, :func:`runs_table`:
chosen columns, printed headers and caption, by :func:`fbsgd.book.report.show`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fbsgd.studies.forward_gradients.problems import BEALE_MINIMUM, beale_problem
from fbsgd.book.figures import LEGEND_PT, PAGE_WIDTH, band, legend_outside
from fbsgd.book.report import show

__all__ = ["beale_figure", "variance_figure", "curve_panels", "beale_table", "variance_table", "floors_table",
           "runs_table"]


def beale_figure(point, u, arrows: pd.DataFrame, mc: pd.DataFrame):
    """Left: the Beale landscape with the exact gradient and the averages of ``arrows``;
    right: RMS error of an average of K forward gradients against K (from :func:`beale_study`)."""
    net, _ = beale_problem()
    w = np.asarray(point, dtype=float)
    fig, axes = plt.subplots(2, 1, figsize=(PAGE_WIDTH, 9.0), layout="constrained")
    ax = axes[0]
    X, Y = np.meshgrid(np.linspace(-0.5, 4.0, 300), np.linspace(-1.5, 1.5, 300))
    Z = net.op(2).forward(np.column_stack([X.ravel(), Y.ravel()]), None).reshape(X.shape)
    ax.contourf(X, Y, np.log10(1 + Z), levels=30, cmap="Greys", alpha=0.55)
    ax.contour(X, Y, np.log10(1 + Z), levels=15, colors="grey", linewidths=0.4)
    ax.plot(*BEALE_MINIMUM, "*", color="gold", mec="k", ms=15, label="minimum (3, 0.5)")
    scale = 0.6 / np.linalg.norm(u)
    reds = plt.cm.Reds(np.linspace(0.45, 0.95, len(arrows)))
    for r, c in zip(arrows.itertuples(), reds):  # wide, underneath
        g = np.array([r.g_x, r.g_y])
        ax.annotate("", xy=w + scale * g, xytext=w, zorder=4,
                    arrowprops=dict(arrowstyle="-|>,head_width=0.5,head_length=0.9", color=c, lw=4, alpha=0.85))
        ax.plot([], [], color=c, lw=4, label=f"mean of K = {r.K} forward gradients")
    # the true gradient on top, thin, dashed, open head: visible even where an average covers it
    ax.annotate("", xy=w + scale * u, xytext=w, zorder=6,
                arrowprops=dict(arrowstyle="->,head_width=0.4,head_length=0.8", color="navy", lw=1.6, ls="--"))
    ax.plot([], [], color="navy", lw=1.6, ls="--", label=r"true gradient $\nabla f$ (backward pass), on top")
    ax.plot(*w, "o", color="k", ms=4)
    ax.set_xlabel("$x$")
    ax.set_ylabel("$y$")
    ax.set_title(f"Beale function at ({w[0]:g}, {w[1]:g}); arrows ×{scale:.2f}", fontsize=10)
    legend_outside(ax)
    ax = axes[1]
    ax.errorbar(mc.K, mc.rms, yerr=0.5 * mc.mse_se / mc.rms, fmt="o", ms=4,
                label=r"measured $\sqrt{\mathbb{E}\|\bar g_K - \nabla f\|^2}$")
    ax.loglog(mc.K, mc.closed_form_rms, "-", color="k", lw=1, label=r"closed form $\sqrt{(n+1)/K}\,\|\nabla f\|$")
    ax.loglog(mc.K, mc.grand_mean_error, "s", ms=4, color="C3", mfc="none", label="error of the grand mean of all draws")
    ax.loglog(mc.K, mc.grand_mean_rms, ":", color="C3", lw=1, label="its expected size if unbiased")
    ax.set_xlabel("number $K$ of forward gradients averaged")
    ax.set_ylabel("error")
    legend_outside(ax)
    return fig


def variance_figure(var: pd.DataFrame, stab: pd.DataFrame):
    """Left: relative variance against n with the closed form (n+1)/K; right: the rescaled
    contraction per step (1 − ρ̂)(n+2)/4 against c with the parabola c(1 − c)."""
    fig, axes = plt.subplots(2, 1, figsize=(PAGE_WIDTH, 8.0), layout="constrained")
    ax = axes[0]
    for i, (K, g) in enumerate(var[var.model == "logistic regression"].groupby("K")):
        ax.errorbar(g.n, g.variance, yerr=2 * g.variance_se, fmt="o", ms=4, color=f"C{i}", label=f"logistic regression, K = {K}")
        grid = np.array([g.n.min(), g.n.max()])
        ax.loglog(grid, (grid + 1) / K, "-", lw=1, color=f"C{i}")
    mp = var[var.model == "perceptron"]
    ax.errorbar(mp.n, mp.variance, yerr=2 * mp.variance_se, fmt="D", ms=5, color="k", mfc="none",
                label=f"perceptron (n = {int(mp.n.iloc[0])}),\nK ∈ {{{', '.join(str(int(k)) for k in mp.K)}}}")
    ax.set_xlabel("number of weights $n$")
    ax.set_ylabel(r"$\mathbb{E}\|\bar g_K - \nabla\ell\|^2 \,/\, \|\nabla\ell\|^2$")
    ax.set_title("lines: closed form $(n+1)/K$", fontsize=10)
    legend_outside(ax)
    ax = axes[1]
    cc = np.linspace(0, stab.c.max() * 1.05, 200)
    ax.plot(cc, cc * (1 - cc), "k-", lw=1, label=r"closed form $c(1-c)$")
    for i, (n, g) in enumerate(stab.groupby("n")):
        ax.errorbar(g.c, (1 - g.rho) * (n + 2) / 4, yerr=2 * g.rho_se * (n + 2) / 4, fmt="o", ms=4, color=f"C{i}", label=f"$n = {n}$")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(1, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(r"step size $\gamma$ in units of $2/(n+2)$")
    ax.set_ylabel(r"contraction per step $(1-\hat\rho)\,(n+2)/4$")
    ax.set_title(r"SGD with forward gradients on $\frac{1}{2}\|w\|^2$", fontsize=10)
    legend_outside(ax)
    return fig


def _look(estimator: str, points: int) -> dict:
    """Line style of an estimator: the reference (backprop) dashed with open markers, on top,
    so that a forward-gradient curve that coincides with it stays visible underneath."""
    if estimator == "backprop":
        return dict(ls="--", lw=1.4, marker="o", mfc="none", ms=4.5, markevery=max(1, points // 8), zorder=5)
    return dict(ls="-", lw=1.6, zorder=3)


def curve_panels(curves: pd.DataFrame, title_fmt: str, log_y: dict):
    """One row per model, one panel per learning rate: the loss of each estimator over the
    seeds (line: geometric mean if ``log_y[model]``, else median; band: range)."""
    models = list(dict.fromkeys(curves.model))
    cols = 2  # two panels a row: legible at the page width
    rows_of = {m: -(-curves[curves.model == m].lr.nunique() // cols) for m in models}
    n_rows = sum(rows_of.values())
    fig, axes = plt.subplots(n_rows, cols, figsize=(PAGE_WIDTH, 2.7 * n_rows), squeeze=False, layout="constrained")
    r0 = 0
    for model in models:
        cur = curves[curves.model == model]
        for c, (lr, g) in enumerate(cur.groupby("lr")):
            ax = axes[r0 + c // cols, c % cols]
            for i, (est, h) in enumerate(g.groupby("estimator", sort=False)):
                Y = np.array([s.loss.to_numpy() for _, s in h.groupby("seed")])
                t = h[h.seed == h.seed.iloc[0]].t.to_numpy()
                band(ax, t, Y, label=est, colour=f"C{i}", log=log_y[model], **_look(est, len(t)))
                if Y.shape[0] > 1:
                    ax.collections[-1].set_alpha(0.12)
            if log_y[model]:
                ax.set_yscale("log")
            ax.set_title(title_fmt.format(model=model, lr=lr), fontsize=10)
            ax.set_xlabel("iteration")
            if c % cols == 0:
                ax.set_ylabel("excess loss $\\ell - \\ell^\\star$" if log_y[model] else "training loss")
        for c in range(cur.lr.nunique(), rows_of[model] * cols):
            axes[r0 + c // cols, c % cols].axis("off")
        r0 += rows_of[model]
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), fontsize=LEGEND_PT)
    return fig


# -- the displayed views of the chapter's tables (the full tables go to the CSVs) ----------------------


def beale_table(mc: pd.DataFrame):
    """The view of :func:`fbsgd.studies.forward_gradients.study.beale_study`'s table: measured and closed-form RMS
    error, z of the mean squared error, the grand mean's miss and its expected size, per K."""
    return show(mc, "Error of an average of K forward gradients on the Beale function: measured and "
                "closed-form RMS, z of the mean squared error, and the grand mean's miss against its "
                "expected size (all columns: the CSV above)",
                columns=["K", "rms", "closed_form_rms", "z_mse", "grand_mean_error", "grand_mean_rms"],
                rename={"rms": "RMS error", "closed_form_rms": "closed form", "z_mse": "z (MSE)",
                        "grand_mean_error": "grand-mean miss", "grand_mean_rms": "expected miss"})


def variance_table(var: pd.DataFrame):
    """The view of :func:`fbsgd.studies.forward_gradients.study.variance_study`'s table: measured relative variance,
    its standard error, the closed form (n + 1)/K and z, per (model, n, K)."""
    return show(var, "Relative variance of the mean of K forward gradients and the closed form (n + 1)/K "
                "(all columns: the CSV above)",
                columns=["model", "n", "K", "variance", "variance_se", "closed_form_variance", "z"],
                rename={"variance": "measured", "variance_se": "s.e.", "closed_form_variance": "(n + 1)/K"})


def floors_table(floors: pd.DataFrame):
    """The view of :func:`fbsgd.studies.forward_gradients.study.noise_floors`'s table: predicted and measured noise
    floors with both estimators and their ratios forward / backprop, per step size."""
    return show(floors, "Noise floor of the excess loss, predicted by the quadratic model and measured "
                "(measured: the mean over seeds of each run's mean over its second half; the SGD "
                "table below gives medians over seeds); all columns: the CSV above",
                columns=["lr", "predicted_backprop", "predicted_forward", "measured_backprop",
                         "measured_forward", "predicted_ratio", "measured_ratio"],
                rename={"predicted_backprop": "predicted, backprop", "predicted_forward": "predicted, forward",
                        "measured_backprop": "mean, backprop", "measured_forward": "mean, forward",
                        "predicted_ratio": "predicted ratio", "measured_ratio": "measured ratio"})


RUNS_COLUMNS = ["model", "lr", "estimator", "initial", "final", "second_half", "diverged"]


def runs_table(table: pd.DataFrame, optimizer: str):
    """The view of a :func:`fbsgd.studies.forward_gradients.study.summarize_runs` table of ``optimizer`` ("SGD" or
    "Adam"): loss at the start, at the end and over the second half per (model, lr, estimator).
    The step-size column is headed γ for SGD and lr for Adam."""
    rename = {"second_half": "second half (median)"}
    if optimizer != "SGD":
        rename = {"lr": "lr", **rename}
    return show(table, f"{optimizer}: loss at the start, at the end and over the second half, medians over "
                "seeds (all columns: the CSV above)", columns=RUNS_COLUMNS, rename=rename)
