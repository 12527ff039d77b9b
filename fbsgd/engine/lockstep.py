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
``tests/engine/test_lockstep.py`` checks that the two agree, and
``benchmarks/engine_speed.py`` times one against the other.

The metric is the exact, unperturbed gradient norm ‖∇f(w_t)‖ of the
regularized loss every ``metric_every`` iterations, computed in the pass from
the same z (σ(z) summed in float64); the loss gap f(w_t) − f* is computed in
float64 at the checkpoints the sweep asks for.  A configuration whose weights
overflow or exceed 1e8 is marked diverged at that iteration and frozen;
nothing raises and nothing warns.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fbsgd import rng
from fbsgd.engine import chain_kernel as CK
from fbsgd.engine import kernel as K
from fbsgd.engine.chains import _SCOPE_CODES, _form
from fbsgd.engine.kernel import NEVER, PARAMS, PLACE, TILE, kernel_dir
from fbsgd.optimizers import SGD, AddNoise, PassGradient, train
from fbsgd.perturbations import Plan
from fbsgd.vecmath import sigmoid_fast, sigmoid_fast32

__all__ = ["kernel_params", "compile_plan", "kernel", "KernelParams", "sigmoid_fast", "sigmoid_fast32", "reference_run",
           "xi_key", "kernel_dir", "KINDS", "PARAMS", "PLACE", "TILE"]

# the compiled forms the kernel runs (their ``kind``) and the kernel's code for each: Top-K, Rand-K and the
# kinds with memory (around any memoryless form of the chain kernel) are sites of the chain kernel (SITE)
KINDS = {"uniform": K.UNIFORM, "round": K.ROUND, "bitflip": K.BITFLIP, "element": K.ELEMENT, "block": K.BLOCK,
         "topk": K.SITE, "randk": K.SITE, "feedback": K.SITE, "delta": K.SITE}
# the compiled forms of fbsgd.perturbations, by kind (what the NotImplementedError and the sweeps' notice list)
FORMS = {"uniform": "UniformOp", "round": "RoundOp", "bitflip": "BitFlipOp", "element": "ElementOp", "block": "BlockOp",
         "topk": "TopKOp", "randk": "RandKOp", "feedback": "ErrorFeedbackOp", "delta": "DeltaOp"}


def compiled_kinds() -> str:
    """The compiled forms this kernel runs, from :data:`KINDS`: "UniformOp ('uniform'), ..."."""
    return ", ".join(f"{FORMS.get(k, k)} ({k!r})" for k in KINDS)


def _site_row(op, p, key: int, slot: int) -> dict:
    """A SITE place: its integers (:data:`fbsgd.engine.chain_kernel.SITE_INTS`, schedule filled in by the
    caller), numbers and stream key as :func:`fbsgd.engine.chains.compile_sites` writes a site (a kind with
    memory draws from ``fold_key(key, 0)``, its compressor's stream); ``element`` the numba function of an
    element or block form inside (slot 0 forward, 1 backward), ``block_fn`` whether it is a block function."""
    code, vals, wrap, inner = _form(op, p)
    k = getattr(inner, "k", getattr(inner, "block", 0))
    scope = inner.mode if code == CK.BLOCK else _SCOPE_CODES.get(getattr(inner, "scope", "per_sample"), 0)
    site = [code, int(bool(inner.per_sample)), 0, 1, 0, wrap, k, scope, 0, len(vals), slot]
    fn = inner.fn if code in (CK.ELEMENT, CK.BLOCK) else None
    return dict(kind=K.SITE, key=int(rng.fold_key(key, 0) if wrap != CK.PLAIN else key) % 2**64, site=site,
                site_numbers=tuple(vals), element=fn, block_fn=code == CK.BLOCK, numbers=())


