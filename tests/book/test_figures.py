"""Plot helpers: labels typeset by mathtext, coinciding levels drawn apart."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from fbsgd.book import figures as F  # noqa: E402
from fbsgd.studies.section7 import figures as S7F  # noqa: E402


@pytest.mark.parametrize("text, label", [("σ_f=0.5", r"$\sigma_f = 0.5$"), ("Δt = 100", r"$\Delta t = 100$"),
                                         ("standard SGD", "standard SGD"), ("mean σ_b", r"mean $\sigma_b$")])
def test_tex_label(text, label):
    assert F.tex_label(text) == label


def test_levels_that_coincide_are_drawn_apart_by_the_dodge():
    rows = [dict(level=lv, gamma=g, seed=s, stable_grad_norm=g, diverged=False)
            for lv in ("standard SGD", "σ_f=1", "σ_f=2") for g in (0.01, 0.1) for s in (0, 1)]
    fig, ax = plt.subplots()
    S7F.stable_norm_vs_gamma(ax, pd.DataFrame(rows), dodge=0.05)
    xs = [line.get_xdata() for line in ax.get_lines() if line.get_label() in ("standard SGD", r"$\sigma_f = 1$", r"$\sigma_f = 2$")]
    assert len(xs) == 3
    ratios = np.log10(xs[1] / xs[0])
    assert np.allclose(ratios, 0.05) and np.allclose(np.log10(xs[2] / xs[1]), 0.05)
    assert np.allclose(np.log10(xs[1]), np.log10([0.01, 0.1]))  # the middle level sits on the grid
    plt.close(fig)
