"""The compiled sweep engine for the Section 7 experiments.

It runs many configurations of perturbed SGD on the logistic regression of
eqs. (53)-(54) in lockstep: one numba kernel (:mod:`fbsgd.engine.kernel`) advances a
block of C configurations through the same iterations, tile by tile of the
data, so each slice of the data matrix is read from L1 by every configuration.

What one iteration computes for configuration c is the perturbed pass of
:func:`fbsgd.passes.perturbed_passes` on the two-operator chain
f₁ = -y hᵀw, f₂ = ln(1 + e^{f₁}), written out for this chain:

    z_l   = f₁(a_l, w) = -a_lᵀw                     (4a), with a_l = y_l h_l
    z̃_l   = P_f(z_l), e.g. z_l + δ_l                (5a)  forward perturbation
    ṽ_l   = P_b(σ(z̃_l)), e.g. σ(z̃_l) + ε_l          (5b)  backward perturbation
    ũ     = (1/M) Σ_l ∇₂f₁ᵀ ṽ_l = -(1/M) Σ_l a_l ṽ_l (5c)
    w    ← w - γ (ũ + ρ∇R(w) + ξ),  ξ ~ N(0, σ_n² I)  (5d) + sampling noise

This module turns the core's objects into the kernel's numbers: each placed
perturbation is read through its protocol (:meth:`compiled` and
:attr:`schedule`, :mod:`fbsgd.perturbations`) by :func:`compile_plan`, and
every random number is drawn from the same counter-based streams
(:mod:`fbsgd.rng`) with the same keys as the core.  :func:`reference_run` runs
the same configuration through the core (:func:`fbsgd.optimizers.train`);
``tests/test_engine.py`` checks that the two agree, and
``benchmarks/engine_speed.py`` times one against the other.

The metric is the exact, unperturbed gradient norm ‖∇f(w_t)‖ of the
regularized loss every ``metric_every`` iterations, computed in the pass from
the same z (σ(z) summed in float64); the loss gap f(w_t) − f* is computed in
float64 at the checkpoints the sweep asks for.  A configuration whose weights
overflow or exceed 1e8 is marked diverged at that iteration and frozen;
nothing raises and nothing warns.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from fbsgd.engine import kernel as _kernel_module
from fbsgd import rng
from fbsgd.engine.kernel import NEVER, PARAMS, TILE
from fbsgd.perturbations import Plan
from fbsgd.vecmath import sigmoid_fast, sigmoid_fast32
from fbsgd.engine.provenance import source_hash
from fbsgd.engine.storage import atomic_write_bytes
from fbsgd.optimizers import SGD, AddNoise, PassGradient, train

__all__ = ["kernel_params", "compile_plan", "kernel", "sigmoid_fast", "sigmoid_fast32", "reference_run", "xi_key",
           "KINDS", "PARAMS", "TILE"]

KINDS = {"none": 0, "uniform": 1, "round": 2, "bitflip": 3}


def _place_row(p, key: int) -> dict:
    """Kernel numbers of one placed perturbation, read from its protocol (compiled op and schedule)."""
    off = dict(kind=0, a=0.0, b=0.0, c=0.0, d=0.0, flag=0, ps=0, interval=1, first=0, until=0, key=0)
    if p is None:
        return off
    op, sched = p.compiled(), p.schedule
    if op.kind not in KINDS:
        raise NotImplementedError(f"the compiled engine has no kernel for operations of kind {op.kind!r} ({p!r})")
    if not sched.regular:
        raise NotImplementedError(
            f"the compiled engine needs a schedule with a first step, an interval and a last step; {p!r} acts at "
            "irregular steps. Use evenly spaced steps (every, budget) or fbsgd.passes.perturbed_passes")
    if sched.empty:
        return off
    nums = [float(v) for v in op.params[:4]] + [0.0] * (4 - min(4, len(op.params)))
    flag = int(op.params[4]) if len(op.params) > 4 else 0
    until = NEVER if sched.last is None else sched.last + 1
    return dict(kind=KINDS[op.kind], a=nums[0], b=nums[1], c=nums[2], d=nums[3], flag=flag, ps=int(op.per_sample),
                interval=sched.interval, first=sched.first, until=until, key=key)


def compile_plan(plan: Plan, seed: int) -> dict:
    """Kernel numbers (``f_*`` and ``b_*`` fields of :data:`PARAMS`) of a core Plan: δ at
    operator 1 and ε at operator 2 of the logistic chain.

    Reads each perturbation's protocol; anything the kernel cannot run raises
    ``NotImplementedError`` naming the perturbation and what the engine supports.
    """
    plan.validate(2)
    extra = set(plan.forward) - {1} | set(plan.backward) - {2}
    if extra:
        raise NotImplementedError(f"the logistic chain takes δ at operator 1 and ε at operator 2 only; got {sorted(extra)}")
    state = plan.init(seed)
    row = {}
    for prefix, where, i, perts in (("f", "forward", 1, plan.forward), ("b", "backward", 2, plan.backward)):
        p = perts.get(i)
        place = _place_row(p, state[(where, i)].key if p is not None else 0)
        row.update({f"{prefix}_{k}": v for k, v in place.items()})
    return row


def kernel_params(rows: list[dict]) -> np.ndarray:
    """The kernel's parameter records (one per configuration) from dicts with every field of :data:`PARAMS`."""
    out = np.zeros(len(rows), dtype=PARAMS)
    for i, r in enumerate(rows):
        missing = set(PARAMS.names) - set(r)
        if missing:
            raise ValueError(f"kernel parameters need the fields {sorted(missing)}")
        for name in PARAMS.names:
            out[i][name] = r[name]
    return out


