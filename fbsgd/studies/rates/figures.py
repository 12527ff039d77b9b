"""Figures of the Sections 5–6 chapters used more than once: the convergence metric against T."""
from __future__ import annotations

import matplotlib.pyplot as plt

from fbsgd.book.figures import MARKERS, tex_label
from fbsgd.studies.budgets.study import GEOS
from fbsgd.theory.table1 import PAPER_TABLE1
from fbsgd.metrics import geometric_mean

__all__ = ["CASE_COLOURS", "colour_of", "metric_panels", "table1_figure", "spike_figure"]

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


def _style(name, i: int = 0) -> tuple[str, str]:
    """(marker, line style) of a curve: by size rule for the Corollary 1 settings, else one marker per
    position in the order, so that curves that coincide stay distinguishable."""
    if name == "standard SGD":
        return "s", "--"
    if "as allowed" in str(name):
        return "^", "-"
    if "half as fast" in str(name):
        return "v", ":"
    if "constant" in str(name):
        return "o", "-"
    return MARKERS[i % len(MARKERS)], ("-", "-.", ":", (0, (5, 1)))[i % 4]


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
            marker, ls = _style(name, i)
            ref = name == "standard SGD"  # the reference: dashed, open markers, drawn on top of the others
            ax.loglog(st["T"], st["mean"], marker=marker, ls=ls, color=col, ms=6 if ref else 5, lw=1.2, mfc="none",
                      mew=1.2, zorder=4 if ref else 3, label=tex_label(name) if geo == geos[0] else None)
            ax.fill_between(st["T"], st["min"], st["max"], color=col, alpha=0.12, lw=0)
        ax.set_xlabel("horizon $T$")
        ax.set_ylabel(r"mean of $\|\nabla\ell(w_t)\|^2$ over $t<T$" if geo == "nonconvex" else r"$\ell(w_T) - \ell^*$")
        ax.set_title(r"non-convex, $\gamma = c/\sqrt{T}$" if geo == "nonconvex" else r"PL, $\gamma = c\,\ln T/T$", fontsize=10)
    ncol = 3 if len(order) > 4 else 2
    fig.legend(loc="lower center", ncol=ncol)
    fig.tight_layout(rect=(0, 0.04 + 0.06 * -(-len(order) // ncol), 1, 1))  # room for the legend's rows
    return fig

def table1_figure(budget_fits, reference, slope_tolerance):
    """Table 1 measured: the fitted exponent of T against the budget exponent a, per case and
    geometry, with the rate's exponent + tolerance band and Table 1's bound on a (triangles)."""

    fig, axes = plt.subplots(1, 2, figsize=(8, 4.8), sharey=False)
    # four clearly different hues; the zero-mean forward, zero-mean backward and biased backward cases keep
    # the colours of the Corollary 1 figure (:data:`CASE_COLOURS`)
    colours = {("forward", "zero"): "C0", ("forward", "nonzero"): "C4", ("backward", "zero"): "C2", ("backward", "nonzero"): "C3"}
    markers = dict(zip(colours, ("o", "s", "D", "P")))  # no triangles: those mark the bound on a
    offsets = {k: o for k, o in zip(colours, (-0.012, -0.004, 0.004, 0.012))}
    for ax, geo in zip(axes, GEOS):
        part = budget_fits[budget_fits.geometry == geo]
        base = part[part.setting == "standard SGD"].iloc[0]
        ref = reference[geo]
        ax.axhspan(ref - 1.0, ref + slope_tolerance, color="0.88", lw=0,
                   label="exponent of the rate + tolerance" if geo == "nonconvex" else None)
        ax.axhline(ref, color="k", lw=1, ls="--", label="exponent of the rate" if geo == "nonconvex" else None)
        ax.axhline(base.exponent, color="k", lw=0.8, ls=":", label="unperturbed runs" if geo == "nonconvex" else None)
        for case, col in colours.items():
            sub = part[(part["pass"] == case[0]) & (part["mean"] == case[1])].sort_values("a")
            x = sub.a + offsets[case]
            lab = f"{case[0]}, {'zero-mean' if case[1] == 'zero' else 'biased'}"
            ax.errorbar(x, sub.exponent, yerr=[sub.exponent - sub.ci_low, sub.ci_high - sub.exponent], fmt=markers[case] + "-", color=col,
                        ms=4.5, lw=1.2, capsize=2, label=lab if geo == "nonconvex" else None)
            a_paper = PAPER_TABLE1[(geo, case[0], case[1])]
            ax.plot([a_paper + offsets[case]], [0.03], marker="^", color=col, ms=8, ls="none", transform=ax.get_xaxis_transform(), clip_on=False)
        lo_y, hi_y = part.exponent.min(), part.exponent.max()
        ax.set_ylim(min(lo_y, ref) - 0.3, max(hi_y, ref + slope_tolerance) + 0.3)
        ax.set_xlabel(r"budget exponent $a$  ($Q \approx T^a$)")
        ax.set_ylabel("fitted exponent of $T$")
        ax.set_title(r"non-convex: $\frac{1}{T}\sum\|\nabla\ell\|^2$" if geo == "nonconvex" else r"PL: $\ell(w_T) - \ell^*$", fontsize=10)
    axes[0].plot([], [], "^", color="0.4", ls="none", label="Table 1's bound on $a$ (colour of the case)")
    fig.legend(loc="lower center", ncol=2)
    fig.tight_layout(rect=(0, 0.24, 1, 1))
    return fig


def spike_figure(tr, spike_gamma, t_spike):
    """Figure 2's scenarios: gradient norm and loss along the runs at γ = spike_gamma
    (geometric mean over seeds, band over seeds), the spike at t_spike dotted.
    ``tr``: :func:`fbsgd.studies.budgets.verdicts.spike_traces`."""

    main = tr[tr.gamma == spike_gamma]
    pal = {"standard SGD": "0.4", "A: one large spike": "tab:orange", "B: persistent biased backward": "tab:blue",
           "C: persistent zero-mean backward": "tab:green", "D: persistent zero-mean forward": "tab:purple"}
    fig, axes = plt.subplots(2, 2, figsize=(8, 6.6), sharex=True)
    rows_of = [["standard SGD", "A: one large spike", "B: persistent biased backward"],
               ["standard SGD", "C: persistent zero-mean backward", "D: persistent zero-mean forward"]]
    for i, names in enumerate(rows_of):
        for name in names:
            sub = main[main.scenario == name]
            for col, (what, ylab) in enumerate((("grad_norm", r"$\|\nabla\ell(w_t)\|$"), ("loss_gap", r"$\ell(w_t) - \ell^*$"))):
                piv = sub.pivot_table(index="t", columns="seed", values=what)
                ax = axes[i, col]
                mid = geometric_mean(piv, axis=1)
                ax.semilogy(piv.index, mid, color=pal[name], lw=1.2, label=name if col == 0 else None)
                ax.fill_between(piv.index, piv.min(axis=1), piv.max(axis=1), color=pal[name], alpha=0.2, lw=0)
                ax.set_ylabel(ylab)
                ax.axvline(t_spike, color="0.6", lw=0.8, ls=":")
    handles = {}  # one legend below the panels, each scenario once
    for ax in axes[:, 0]:
        handles.update(zip(*ax.get_legend_handles_labels()[::-1]))
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=2)
    for ax in axes[1]:
        ax.set_xlabel("iteration $t$")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
    axes[0, 0].set_title("gradient norm", fontsize=10)
    axes[0, 1].set_title("loss", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig
