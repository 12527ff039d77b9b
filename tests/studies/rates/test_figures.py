"""Smoke tests of the Sections 5–6 figures: they draw, label with mathtext and keep curves apart."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from fbsgd.studies.rates import figures as RP  # noqa: E402


def _runs():
    rows = []
    for geo in ("nonconvex", "pl"):
        for name in ("standard SGD", "a = 0", "a = 0.5", "σ_f = 4"):
            for T in (1000, 10000):
                for seed in (0, 1):
                    rows.append(dict(geometry=geo, label=name, T=T, seed=seed, convergence_metric=1e-3 / T ** 0.5))
    return pd.DataFrame(rows)


def test_metric_panels_give_each_curve_its_own_marker_and_typeset_labels():
    fig = RP.metric_panels(_runs(), "label", ["standard SGD", "a = 0", "a = 0.5", "σ_f = 4"])
    lines = [l for l in fig.axes[0].get_lines() if l.get_label() and not l.get_label().startswith("_")]
    assert len({l.get_marker() for l in lines}) == len(lines) == 4  # coinciding curves stay distinguishable
    ref = next(l for l in lines if l.get_label() == "standard SGD")
    assert ref.get_linestyle() == "--" and ref.get_zorder() > max(l.get_zorder() for l in lines if l is not ref)
    assert all(l.get_markerfacecolor() == "none" for l in lines)
    assert "$\\sigma_f = 4$" in [l.get_label() for l in lines]
    plt.close(fig)


def test_table1_figure_colours_are_distinct_hues():
    rows = [dict(geometry=g, setting="standard SGD", **{"pass": "none"}, mean="zero", a=float("nan"), exponent=-0.5,
                 ci_low=-0.6, ci_high=-0.4) for g in ("nonconvex", "pl")]
    rows += [dict(geometry=g, setting="x", **{"pass": p}, mean=m, a=a, exponent=-0.5, ci_low=-0.6, ci_high=-0.4)
             for g in ("nonconvex", "pl") for p in ("forward", "backward") for m in ("zero", "nonzero") for a in (0.0, 1.0)]
    fig = RP.table1_figure(pd.DataFrame(rows), {"nonconvex": -0.5, "pl": -0.9}, 0.1)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    cases = [h for h, lab in zip(handles, labels) if lab.startswith(("forward", "backward"))]
    colours = {matplotlib.colors.to_hex(h.lines[0].get_color()) for h in cases}
    assert len(cases) == 4 and len(colours) == 4
    assert matplotlib.colors.to_hex("C9") not in colours and matplotlib.colors.to_hex("C1") not in colours
    plt.close(fig)
