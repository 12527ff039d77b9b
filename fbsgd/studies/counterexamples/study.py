"""The three counterexamples of Appendix A, as closed forms and as runs of
the core passes (so each closed form is checked against the code that the
rest of the book uses)."""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from fbsgd.operators import HadamardMix, Parameter, QuadraticReadout, Sigmoid, SquaredNorm
from fbsgd.optimizers import SGD, HeavyBall, descend
from fbsgd.passes import Composite
from fbsgd.perturbations import Constant, Perturbation, Plan, TopK
from fbsgd.perturbations import TwoPointNoise, UniformNoise
from fbsgd.passes import passes
from fbsgd.book.report import number

__all__ = [
    "sigmoid_slope",
    "two_point_slope_bias",
    "uniform_slope_bias",
    "monte_carlo_slope_bias",
    "quadratic_forward_closed_form",
    "quadratic_forward_run",
    "quadratic_forward_contraction",
    "PAPER_A_PLAIN",
    "PAPER_A_MOMENTUM",
    "topk_net",
    "topk_run",
    "topk_iteration_matrix",
    "spectral_radius",
    "topk_step_size_scan",
    "fate",
    "PAPER_SETTINGS",
    "vector",
    "power_of_ten",
    "SCAN_GAMMAS",
    "a1_table",
    "a2_table",
    "worked_first_step",
    "a3_curves",
    "a3_scan",
    "a3_paper_runs",
    "scan_ranges",
]

# --- A.1: zero-mean forward noise biases the slope of a sigmoid ---------------


def sigmoid_slope(y):
    """σ'(y) = σ(y)(1 − σ(y))."""
    s = expit(y)
    return s * (1.0 - s)


def two_point_slope_bias(a):
    """E[σ'(ỹ)] − σ'(0) for ỹ = ±a with equal mass: σ'(a) − 1/4 (Appendix A.1)."""
    return sigmoid_slope(np.asarray(a, dtype=float)) - 0.25


def uniform_slope_bias(a):
    """E[σ'(ỹ)] − σ'(0) for ỹ ~ U(−a, a): (σ(a) − σ(−a)) / (2a) − 1/4."""
    a = np.asarray(a, dtype=float)
    safe = np.where(a > 0, a, 1.0)
    return np.where(a > 0, (expit(safe) - expit(-safe)) / (2.0 * safe) - 0.25, 0.0)


def monte_carlo_slope_bias(perturbation: Perturbation, n: int, seed: int = 0):
    """Monte Carlo estimate of E[σ'(0 + δ)] − σ'(0) with δ from ``perturbation``.

    The slope is evaluated by the Sigmoid operator's backward product
    ∇₁σ(ỹ)ᵀ·1 on n independent perturbed copies of y = 0.
    Returns (estimate, standard error).
    """
    y = np.zeros((n, 1))
    y_tilde, _ = perturbation(y, perturbation.init(seed))
    slopes = Sigmoid().vjp_input(y_tilde, None, np.ones_like(y_tilde))[:, 0]
    return float(slopes.mean() - 0.25), float(slopes.std(ddof=1) / np.sqrt(n))


# --- A.2: a constant forward perturbation on f(x) = x² -------------------------


def quadratic_forward_closed_form(x0: float, delta: float, gamma: float, steps: int) -> np.ndarray:
    """Iterates of eq. (55), x_{t+1} = (1 − 2γ) x_t − 2γδ, in closed form:
    x_t = −δ + (1 − 2γ)^t (x_0 + δ)."""
    t = np.arange(steps + 1)
    return -delta + (1.0 - 2.0 * gamma) ** t * (x0 + delta)


def quadratic_forward_contraction(gamma):
    """|1 − 2γ|: the iterates converge (to −δ) iff this is < 1, i.e. 0 < γ < 1."""
    return np.abs(1.0 - 2.0 * np.asarray(gamma, dtype=float))


def quadratic_forward_run(x0: float, delta: float, gamma: float, steps: int) -> np.ndarray:
    """The same iterates from the core passes: chain w ↦ w ↦ w², δ added after f₁."""
    net = Composite([Parameter(1), SquaredNorm(1, coef=1.0)])
    plan = Plan(forward={1: Constant(delta)})
    ws = descend(net, np.zeros((1, 1)), np.array([x0]), SGD(gamma), steps, plan, stop_above=1e150)
    return ws[:, 0]


# --- A.3: a Top-1 compressor on the backward pass ------------------------------

PAPER_A_PLAIN = np.array([[-15.0, 13.0], [-5.0, 9.0]])  # with γ = 0.1, β = 0
PAPER_A_MOMENTUM = np.array([[-5.0, -4.0], [-5.0, 3.0]])  # with γ = 0.05, β = 0.9


def topk_net(A) -> Composite:
    """f₁(x, w₁) = A (x ⊙ w₁),  f₂(y₁, w₂) = ⟨y₁, w₂⟩² + ½‖y₁‖²."""
    return Composite([HadamardMix(A), QuadraticReadout(2)])


