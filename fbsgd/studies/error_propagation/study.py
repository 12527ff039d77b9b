"""The measurements of the error-propagation chapter (Section 4), as tidy tables.

One :class:`Study` holds the chapter's chains (orthogonal linear chains of
norm s, tanh chains of gain g), the input x and the seed streams; its runners
return one row per measured configuration (:func:`fbsgd.studies.error_propagation.injection.error_vs_bounds`
plus the configuration as columns):

* :meth:`Study.depth`     (a) δ₁ and ε_N against depth, with the linear closed forms;
* :meth:`Study.location`  (b) one perturbation moved through every location of the deepest chains;
* :meth:`Study.bias`      (c) the bias sweep over perturbation sizes.

The derived tables (:func:`growth`, :func:`hierarchy`, :func:`tightness`,
:func:`looseness`) are pure functions of those tables.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fbsgd import perturbations as pert
from fbsgd.metrics import log_slope
from fbsgd.book.report import number
from fbsgd.engine.workers import costliest_first
from fbsgd.studies.error_propagation.injection import error_vs_bounds, linear_chain_error, scaled_layers, tanh_chain, unit_vector

__all__ = ["GROUP_ROWS", "RESOLVED_Z", "SERIES", "NULL_SERIES", "Study", "growth", "hierarchy", "tightness_cases", "tightness",
           "looseness", "bias_exponent", "summary", "growth_view", "looseness_view"]

GROUP_ROWS = 512  # rows per group of Monte Carlo draws: small enough to stay in cache (see gradient_error)
RESOLVED_Z = 3.0  # an estimate counts as resolved when it exceeds this many standard errors
LAWS = {"zero-mean": pert.zero_mean_uniform, "non-zero-mean": pert.nonzero_mean_uniform}
SERIES = {  # bias sweep (c): series name → (chain, law, where)
    "tanh · zero-mean · δ₁": ("tanh", "zero-mean", "forward"),
    "tanh · non-zero-mean · δ₁": ("tanh", "non-zero-mean", "forward"),
    "tanh · zero-mean · ε_N": ("tanh", "zero-mean", "backward"),
    "tanh · non-zero-mean · ε_N": ("tanh", "non-zero-mean", "backward"),
    "linear · zero-mean · δ₁": ("linear", "zero-mean", "forward"),
}
NULL_SERIES = ["tanh · zero-mean · ε_N", "linear · zero-mean · δ₁"]  # zero-mean cases whose bias is exactly 0


@dataclass
class Study:
    """The chains and streams of one run of the chapter."""

    width: int
    linear_scale: float
    tanh_gain: float
    seed: int = 0
    group_rows: int = GROUP_ROWS
    n_jobs: int = -1  # joblib workers for the measurements (-1: all cores); the rows do not depend on it
    _streams: itertools.count = field(init=False, repr=False)

    def __post_init__(self):
        self.x = unit_vector(self.width, self.seed)
        self._streams = itertools.count(self.seed * 1_000_000)  # one fresh stream per measurement

    def linear_chain(self, N: int):
        """N − 1 orthogonal layers of norm s, then a unit-norm readout row: (net, w, Ws)."""
        net, _, Ws = scaled_layers(N, self.width, self.linear_scale, "orthogonal", self.seed)
        Ws[-1] = Ws[-1] / np.linalg.norm(Ws[-1])
        return net, np.concatenate([W.ravel() for W in Ws]), Ws

    def tanh_chain(self, L: int):
        return tanh_chain(L, self.width, self.tanh_gain, self.seed)

    def measure(self, chain: str, net, w, where: str, k: int, p, n: int, **labels) -> tuple:
        """One measurement to run: the arguments of :func:`error_vs_bounds` (its seed drawn now,
        in the order measurements are listed) and the row's labels.  :meth:`table` runs them."""
        args = dict(net=net, w=w, x=self.x, where=where, k=k, p=p, n_draws=n, seed=next(self._streams),
                    max_batch=self.group_rows)
        return args, dict(chain=chain, **labels)

    def table(self, measurements: list) -> pd.DataFrame:
        """Run the measurements, one row each in the order given, on ``n_jobs`` joblib workers.

        Each measurement's seed was fixed when it was listed, so the rows are the same bits
        whatever the number of workers; the costliest (draws × operators) are sent first."""
        out = costliest_first(error_vs_bounds, [a for a, _ in measurements],
                              lambda a: a["n_draws"] * len(a["net"]), self.n_jobs)
        return pd.DataFrame([{**row, **labels} for row, (_, labels) in zip(out, measurements)])

    def _exact_linear(self, Ws, where, k, p):
        return linear_chain_error(Ws, self.x, where, k, mean=p.mean, var=(p.high - p.low) ** 2 / 12)

    def depth(self, linear_depths, tanh_layers, sigma: float, n_draws: int, bias_draws: int) -> pd.DataFrame:
        """(a): per linear depth, zero-mean δ₁ and ε_N and non-zero-mean δ₁ (with closed forms);
        per tanh chain, zero-mean δ₁ (``bias_draws`` draws) and ε_N."""
        zero, nonzero = pert.zero_mean_uniform(sigma, self.width), pert.nonzero_mean_uniform(sigma, self.width)
        rows = []
        for N in linear_depths:
            net, w, Ws = self.linear_chain(N)
            for where, k, p, law in (("forward", 1, zero, "zero-mean"), ("backward", N, zero, "zero-mean"),
                                     ("forward", 1, nonzero, "non-zero-mean")):
                mse, bias = self._exact_linear(Ws, where, k, p)
                rows.append(self.measure("linear", net, w, where, k, p, n_draws, law=law, L=np.nan,
                                         exact_mse=mse, exact_bias_sq=bias))
        for L in tanh_layers:
            net, w = self.tanh_chain(L)
            rows.append(self.measure("tanh", net, w, "forward", 1, zero, bias_draws, law="zero-mean", L=L))
            rows.append(self.measure("tanh", net, w, "backward", len(net), zero, n_draws, law="zero-mean", L=L))
        t = self.table(rows)
        t["amplification"] = t.mse / t.second
        t["label"] = np.where(t["where"] == "forward", "δ₁", "ε_N")
        return t

    def location(self, linear_depth: int, tanh_layers: int, sigma: float, n_draws: int) -> pd.DataFrame:
        """(b): a zero-mean perturbation at every forward location 1..N−1 and backward location 2..N."""
        p = pert.zero_mean_uniform(sigma, self.width)
        rows = []
        for chain, (net, w) in (("linear", self.linear_chain(linear_depth)[:2]), ("tanh", self.tanh_chain(tanh_layers))):
            N = len(net)
            rows += [self.measure(chain, net, w, "forward", i, p, n_draws) for i in range(1, N)]
            rows += [self.measure(chain, net, w, "backward", k, p, n_draws) for k in range(2, N + 1)]
        t = self.table(rows)
        t["amplification"] = t.mse / t.second
        t["bound_coefficient"] = t.mse_bound / t.second  # C^e_δ_k or C^e_ε_k
        return t

    def bias(self, sigmas, tanh_layers: int, bias_draws: int) -> pd.DataFrame:
        """(c): tanh chain, δ₁ and ε_N, zero- and non-zero-mean; linear control of the same depth, zero-mean δ₁."""
        net, w = self.tanh_chain(tanh_layers)
        N = len(net)
        ctrl_net, ctrl_w, _ = self.linear_chain(N)
        rows = []
        for s in sigmas:
            for law, make in LAWS.items():
                for where, k in (("forward", 1), ("backward", N)):
                    rows.append(self.measure("tanh", net, w, where, k, make(s, self.width), bias_draws, law=law, sigma=s))
            rows.append(self.measure("linear", ctrl_net, ctrl_w, "forward", 1, pert.zero_mean_uniform(s, self.width), bias_draws,
                                     law="zero-mean", sigma=s))
        t = self.table(rows)
        t["z"] = t.bias_sq / t.bias_sq_se
        t["series"] = t.chain + " · " + t.law + " · " + np.where(t["where"] == "forward", "δ₁", "ε_N")
        return t