def _place_row(p, key: int, slot: int = 0) -> dict:
    """Kernel numbers of one placed perturbation, read from its protocol: the named fields of its
    compiled form (:class:`fbsgd.perturbations.CompiledOp`) and its schedule.  Besides the fields of
    :data:`PLACE`: ``element`` (the numba function of an element or block operation, else None),
    ``numbers`` (its numbers), ``block_fn`` (the function is a block function); for a SITE place ``site``
    and ``site_numbers`` (:func:`_site_row`).  ``slot``: 0 forward, 1 backward."""
    off = dict(kind=K.NONE, key=0, element=None, numbers=())
    if p is None:
        return off
    op, sched = p.compiled(), p.schedule
    kind = getattr(op, "kind", None)
    if kind not in KINDS:
        raise NotImplementedError(f"the Section 7 compiled engine cannot run {p!r}: it has no kernel for operations of "
                                  f"kind {kind!r}; it runs the compiled forms of fbsgd.perturbations "
                                  f"{compiled_kinds()} (with memory: around a memoryless one)")
    if KINDS[kind] == K.SITE:
        try:
            site = _site_row(op, p, key, slot)
        except NotImplementedError as exc:
            raise NotImplementedError(f"the Section 7 compiled engine cannot run {p!r}: {exc}; it runs the compiled "
                                      f"forms of fbsgd.perturbations {compiled_kinds()} (with memory: around a "
                                      "memoryless one)") from None
    if not sched.regular:
        raise NotImplementedError(
            f"the compiled engine needs a schedule with a first step, an interval and a last step; {p!r} acts at "
            "irregular steps. Use evenly spaced steps (every, budget) or fbsgd.passes.perturbed_passes")
    if sched.empty:
        return off
    row = dict(kind=KINDS[kind], per_sample=int(bool(op.per_sample)), first=sched.first, interval=sched.interval,
               until=NEVER if sched.last is None else sched.last + 1, key=key, element=None, numbers=())
    if KINDS[kind] == K.SITE:
        row.update(site)
        row["site"][2:5] = row["first"], row["interval"], row["until"]
    elif kind == "element":
        row.update(element=op.fn, numbers=tuple(op.numbers))
    elif kind == "block":
        # the message is one column: axis None or 0 cuts it into blocks over consecutive samples, axis -1
        # cuts each one-entry row (blocks of one entry)
        row.update(element=op.fn, numbers=tuple(op.numbers), block=1 if op.axis == -1 else op.block, block_fn=True)
    else:
        row.update({name: getattr(op, name) for name in op.FIELDS})
    return row