def topk_run(A, gamma: float, steps: int, beta: float = 0.0, w1=(1.0, 1.0), compress: bool = True, k: int = 1):
    """Iterates (steps+1, 4) of (momentum) GD on the A.3 example, x = (1, 1), w₂⁽⁰⁾ = 0.

    With ``compress`` the intermediate gradient v₁ sent back from f₂ to f₁
    passes through Top-k, i.e. a backward perturbation ε₂ = C(v₁) − v₁.
    """
    net = topk_net(A)
    plan = Plan(backward={2: TopK(k)}) if compress else Plan()
    opt = HeavyBall(gamma, beta) if beta else SGD(gamma)
    w0 = np.concatenate([np.asarray(w1, dtype=float), np.zeros(2)])
    return descend(net, np.ones((1, 2)), w0, opt, steps, plan)


def topk_iteration_matrix(A, gamma: float, beta: float = 0.0) -> np.ndarray:
    """Linear map of the *uncompressed* iteration on w₁ (w₂ stays 0, x = (1, 1)).

    Plain GD: w₁ ← (I − γAᵀA) w₁.  Heavy ball: the 4×4 companion matrix acting
    on (w₁ᵗ, w₁ᵗ⁻¹).
    """
    A = np.asarray(A, dtype=float)
    K = A.T @ A
    I = np.eye(2)
    if not beta:
        return I - gamma * K
    return np.block([[(1 + beta) * I - gamma * K, -beta * I], [I, np.zeros((2, 2))]])


def spectral_radius(Mx: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(Mx))))


def fate(norms, ratio: float = 1e3) -> str:
    """'converges' if the final norm fell by ``ratio`` from the start, 'diverges'
    if it grew by ``ratio`` (or the run stopped early), else 'undecided'."""
    norms = np.asarray(norms, dtype=float)
    if not np.isfinite(norms[-1]) or norms[-1] > ratio * norms[0]:
        return "diverges"
    return "converges" if norms[-1] < norms[0] / ratio else "undecided"


def topk_step_size_scan(A, gammas, steps: int, beta: float = 0.0, w1=(1.0, 1.0), offset: float = 1e-6):
    """For each step size: stability of the uncompressed iteration and the fate
    of an uncompressed and a Top-1 run.  Returns a tidy table (one row per γ).

    The uncompressed run starts from w₁ + (0, offset) to expose instability
    that the special initial point w₁ = (s, s) hides; the Top-1 run starts at w₁.
    """
    import pandas as pd

    rows = []
    start_off = (w1[0], w1[1] + offset)
    for g in gammas:
        plain = np.linalg.norm(topk_run(A, g, steps, beta=beta, w1=start_off, compress=False)[:, :2], axis=1)
        top1 = np.linalg.norm(topk_run(A, g, steps, beta=beta, w1=w1, compress=True)[:, :2], axis=1)
        early = lambda n: "diverges" if len(n) < steps + 1 else fate(n)
        rows.append(dict(
            gamma=float(g), beta=float(beta),
            radius_uncompressed=spectral_radius(topk_iteration_matrix(A, g, beta)),
            final_uncompressed=plain[-1], uncompressed=early(plain),
            final_top1=top1[-1], top1=early(top1),
        ))
    return pd.DataFrame(rows)


# --- the chapter's tables: one runner per example ------------------------------

PAPER_SETTINGS = {"plain": (PAPER_A_PLAIN, 0.1, 0.0), "momentum": (PAPER_A_MOMENTUM, 0.05, 0.9)}  # A, γ, β of Figure 9
SCAN_GAMMAS = np.geomspace(1e-3, 0.2, 17)  # step sizes of the A.3 scan (both settings)
SCAN_MIN_STEPS = 2000  # the scan runs at least this many iterations


def a1_table(sizes, draws: int, seed: int = 0):
    """A.1: closed-form and Monte Carlo slope bias per (law, a); one row each."""
    import pandas as pd


    rows = []
    for i, a in enumerate(sizes):
        for law, p, exact in (("two-point", TwoPointNoise(a), two_point_slope_bias(a)),
                              ("uniform", UniformNoise(-a, a), uniform_slope_bias(a))):
            est, se = monte_carlo_slope_bias(p, draws, seed=seed * 1000 + i)
            rows.append(dict(law=law, a=float(a), closed_form=float(exact), monte_carlo=est, standard_error=se))
    t = pd.DataFrame(rows)
    t["abs_error"] = (t.monte_carlo - t.closed_form).abs()
    return t


def a2_table(x0: float, delta: float, gammas, steps: int):
    """A.2: per step size, the core-pass run against the closed form of (55).

    Returns (table, runs) with runs[γ] the iterates; columns gamma, contraction
    |1 − 2γ|, distance_to_minus_delta after ``steps``, max_abs_run_minus_closed_form
    (relative, over the run), paper_condition (γ < 1/2), converges (|1 − 2γ| < 1)."""
    import pandas as pd

    rows, runs = [], {}
    for g in gammas:
        run = quadratic_forward_run(x0, delta, g, steps)
        exact = quadratic_forward_closed_form(x0, delta, g, steps)[: len(run)]
        runs[g] = run
        c = float(quadratic_forward_contraction(g))
        rows.append(dict(gamma=float(g), contraction=c, distance_to_minus_delta=float(abs(run[-1] + delta)),
                         max_abs_run_minus_closed_form=float(np.max(np.abs(run - exact) / np.maximum(1, np.abs(exact)))),
                         paper_condition=bool(0 < g < 0.5), converges=bool(c < 1), steps=len(run) - 1))
    return pd.DataFrame(rows), runs