def growth(depth: pd.DataFrame) -> pd.DataFrame:
    """Growth per added operator of the measured error and of the bound (13), per (chain, perturbation):
    exp of the least-squares slope of log against N (with its 95% interval), and the bound's
    factor between the two shallowest and the two deepest chains."""
    rows = []
    for (chain, lab), g in depth[depth.law == "zero-mean"].groupby(["chain", "label"], sort=False):
        g = g.sort_values("N")
        fm, fb = log_slope(g.N, g.mse, log_x=False), log_slope(g.N, g.mse_bound, log_x=False)
        step = lambda a, b: (g.mse_bound.iloc[b] / g.mse_bound.iloc[a]) ** (1 / (g.N.iloc[b] - g.N.iloc[a]))  # noqa: E731
        lo, hi = np.exp(fm.ci())
        exact = np.exp(log_slope(g.N, g.exact_mse, log_x=False).slope) if chain == "linear" else np.nan
        rows.append(dict(chain=chain, perturbation=lab, measured_factor=np.exp(fm.slope), measured_ci_low=lo, measured_ci_high=hi,
                         closed_form_factor=exact, bound_factor_fit=np.exp(fb.slope), bound_factor_first=step(0, 1),
                         bound_factor_last=step(-2, -1), depths=f"{g.N.min()}..{g.N.max()}"))
    return pd.DataFrame(rows)


