"""fbsgd.studies.counterexamples.figures: the figures of Appendix A draw from small tables, every series
visible and labelled (smoke tests)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from fbsgd.studies.counterexamples import figures as CF  # noqa: E402
from fbsgd.studies.counterexamples import study as C  # noqa: E402

GAMMAS = [0.1, 0.3, 0.5, 0.75, 0.95, 1.0, 1.05]


def test_a1_figure_draws_both_laws():
    sizes = [0.1, 0.5, 2.0]
    fig = CF.a1_figure(C.a1_table(sizes, 200, 0), sizes)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert sum("closed form" in lab for lab in labels) == 2
    plt.close(fig)


def test_a2_figure_colours_distinct_and_divergence_said():
    _, runs = C.a2_table(3.0, 1.0, GAMMAS, 60)
    fig = CF.a2_figure(runs, 3.0, 1.0, shown=40)
    top, bottom = fig.axes[:2]
    handles, labels = top.get_legend_handles_labels()
    series = [(h, lab) for h, lab in zip(handles, labels) if "gamma" in lab]
    assert len(series) == len(GAMMAS)
    colours = [to_rgb(h.get_color()) for h, _ in series]
    assert len(set(colours)) == len(GAMMAS)  # no two step sizes share a colour
    assert len({h.get_marker() for h, _ in series}) >= min(len(GAMMAS), len(CF.MARKERS))
    fates = dict(zip(GAMMAS, (lab for _, lab in series)))
    assert "diverges" in fates[1.05] and "oscillates" in fates[1.0]
    assert not any(w in fates[g] for g in GAMMAS if g < 1 for w in ("diverges", "oscillates"))
    assert bottom.get_yscale() == "log"
    # the diverging run is drawn up to its first point outside the frame, not beyond
    lo, hi = top.get_ylim()
    y = [ln for ln in top.get_lines() if ln.get_label() == fates[1.05]][0].get_ydata()
    assert ((y < lo) | (y > hi)).sum() == 1 and (y[-1] < lo or y[-1] > hi)
    plt.close(fig)


def test_a3_figure_uncompressed_run_visible_under_the_dashed_one():
    traj = C.a3_curves(40, 1.0, 1e-6)
    fig = CF.a3_figure(traj, 1e-6)
    for ax in fig.axes[:2]:
        lines = ax.get_lines()
        circles = [ln for ln in lines if ln.get_marker() == "o" and ln.get_linestyle() == "None"]
        dashed = [ln for ln in lines if ln.get_linestyle() == "--"]
        assert circles and dashed and circles[0].get_zorder() > dashed[0].get_zorder()
    labels = fig.legends[0].get_texts()
    assert any("10⁻⁶" in t.get_text() for t in labels)
    assert min(t.get_fontsize() for t in labels) >= 9
    plt.close(fig)