def compile_plan(plan: Plan, seed: int) -> dict:
    """Kernel numbers of a core Plan: δ at operator 1 (``f_*``) and ε at operator 2 (``b_*``) of the
    logistic chain, each place's fields of :data:`PLACE` plus its ``element`` and ``numbers``.

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
        place = _place_row(p, state[(where, i)].key if p is not None else 0, 0 if prefix == "f" else 1)
        row.update({f"{prefix}_{k}": v for k, v in place.items()})
    return row


class KernelParams(NamedTuple):
    """The kernel's inputs for C configurations: ``P`` the records of :data:`PARAMS`, ``U`` (C, 2, K) the
    numbers of the element and block operations (forward, backward), ``elements`` the (forward, backward)
    element or block functions of each configuration (:func:`fbsgd.engine.kernel.no_element` where a place
    has none), ``blocks`` whether each is a block function; ``S`` (C, 2, :data:`~fbsgd.engine.chain_kernel.SITE_INTS`)
    and ``SF`` (C, 2, F) the integers and numbers of the SITE places (Top-K, Rand-K, kinds with memory);
    ``memory`` their memories once a run has started (``memory[M]``: (C, 2, M) float64, zero at the start,
    kept from one call of the kernel to the next, so a run cut into calls t0..t1 is the run in one call)."""

    P: np.ndarray
    U: np.ndarray
    elements: list
    blocks: list
    S: np.ndarray
    SF: np.ndarray
    memory: dict


_TOP = [n for n in PARAMS.names if n not in ("f", "b")]


def kernel_params(rows: list[dict]) -> KernelParams:
    """The kernel's inputs from one dict per configuration (as :func:`compile_plan` plus the update's
    numbers ``gamma``, ``rho``, ``reg``, ``noise_std``, ``xi_key``, ``f_star``, ``metric64``); a place's
    fields missing from a dict are 0 (a kind reads only its own)."""
    C = len(rows)
    K_numbers = max([1] + [len(r.get(f"{w}_numbers", ())) for r in rows for w in "fb"])
    P = np.zeros(C, dtype=PARAMS)
    U = np.zeros((C, 2, K_numbers))
    S = np.zeros((C, 2, len(CK.SITE_INTS)), np.int64)
    S[:, :, 3] = 1
    SF = np.zeros((C, 2, max([5] + [len(r.get(f"{w}_site_numbers", ())) for r in rows for w in "fb"])))
    elements, blocks = [], []
    for c, r in enumerate(rows):
        missing = {n for n in _TOP + ["f_kind", "b_kind"] if n not in r}
        if missing:
            raise ValueError(f"kernel parameters need the fields {sorted(missing)}")
        for name in _TOP:
            P[c][name] = r[name]
        for j, w in enumerate("fb"):
            for name in PLACE.names:
                if f"{w}_{name}" in r:
                    P[c][w][name] = r[f"{w}_{name}"]
            numbers = r.get(f"{w}_numbers", ())
            U[c, j, : len(numbers)] = numbers
            if r.get(f"{w}_site") is not None:
                S[c, j] = r[f"{w}_site"]
                vals = r.get(f"{w}_site_numbers", ())
                SF[c, j, : len(vals)] = vals
        elements.append(tuple(r.get(f"{w}_element") or K.no_element for w in "fb"))
        blocks.append(tuple(bool(r.get(f"{w}_block_fn", r.get(f"{w}_kind") == K.BLOCK)) for w in "fb"))
    return KernelParams(P, U, elements, blocks, S, SF, {})


def _share_slot(f, b, none):
    """The two places' functions of one kind (element or block) with an unused slot (``none``) given the
    other place's function.  The kernel calls a place's function only when that place's kind is an element
    (block) operation, so the unused slot's function is never called; sharing it makes a configuration with
    the function at the forward place and one with it at the backward place one machine code (numba
    compiles a kernel per tuple of function types, in each process) instead of two."""
    if f is none:
        return b, b
    if b is none:
        return f, f
    return f, b


def kernel(d: int, precision: str = "float32"):
    """The Section 7 kernel for d features and the given precision of the pass: a function
    ``run(AT, AT64, W, t0, t1, metric_every, params, norms, gap_at, gaps, diverged_at)`` that advances
    the configurations of ``params`` (:func:`kernel_params`) as :func:`fbsgd.engine.kernel.block_kernel`
    documents.

    Configurations whose places run a researcher's element operation go, grouped by their pair of
    element functions, through :func:`fbsgd.engine.kernel.element_kernel`; those with a block operation
    (BlockOp) at a place through :func:`fbsgd.engine.kernel.message_kernel` (each configuration's whole
    message at once: blocks of any size over consecutive samples); those with Top-K, Rand-K or a kind with
    memory at a place (SITE) through :func:`fbsgd.engine.kernel.memory_kernel` (cached on disk), or
    ``message_kernel`` when a researcher's function is involved; the others through ``block_kernel``;
    each configuration's arithmetic is its own, so the grouping changes no bit.  The memories of the
    SITE places live in ``params.memory`` (:class:`KernelParams`), kept from one call to the next.
    """
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    d, dtype = int(d), np.dtype(precision)

    def run(AT, AT64, W, t0, t1, metric_every, params, norms, gap_at, gaps, diverged_at):
        if AT.dtype != dtype or AT.shape[0] != d or W.shape[1] != d:
            raise ValueError(f"the kernel for d = {d} in {precision} needs AT of shape ({d}, M) and dtype {precision} "
                             f"and W of shape (C, {d}); got AT {AT.shape} {AT.dtype}, W {W.shape}")
        if not isinstance(params, KernelParams):
            raise ValueError("params must be the KernelParams of fbsgd.engine.lockstep.kernel_params")
        P, U, elements, blocks, S, SF, memory = params
        plain = K.no_element, K.no_element
        site = (P["f"]["kind"] == K.SITE) | (P["b"]["kind"] == K.SITE)
        if not site.any() and all(e == plain for e in elements):
            K.block_kernel(d)(AT, AT64, W, t0, t1, metric_every, P, U, norms, gap_at, gaps, diverged_at)
            return
        M = AT.shape[1]
        if site.any() and M not in memory:
            memory[M] = np.zeros((len(P), 2, M))
        Mem = memory.get(M, np.zeros((len(P), 2, 0)))
        groups: dict = {}
        for c, e in enumerate(elements):
            groups.setdefault((e, blocks[c], bool(site[c])), []).append(c)
        for ((f_element, b_element), fn_blocks, has_site), idx in groups.items():
            idx = np.array(idx)
            Wg, ng, gg, dg, Mg = W[idx], norms[idx], gaps[idx], diverged_at[idx], Mem[idx]
            if (f_element, b_element) == plain and not has_site:
                K.block_kernel(d)(AT, AT64, Wg, t0, t1, metric_every, P[idx], U[idx], ng, gap_at, gg, dg)
            elif (f_element, b_element) == plain:
                K.memory_kernel(d)(AT, AT64, Wg, t0, t1, metric_every, P[idx], U[idx], ng, gap_at, gg, dg, S[idx],
                                   SF[idx], Mg)
            elif any(fn_blocks) or has_site:
                fe, fb = (K.no_element, f_element) if fn_blocks[0] else (f_element, K.no_block)
                be, bb = (K.no_element, b_element) if fn_blocks[1] else (b_element, K.no_block)
                fe, be = _share_slot(fe, be, K.no_element)
                fb, bb = _share_slot(fb, bb, K.no_block)
                K.message_kernel(d)(AT, AT64, Wg, t0, t1, metric_every, P[idx], U[idx], ng, gap_at, gg, dg, S[idx],
                                    SF[idx], Mg, fe, be, fb, bb)
            else:
                f_element, b_element = _share_slot(f_element, b_element, K.no_element)
                K.element_kernel(d)(AT, AT64, Wg, t0, t1, metric_every, P[idx], U[idx], ng, gap_at, gg, dg,
                                    f_element, b_element)
            W[idx], norms[idx], gaps[idx], diverged_at[idx] = Wg, ng, gg, dg
            if Mem.shape[2]:
                Mem[idx] = Mg

    return run


def xi_key(seed: int) -> int:
    """Key of the sampling-noise stream ξ of a run."""
    return rng.derive_key("fbsgd.engine.xi", int(seed))


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