def hierarchy(location: pd.DataFrame) -> pd.DataFrame:
    """Per chain: E‖ũ − u‖² for δ₁ over δ_(N−1) and for ε_N over ε₂, measured and in the bound's coefficients."""
    rows = []
    for chain, sub in location.groupby("chain", sort=False):
        N = int(sub.N.iloc[0])
        at = {(r["where"], r.k): r for _, r in sub.iterrows()}
        d1, dN1, eN, e2 = at["forward", 1], at["forward", N - 1], at["backward", N], at["backward", 2]
        rows.append(dict(chain=chain, N=N, forward_ratio=d1.mse / dN1.mse, forward_ratio_bound=d1.mse_bound / dN1.mse_bound,
                         backward_ratio=eN.mse / e2.mse, backward_ratio_bound=eN.mse_bound / e2.mse_bound))
    return pd.DataFrame(rows)


def tightness_cases(depth: pd.DataFrame) -> list:
    """(title, rows, measured column, bound column) for the four columns of the tightness figure."""
    return [
        ("Theorem 1 · linear", depth[(depth.chain == "linear") & (depth.law == "zero-mean")], "mse", "mse_bound"),
        ("Theorem 1 · tanh", depth[depth.chain == "tanh"], "mse", "mse_bound"),
        ("Theorem 2 · tanh · zero-mean", depth[(depth.chain == "tanh") & (depth["where"] == "forward")], "bias_sq", "bias_bound"),
        ("Theorem 2 · linear · non-zero-mean", depth[(depth.chain == "linear") & (depth.law == "non-zero-mean")], "bias_sq", "bias_bound"),
    ]


def tightness(depth: pd.DataFrame) -> pd.DataFrame:
    """Every resolved measurement of (a) (estimate > RESOLVED_Z standard errors) next to its bound,
    printed and derived constants, with the ratio bound / measured."""
    rows = []
    for case, sub, meas, bnd in tightness_cases(depth):
        for lab, g in sub.groupby("label", sort=False):
            g = g.sort_values("N")
            for _, r in g[g[meas] > RESOLVED_Z * g[meas + "_se"]].iterrows():
                rows.append(dict(case=case, perturbation=lab, N=r.N, measured=r[meas], measured_se=r[meas + "_se"],
                                 bound=r[bnd], bound_derivation=r[bnd + "_derivation"], ratio=r[bnd] / r[meas],
                                 ratio_derivation=r[bnd + "_derivation"] / r[meas]))
    return pd.DataFrame(rows)


def looseness(tight: pd.DataFrame) -> pd.DataFrame:
    """Per (case, perturbation) with ≥ 3 depths: the tightness ratio at the shallow and deep ends and its
    growth in orders of magnitude per operator (printed constants; derived ones where a printed bound is 0)."""
    rows = []
    for (case, lab), g in tight.groupby(["case", "perturbation"], sort=False):
        g = g.sort_values("N")
        printed = bool((g.ratio > 0).all())
        r = g.ratio if printed else g.ratio_derivation
        if len(g) >= 3:
            f = log_slope(g.N, r, log_x=False)
            rows.append(dict(case=case, perturbation=lab, constants="printed" if printed else "derivation",
                             depths=f"{int(g.N.min())}..{int(g.N.max())}", ratio_shallowest=r.iloc[0], ratio_deepest=r.iloc[-1],
                             orders_per_operator=f.slope / np.log(10),
                             orders_per_operator_last=np.log10(r.iloc[-1] / r.iloc[-2]) / (g.N.iloc[-1] - g.N.iloc[-2])))
    return pd.DataFrame(rows)


def bias_exponent(bias: pd.DataFrame, series: str, upper: float | None = None):
    """(fit, rows): log-log slope of the resolved squared bias (z > RESOLVED_Z) against σ, optionally for σ ≤ upper."""
    g = bias[(bias.series == series) & (bias.z > RESOLVED_Z)]
    if upper is not None:
        g = g[g.sigma <= upper]
    return (log_slope(g.sigma, g.bias_sq) if len(g) >= 2 else None), len(g)