def worked_first_step(s: float):
    """A.3, plain setting: y₁, u₁ and w₁ after one uncompressed step from (s, s),
    next to the appendix's values (−2s, 4s), (10s, 10s), (0, 0)."""
    import pandas as pd


    first = passes(topk_net(PAPER_A_PLAIN), np.ones((1, 2)), np.array([s, s, 0.0, 0.0]))
    w_next = topk_run(PAPER_A_PLAIN, 0.1, 1, w1=(s, s), compress=False)[1, :2]
    return pd.DataFrame({
        "quantity": ["y₁", "u₁", "w₁ after one step"],
        "computed": [first.ys[1][0], first.us[1][0], w_next],
        "paper": [np.array([-2 * s, 4 * s]), np.array([10 * s, 10 * s]), np.zeros(2)],
    })


def vector(v) -> str:
    """A small vector as the book prints it: (−2, 4), each entry by :func:`fbsgd.book.report.number`."""

    return "(" + ", ".join(number(float(x)) for x in np.ravel(v)) + ")"


def power_of_ten(x: float) -> str:
    """10⁸ for 1e8 (any exact power of ten, superscript exponent); other numbers by
    :func:`fbsgd.book.report.number`."""

    k = round(float(np.log10(x))) if x > 0 else None
    if k is not None and float(10.0 ** k) == float(x):
        return "10" + str(k).translate(str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"))
    return number(x)


def a3_curves(steps: int, s: float, offset: float):
    """A.3 (Figure 9): ‖w₁⁽ᵗ⁾‖ per setting and curve (uncompressed from (s, s), Top-1 from (s, s),
    uncompressed from (s, s + offset)), as a tidy table setting, curve, t, norm_w1."""
    import pandas as pd

    frames = []
    for name, (A, g, b) in PAPER_SETTINGS.items():
        for curve, w1, compress in (("no compression, (s, s)", (s, s), False), ("Top-1, (s, s)", (s, s), True),
                                    (f"no compression, (s, s + {offset:g})", (s, s + offset), False)):
            norms = np.linalg.norm(topk_run(A, g, steps, beta=b, w1=w1, compress=compress)[:, :2], axis=1)
            frames.append(pd.DataFrame(dict(setting=name, curve=curve, gamma=g, beta=b, t=np.arange(len(norms)), norm_w1=norms)))
    return pd.concat(frames, ignore_index=True)


def a3_scan(steps: int, s: float, offset: float, gammas=SCAN_GAMMAS):
    """:func:`topk_step_size_scan` for both settings over ``gammas``, with at least
    SCAN_MIN_STEPS iterations; one row per (setting, γ)."""
    import pandas as pd

    return pd.concat([topk_step_size_scan(A, gammas, max(steps, SCAN_MIN_STEPS), beta=b, w1=(s, s), offset=offset)
                      .assign(setting=name) for name, (A, _, b) in PAPER_SETTINGS.items()], ignore_index=True)


def a3_paper_runs(steps: int, s: float, offset: float):
    """The same scan at each setting's own step size of Figure 9 (one row per setting)."""
    import pandas as pd

    return pd.concat([topk_step_size_scan(A, [g], max(steps, SCAN_MIN_STEPS), beta=b, w1=(s, s), offset=offset)
                      .assign(setting=name) for name, (A, g, b) in PAPER_SETTINGS.items()], ignore_index=True)


def _span(a: float, b: float) -> str:
    """"a" or "a – b", each to 3 significant figures (one number when both print alike)."""

    return number(a) if number(a) == number(b) else f"{number(a)} – {number(b)}"


def scan_ranges(scan):
    """The A.3 scan condensed for the page: consecutive step sizes of one setting with the same
    outcome (uncompressed, Top-1) form one row, with their γ range, how many step sizes it holds
    and the range of the uncompressed spectral radius."""
    same = ["setting", "uncompressed", "top1"]
    block = scan[same].ne(scan[same].shift()).any(axis=1).cumsum()
    ranges = scan.groupby(block, sort=False).agg(
        setting=("setting", "first"), gamma_from=("gamma", "min"), gamma_to=("gamma", "max"),
        step_sizes=("gamma", "size"), radius_from=("radius_uncompressed", "min"),
        radius_to=("radius_uncompressed", "max"), uncompressed=("uncompressed", "first"), top1=("top1", "first"))
    ranges["gamma"] = [_span(a, b) for a, b in zip(ranges.gamma_from, ranges.gamma_to)]
    ranges["spectral_radius"] = [_span(a, b) for a, b in zip(ranges.radius_from, ranges.radius_to)]
    return ranges.reset_index(drop=True)
