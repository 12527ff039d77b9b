"""Plotting helpers every chapter shares (style, page width, legends, labels).

They read arrays or tidy tables; they never run experiments.  The Section 7 plots
are :mod:`fbsgd.studies.section7.figures`."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["band", "style", "tex_label", "MARKERS", "LEGEND_PT", "PAGE_WIDTH", "legend_outside"]


def style():
    """The book-wide look.  Figures are drawn at 100 dpi of layout (an 8-inch figure fills the
    page width of about 800 px) and rendered as retina PNGs (twice the pixels), so they stay sharp
    when enlarged; legends default to 9 pt."""
    plt.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 200,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "legend.fontsize": 9,
        "font.size": 10,
    })
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # not inside IPython: nothing to configure
        return
    try:
        set_matplotlib_formats("retina")
    except Exception:  # no running IPython shell
        pass


#: Width (inches) of a figure that the book page shows at about its own size (the page column is
#: about 700 px), and the legend font size (points) that stays legible there.
PAGE_WIDTH = 7.0
LEGEND_PT = 10


def legend_outside(ax, **kw):
    """Legend to the right of ``ax``, off the data (use with ``layout="constrained"``)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=LEGEND_PT, **kw)


def band(ax, x, samples, label=None, colour=None, log=False, **kw):
    """Median line with a min–max band over the rows of ``samples`` (e.g. seeds)."""
    samples = np.atleast_2d(np.asarray(samples, dtype=float))
    if log:
        mid = np.exp(np.nanmean(np.log(samples), axis=0))
    else:
        mid = np.nanmedian(samples, axis=0)
    line, = ax.plot(x, mid, label=label, color=colour, **kw)
    if samples.shape[0] > 1:
        ax.fill_between(x, np.nanmin(samples, axis=0), np.nanmax(samples, axis=0), color=line.get_color(), alpha=0.2, lw=0)
    return line


MARKERS = "o^vDPX<>"  # one per level, so lines that coincide stay distinguishable

_SYMBOLS = (("σ_f", r"\sigma_f"), ("σ_b", r"\sigma_b"), ("ε_N", r"\varepsilon_N"), ("δ_1", r"\delta_1"),
            ("Δt", r"\Delta t"), ("γ", r"\gamma"), ("ρ", r"\rho"))


def tex_label(text: str) -> str:
    """A table's level name as a legend label typeset by mathtext: "σ_f=0.5" → $\\sigma_f = 0.5$
    (a literal "σ_f" would print its underscore).  Text without such a symbol is returned as is."""
    import re

    text = str(text)
    m = re.fullmatch(r"\s*(σ_f|σ_b|ε_N|δ_1|Δt|γ|ρ)\s*=\s*(\S+)\s*", text)
    if m:
        return f"${dict(_SYMBOLS)[m.group(1)]} = {m.group(2)}$"
    for plain, tex in _SYMBOLS:
        if "_" in plain:
            text = text.replace(plain, f"${tex}$")
    return text
