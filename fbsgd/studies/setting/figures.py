"""Figures of the setting chapter: Figure 1 of the paper redrawn, and the depth amplification
of one backward perturbation (eqs. 6a–6b)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import MaxNLocator


__all__ = ["chain_diagram", "depth_figure", "wrap_code"]


def _scan(line: str):
    """(column of the line's first opening bracket or None, the columns just after each comma
    directly inside that bracket, the column of a trailing comment or None); strings skipped."""
    depth, opened, cuts, quote, closed = 0, None, [], None, False
    for j, ch in enumerate(line):
        if quote:
            quote = None if ch == quote and line[j - 1] != "\\" else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return opened, cuts, j
        elif closed:
            continue  # only the first bracket's arguments are split
        elif ch in "([{":
            depth += 1
            opened = j if opened is None else opened
        elif ch in ")]}":
            depth -= 1
            closed = depth == 0
        elif ch == "," and depth == 1:
            cuts.append(j + 1)
    return opened, cuts, None


def _wrap_line(line: str, width: int) -> list[str]:
    if len(line) <= width:
        return [line]
    opened, cuts, comment = _scan(line)
    indent = line[: len(line) - len(line.lstrip())]
    if comment is not None and line[:comment].strip():  # the comment goes on its own line above
        return [indent + line[comment:]] + _wrap_line(line[:comment].rstrip(), width)
    if opened is None or not cuts:
        return [line]
    bounds = [0] + cuts + [len(line)]
    pieces = [line[a:b].strip() if k else line[a:b] for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    out, current = [], pieces[0]
    for piece in filter(None, pieces[1:]):
        if len(current) + 1 + len(piece) <= width:
            current += " " + piece
        else:
            out.append(current)
            current = " " * (opened + 1) + piece
    return out + [current]


def wrap_code(source: str, width: int = 76) -> str:
    """``source`` with every line longer than ``width`` shortened for a listing in the book's text
    column (76 characters fit it): a trailing comment moves to its own line above the code, and
    code still too long is broken after the commas of its first bracket, the continuation lines
    aligned with that bracket (PEP 8) and filled as far as ``width`` allows.  The code means the
    same (its syntax tree is unchanged); a long line without such commas is kept as it is."""
    out = [part for line in source.splitlines() for part in _wrap_line(line, width)]
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def _arrow(ax, p, q, colour, style="-|>", lw=1.4, ls="-"):
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=12, color=colour, lw=lw, linestyle=ls))


def chain_diagram(n_shown: int = 4, ax=None):
    """Figure 1 of the paper redrawn: the forward pass left to right with δ_i
    added to each output, the backward pass right to left with ε_i added to each
    intermediate gradient, and the weight gradients ũ_i leaving each operator.
    The last gap stands for the operators not drawn, so its quantities carry the
    indices of the operator before f_N: ỹ_{N-1}, δ_{N-1}, ṽ_{N-1} and ε_N."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.2))
    fwd, bwd, pert, grad = "#1f5fa8", "#b3541e", "#7a1fa2", "#2e7d32"
    labels = [f"$f_{{{i}}}$" for i in range(1, n_shown)] + ["$f_N$"]
    xs = np.arange(n_shown) * 3.2  # gaps wide enough for the labels beside the "+" circles
    yf, yb = 2.0, 0.0
    for k, (x, lab) in enumerate(zip(xs, labels)):
        ax.add_patch(FancyBboxPatch((x - 0.55, yb - 0.1), 1.1, 2.2, boxstyle="round,pad=0.05", fc="#f4f4f4", ec="#555"))
        ax.text(x, 1.0, lab, ha="center", va="center", fontsize=15)
        idx = "N" if k == n_shown - 1 else str(k + 1)
        ax.text(x, -1.0, rf"$\tilde u_{{{idx}}} = \nabla_2 f_{{{idx}}}^\top \tilde v_{{{idx}}}$", ha="center", color=grad, fontsize=10)
        _arrow(ax, (x, yb - 0.15), (x, -0.7), grad)
        ax.text(x, 3.05, rf"$w_{{{idx}}}$", ha="center", fontsize=11)
        _arrow(ax, (x, 2.9), (x, 2.2), "#555")
    ax.text(xs[0] - 2.2, yf, "$y_0 = x$", ha="center", va="center", fontsize=11)
    _arrow(ax, (xs[0] - 1.6, yf), (xs[0] - 0.6, yf), fwd)
    for k in range(n_shown - 1):
        a, b = xs[k] + 0.6, xs[k + 1] - 0.6
        mid = 0.5 * (a + b)
        last = k == n_shown - 2  # the gap before f_N stands for operators n_shown … N-1
        gap = r"$\cdots$" if last else ""
        i = "N-1" if last else str(k + 1)
        # forward: y_i = f_i(...) + δ_i
        _arrow(ax, (a, yf), (mid - 0.2, yf), fwd)
        _arrow(ax, (mid + 0.2, yf), (b, yf), fwd)
        ax.add_patch(plt.Circle((mid, yf), 0.2, fc="white", ec=pert, lw=1.4))
        ax.text(mid, yf, "+", ha="center", va="center", color=pert, fontsize=11)
        ax.text(mid, yf + 0.55, rf"$\delta_{{{i}}}$", ha="center", color=pert, fontsize=12)
        _arrow(ax, (mid, yf + 0.42), (mid, yf + 0.22), pert, lw=1.2)
        # ỹ_i = f_i(…) + δ_i leaves the "+": under the arrow, clear of the circle and the box
        ax.text(mid + 0.5, yf - 0.2, rf"$\tilde y_{{{i}}}$", ha="center", va="top", color=fwd, fontsize=10)
        # backward: v_i = ∇₁f_{i+1}ᵀ v_{i+1} + ε_{i+1}
        _arrow(ax, (b, yb + 0.4), (mid + 0.2, yb + 0.4), bwd)
        _arrow(ax, (mid - 0.2, yb + 0.4), (a, yb + 0.4), bwd)
        ax.add_patch(plt.Circle((mid, yb + 0.4), 0.2, fc="white", ec=pert, lw=1.4))
        ax.text(mid, yb + 0.4, "+", ha="center", va="center", color=pert, fontsize=11)
        nxt = "N" if last else str(k + 2)
        ax.text(mid, yb - 0.3, rf"$\varepsilon_{{{nxt}}}$", ha="center", color=pert, fontsize=12)
        _arrow(ax, (mid, yb - 0.02), (mid, yb + 0.18), pert, lw=1.2)
        # ṽ_i = ∇₁f_{i+1}ᵀ ṽ_{i+1} + ε_{i+1} leaves the "+" towards f_i: above the arrow
        ax.text(mid - 0.5, yb + 0.6, rf"$\tilde v_{{{i}}}$", ha="center", va="bottom", color=bwd, fontsize=10)
        if gap:
            ax.text(mid, 1.0, gap, ha="center", va="center", fontsize=16)
    ax.text(xs[-1] + 1.5, yf, r"$\mathcal{F}(x;\mathbf{w})$", ha="left", va="center", fontsize=12)
    _arrow(ax, (xs[-1] + 0.6, yf), (xs[-1] + 1.4, yf), fwd)
    ax.text(xs[-1] + 1.5, yb + 0.4, r"$v_N = 1$", ha="left", va="center", fontsize=11, color=bwd)
    ax.set_xlim(xs[0] - 2.8, xs[-1] + 2.6)
    ax.set_ylim(-1.9, 4.0)
    ax.set_aspect("equal")
    ax.axis("off")
    centre = 0.5 * (xs[0] + xs[-1])
    ax.text(centre, 3.75, "forward pass (5a) →", color=fwd, fontsize=11, ha="center", va="center")
    ax.text(centre, -1.65, "← backward pass (5b)", color=bwd, fontsize=11, ha="center", va="center")
    return ax


def depth_figure(amplification, eps_norm: float):
    """‖ũ_1 − u_1‖ against depth, one panel per layer family: markers measured, lines the closed
    product ‖W_2ᵀ⋯W_{N−1}ᵀ ε_N‖‖x‖, dashed the additive model (6a); one legend below both panels."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharey=True)
    for ax, kind in zip(axes, ("orthogonal", "gaussian")):
        sub = amplification[amplification.kind == kind]
        for s, g in sub.groupby("scale"):
            line, = ax.semilogy(g.depth, g.accumulative, "o", ms=4, label=f"$s = {s:g}$")
            ax.semilogy(g.depth, g.closed_form, "-", color=line.get_color(), lw=1, alpha=0.7)
        ax.axhline(eps_norm, color="k", ls="--", lw=1, label="additive model (6a)")
        ax.set_xlabel("depth $N$")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{kind} layers")
    axes[0].set_ylabel(r"$\|\tilde u_1 - u_1\|$")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
