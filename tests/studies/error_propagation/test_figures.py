"""fbsgd.studies.error_propagation.figures on a small study: legends typeset their symbols (no literal "ε_N"),
depth and location axes have integer ticks, series that nearly coincide stay visible."""
import re

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fbsgd.studies.error_propagation import figures as F  # noqa: E402
from fbsgd.studies.error_propagation import study as S  # noqa: E402

SIGMAS = [0.1, 0.3, 1.0]


@pytest.fixture(scope="module")
def tables():
    study = S.Study(4, 1.2, 1.5, 0)
    return dict(depth=study.depth([2, 3, 4], [1, 2, 3], 0.1, 64, 64), location=study.location(4, 2, 0.1, 64),
                bias=study.bias(SIGMAS, 2, 256))


def _texts(fig):
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def _no_literal_underscore(texts):
    for text in texts:
        outside_math = re.sub(r"\$[^$]*\$", "", text)
        assert "_" not in outside_math and "δ₁" not in outside_math, text


def _integer_ticks(axes):
    for ax in axes:
        loc = ax.xaxis.get_major_locator()
        assert isinstance(loc, MaxNLocator) and loc._integer


def test_depth_and_location_figures(tables):
    fig = F.depth_figure(tables["depth"], 1.2, 1.5)
    _no_literal_underscore(_texts(fig))
    assert any(r"$\varepsilon_N$" in t for t in _texts(fig))
    _integer_ticks(fig.axes)
    plt.close(fig)
    fig = F.location_figure(tables["location"])
    _no_literal_underscore(_texts(fig))
    _integer_ticks(fig.axes)
    plt.close(fig)


def test_bias_figure_keeps_the_inner_triangles_on_top(tables):
    fig = F.bias_figure(tables["bias"], SIGMAS, 5)
    _no_literal_underscore(_texts(fig))
    ax, axz = fig.axes[:2]
    # right panel: the backward non-zero-mean series (filled ▲) above the forward one (open △)
    lines = {(ln.get_marker(), ln.get_markerfacecolor() == "none"): ln for ln in axz.get_lines()
             if ln.get_marker() == "^"}
    assert lines[("^", False)].get_zorder() > lines[("^", True)].get_zorder()
    assert lines[("^", False)].get_linestyle() != lines[("^", True)].get_linestyle()
    plt.close(fig)


def test_tightness_figures(tables):
    for columns in ((0, 1), (2, 3)):
        fig = F.tightness_figure(tables["depth"], columns)
        _no_literal_underscore(_texts(fig))
        _integer_ticks(fig.axes)
        plt.close(fig)