def xi_key(seed: int) -> int:
    """Key of the sampling-noise stream ξ of a run."""
    return rng.derive_key("fbsgd.engine.xi", int(seed))


# ----------------------------------------------------------------------------
# Loading the kernel: a copy named by the source hash, so numba's cache can never be stale
# ----------------------------------------------------------------------------

_KERNELS: dict = {}
_PRECISION_LINES = {
    "float32": ("FLOAT = np.float32", "SIGMOID = sigmoid_fast32", "UNIFORM = rng.uniform01_f32"),
    "float64": ("FLOAT = np.float64", "SIGMOID = sigmoid_fast", "UNIFORM = rng.uniform01_scalar"),
}


def kernel_dir() -> Path:
    """Where kernel copies live ($FBSGD_KERNEL_DIR, else ~/.cache/fbsgd/kernels); numba caches their machine code beside them."""
    env = os.environ.get("FBSGD_KERNEL_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fbsgd" / "kernels"


def kernel_source(precision: str = "float32") -> str:
    """The text of :mod:`fbsgd.engine.kernel` for the given precision of the pass."""
    if precision not in _PRECISION_LINES:
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    text = Path(_kernel_module.__file__).read_text()
    for a, b in zip(_PRECISION_LINES["float32"], _PRECISION_LINES[precision]):
        if a not in text:
            raise RuntimeError(f"fbsgd/engine/kernel.py has lost its precision line {a!r}")
        text = text.replace(a, b, 1)
    return text


_SPECIALISED = """

# ---------------------------------------------------------------------------
# Specialised to d = {d} by fbsgd.engine.lockstep.kernel(): the three dot products over
# the features written out term by term, which LLVM vectorizes over the
# samples (the loops above do not vectorize; benchmarks/engine_speed.py).
# ---------------------------------------------------------------------------


@njit(inline="always", cache=True)
def scores(AT, l0, n, w, z):
{rows}
{ws}
    for i in range(n):
        z[i] = -({dot})


@njit(inline="always", cache=True)
def accumulate(AT, l0, n, v, G, c):
{rows}
{zero}
    for i in range(n):
        vi = v[i]
{acc}
{store}


@njit(inline="always", cache=True)
def accumulate64(AT, l0, n, s, G, c):
{rows}
{zero64}
    for i in range(n):
        vi = np.float64(s[i])
{acc64}
{store}
"""


def _specialised(d: int) -> str:
    """Source of :func:`fbsgd.engine.kernel.scores`, ``accumulate`` and ``accumulate64`` unrolled over d features."""
    lines = lambda fmt, sep="\n": sep.join(fmt.format(j=j) for j in range(d))
    return _SPECIALISED.format(
        d=d, rows=lines("    r{j} = AT[{j}, l0:l0 + n]"), ws=lines("    w{j} = w[{j}]"),
        dot=lines("r{j}[i] * w{j}", " + "), zero=lines("    a{j} = FLOAT(0.0)"), zero64=lines("    a{j} = 0.0"),
        acc=lines("        a{j} += r{j}[i] * vi"), acc64=lines("        a{j} += np.float64(r{j}[i]) * vi"),
        store=lines("    G[c, {j}] += a{j}"))


def kernel(d: int, precision: str = "float32", specialise: bool = True):
    """The compiled :func:`fbsgd.engine.kernel.run_block` for d features and the given precision of the pass.

    The kernel's source (with its dot products specialised to d,
    :func:`_specialised`) is written to :func:`kernel_dir` under a name that
    carries the hash of every fbsgd module the engine reaches
    (:func:`fbsgd.engine.provenance.source_hash`) and imported from there, so numba's
    on-disk cache makes every later process start without compiling, and an
    edit anywhere the kernel reaches can never run old machine code.
    ``specialise=False`` keeps the plain loops over the features (for the benchmark).
    """
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    key = (int(d), precision, bool(specialise))
    if key in _KERNELS:
        return _KERNELS[key]

    source = kernel_source(precision) + (_specialised(int(d)) if specialise else "")
    name = f"fbsgd_kernel_d{int(d) if specialise else 'any'}_{precision}_{source_hash('fbsgd.engine.lockstep')}"
    path = kernel_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        atomic_write_bytes(path, source.encode())
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _KERNELS[key] = module.run_block
    return module.run_block


# ----------------------------------------------------------------------------
# The naive reference: the same run through the core, one step at a time
# ----------------------------------------------------------------------------


def reference_run(problem, plan: Plan, plan_seed: int, gamma: float, T: int, noise_std: float, noise_seed_key: int,
                  w0=None, metric_every: int = 1):
    """One configuration through the core: :func:`fbsgd.optimizers.train` with the perturbed
    passes as estimator, the regularizer's gradient, and the sampling noise ξ as a transformation.

    Returns (w_T, ‖∇f(w_t)‖ at t = 0, k, 2k, ... < T, diverged_at or −1).  Same
    arithmetic as the float64 kernel up to floating-point rounding.
    """

    w0 = np.zeros(problem.d) if w0 is None else np.array(w0, dtype=float)
    estimator = _SeededPasses(PassGradient(problem.net, plan), plan_seed)
    run = train(estimator, w0, AddNoise(SGD(gamma), noise_std, noise_seed_key), T, problem.data,
                regularizer_grad=lambda w: problem.rho * problem.regularizer.gradient(w),
                metrics={"grad_norm": lambda w: float(np.linalg.norm(problem.gradient(w)))}, record_every=metric_every)
    keep = run.t < T
    norms = run["grad_norm"][keep]
    if run.diverged:
        norms = norms[run.t[keep] <= run.diverged_at]
    return run.w, norms, run.diverged_at


class _SeededPasses:
    """The passes with the plan's streams keyed by ``plan_seed`` (as the sweeps key them)."""

    def __init__(self, passes, plan_seed):
        self.passes, self.plan_seed = passes, plan_seed

    def init(self, seed):
        return self.passes.init(self.plan_seed)

    def __call__(self, w, x, state):
        return self.passes(w, x, state)