def _arrow(a: float, b: float, digits: int = 2) -> str:
    return f"{number(a, digits)} → {number(b, digits)}"


def growth_view(growth_t: pd.DataFrame) -> pd.DataFrame:
    """:func:`growth` as the page shows it: the measured factor with its 95 % interval, the closed
    form, the bound's fitted factor and its factor at the shallow → deep end."""
    return pd.DataFrame(dict(
        chain=growth_t.chain, perturbation=growth_t.perturbation,
        measured=[f"{number(m)} ({number(lo)}–{number(hi)})" for m, lo, hi in
                  zip(growth_t.measured_factor, growth_t.measured_ci_low, growth_t.measured_ci_high)],
        closed_form=growth_t.closed_form_factor, bound_fit=growth_t.bound_factor_fit,
        bound_shallow_to_deep=[_arrow(a, b, 3) for a, b in zip(growth_t.bound_factor_first, growth_t.bound_factor_last)],
    )).reset_index(drop=True)


def looseness_view(loose: pd.DataFrame) -> pd.DataFrame:
    """:func:`looseness` as the page shows it: one case per row, the tightness ratio at the
    shallowest → deepest chain, and its growth in orders of magnitude per operator."""
    return pd.DataFrame(dict(
        case=loose.case + " · " + loose.perturbation, constants=loose.constants,
        N=loose.depths,
        ratio=[_arrow(a, b) for a, b in zip(loose.ratio_shallowest, loose.ratio_deepest)],
        orders_per_operator=loose.orders_per_operator, at_the_deep_end=loose.orders_per_operator_last,
    )).reset_index(drop=True)


def summary(growth_t: pd.DataFrame, hier: pd.DataFrame, bias: pd.DataFrame, loose: pd.DataFrame, sigmas, N_bias: int) -> pd.DataFrame:
    """The chapter's measured numbers next to the bounds', one row per quantity ("—" where the
    row has no measured value of its own: the tightness rows give the ratio bound / measured)."""
    rows = [dict(quantity=f"growth per operator, {r.chain} · {r.perturbation}", measured=f"×{number(r.measured_factor)}",
                 bound=f"×{number(r.bound_factor_fit)} (fit), ×{number(r.bound_factor_last)} (deep end)")
            for r in growth_t.itertuples()]
    for r in hier.itertuples():
        rows.append(dict(quantity=f"δ₁ / δ_(N−1), {r.chain}, N = {r.N}", measured=number(r.forward_ratio),
                         bound=number(r.forward_ratio_bound)))
        rows.append(dict(quantity=f"ε_N / ε₂, {r.chain}, N = {r.N}", measured=number(r.backward_ratio),
                         bound=number(r.backward_ratio_bound)))
    mid = float(np.exp(np.mean(np.log(sigmas))))
    f_fwd, _ = bias_exponent(bias, "tanh · zero-mean · δ₁", upper=mid)
    if f_fwd is not None:
        fz = bias[bias.series == "tanh · zero-mean · δ₁"]
        rows.append(dict(quantity=f"bias exponent, zero-mean δ₁, tanh N = {N_bias}",
                         measured=f"{number(f_fwd.slope)} ± {number(1.96 * f_fwd.slope_se, 2)}",
                         bound=number(log_slope(fz.sigma, fz.bias_bound).slope)))
    for n in ("tanh · non-zero-mean · δ₁", "tanh · non-zero-mean · ε_N"):
        f, _ = bias_exponent(bias, n)
        if f is not None:
            rows.append(dict(quantity=f"bias exponent, {n.split(' · ', 1)[1]}",
                             measured=f"{number(f.slope, 4)} ± {number(1.96 * f.slope_se, 2)}", bound="2 (leading term)"))
    zmax = float(bias[bias.series.isin(NULL_SERIES)].z.abs().max())
    rows.append(dict(quantity="zero-mean bias: ε_N (tanh), δ₁ (linear)", measured=f"|estimate| ≤ {zmax:.2f} s.e.",
                     bound="0 (ε); σ⁴ term (δ)"))
    rows += [dict(quantity=f"tightness, {r.case} · {r.perturbation}", measured=None,
                  bound=f"bound / measured {_arrow(r.ratio_shallowest, r.ratio_deepest)} (N = {r.depths})")
             for r in loose.itertuples()]
    return pd.DataFrame(rows)
