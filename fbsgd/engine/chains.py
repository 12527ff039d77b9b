"""Any chain, any data, through the compiled engine: :class:`ChainConfig` and its runners.

A :class:`ChainConfig` names one run of perturbed SGD (or heavy-ball, or Adam) on a chain of library
operators (:class:`fbsgd.operators.Affine`, :class:`~fbsgd.operators.Linear`, ``Tanh``, ``Sigmoid``,
``ReLU``, ``Identity``, ``Softplus``, ending in :class:`~fbsgd.operators.LogisticLoss` or
:class:`~fbsgd.operators.SoftmaxCrossEntropy`) and its data (a :class:`fbsgd.problems.Dataset`),
with perturbations at any of the :class:`fbsgd.perturbations.Plan`'s sites.  It is what

>>> train(PassGradient(cfg.net, cfg.plan()), cfg.initial_weights(), cfg.optimizer_rule(), cfg.T, cfg.data,
...       batch_size=cfg.batch or None, seed=cfg.seed)

computes (:func:`fbsgd.optimizers.train`): the configuration's own ``seed`` keys the minibatch rows
and every perturbation's stream (``Plan.init(seed)``), and ``init_seed`` the initial weights
(``net.init_weight(numpy.random.default_rng(init_seed))``).  Configurations with the same seed
therefore see the same minibatches (common random numbers: a perturbed run and its clean twin
differ by the perturbation only).

:func:`run_chain_chunk` runs configurations of one shape (:meth:`ChainConfig.shape`: operators,
widths, data, batch, T, precision, metric interval) in lockstep through the compiled kernel
(:mod:`fbsgd.engine.chain_kernel`); :func:`reference_chain_run` runs one through ``train`` (the
readable reference, and the path for what the kernel cannot run: a perturbation without a compiled
form, an irregular schedule, an operator of the user's own).  :func:`fbsgd.engine.sweeps.run_sweep`
takes ChainConfigs as it takes the Section 7 ``RunConfig``: same cache, table, workers and progress.

Its identity (:meth:`ChainConfig.key`) is built from :func:`fbsgd.perturbations.canonical` of its
fields — the net (each operator's fields, a user's own class with its source), the data (its
size, kind and sha256 fingerprint), every perturbation — and the engine's source hash.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from fbsgd import operators as O
from fbsgd import rng
from fbsgd.engine import chain_kernel as K
from fbsgd.engine.provenance import objects_hash, source_hash
from fbsgd.optimizers import SGD, AddNoise, Adam, HeavyBall, PassGradient, train
from fbsgd.passes import Composite, passes
from fbsgd.perturbations import Perturbation, Plan, canonical
from fbsgd.problems import Dataset
from fbsgd.regularizers import _REGULARIZERS, get_regularizer

__all__ = ["ChainConfig", "compile_ops", "compile_sites", "memory_size", "site_functions", "not_compiled", "kind_name",
           "run_chain_chunk", "SLOTS",
           "reference_chain_run", "clean_metrics", "OPTIMIZERS", "PRECISIONS", "REGULARIZERS", "COMPILED_OPERATORS"]

OPTIMIZERS = ("sgd", "heavyball", "adam")
PRECISIONS = ("float64", "float32")
REGULARIZERS = ("none",) + tuple(_REGULARIZERS)
_REG_CODES = {"none": 0, "nonconvex": 1, "l2": 2}  # the kernel's codes (chain_kernel.reg_grad)
NEVER = 2**62  # "no last step"

# the operators the kernel runs, by exact class (a subclass may change the formula: it runs on the reference path)
COMPILED_OPERATORS = {O.Affine: K.AFFINE, O.Linear: K.AFFINE, O.Tanh: K.TANH, O.Sigmoid: K.SIGMOID, O.ReLU: K.RELU,
                      O.Identity: K.IDENTITY, O.Softplus: K.SOFTPLUS, O.LogisticLoss: K.LOGISTIC,
                      O.SoftmaxCrossEntropy: K.SOFTMAX}
# the compiled operations and the names of their numbers, in the kernel's order
_KINDS = {"uniform": (K.UNIFORM, ("low", "high")),
          "round": (K.ROUND, ("man_bits", "emin", "max_finite", "has_inf", "stochastic")),
          "bitflip": (K.BITFLIP, ("rate", "lo_bit", "n_bits")),
          "topk": (K.TOPK, ()), "randk": (K.RANDK, ()), "element": (K.ELEMENT, ()), "block": (K.BLOCK, ())}
_WRAPS = {"feedback": K.FEEDBACK, "delta": K.DELTA}  # compiled forms with memory around a memoryless one
_SCOPE_CODES = {"per_sample": 0, "batch": 1}
SLOTS = 2  # distinct element functions, and block functions, one configuration may use


def plain_fields(cfg) -> None:
    """Put every field of a frozen configuration dataclass in plain Python form, in place: numpy
    scalars become Python numbers, an integral number in a ``float`` field a float, an integral float
    in an ``int`` field an int — so ``gamma=1`` and ``gamma=1.0`` are one configuration, with one key
    and one stream, and ``T=200000.0`` from a float column is ``T=200000``."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, np.bool_):
            v = bool(v)
        elif isinstance(v, np.integer):
            v = int(v)
        elif isinstance(v, np.floating):
            v = float(v)
        if f.type == "float" and _is_int(v):
            v = float(v)
        elif f.type == "int" and isinstance(v, float) and v.is_integer():
            v = int(v)
        object.__setattr__(cfg, f.name, v)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclass(frozen=True, eq=False)
class ChainConfig:
    """One run of perturbed SGD on a chain of library operators and a data set.

    * ``net``: a :class:`fbsgd.passes.Composite` ending in a loss that reads labels
      (``LogisticLoss`` for ±1 labels, ``SoftmaxCrossEntropy(K)`` for classes 0..K−1;
      :func:`fbsgd.problems.mlp` builds one); ``data``: a :class:`fbsgd.problems.Dataset`;
    * ``optimizer``: "sgd", "heavyball" (momentum ``beta``) or "adam" (β₁ = ``beta``, β₂ = ``beta2``,
      ``eps``), step size ``lr``; ``batch`` rows per step drawn with replacement (0: the full batch);
      ``T`` steps; ``seed`` (minibatches and perturbation streams), ``init_seed`` (initial weights);
    * ``forward``, ``backward``: dicts site → perturbation, as :class:`fbsgd.perturbations.Plan`
      takes them (forward[i] after operator i, 1 ≤ i ≤ N; backward[i] on the message into operator
      i − 1, 2 ≤ i ≤ N);
    * ``precision`` of the pass, "float64" or "float32" (the update is float64 either way);
      ``metric_every``: the clean full-data gradient norm and loss every so many steps; ``ewma``:
      the smoothing of the stable gradient norm; ``figure``, ``panel``: labels for tables;
    * ``regularizer`` ("none", or a name of :mod:`fbsgd.regularizers`: "nonconvex", "l2") with weight
      ``rho`` >= 0, added exactly to the minibatch gradient (g + ρ∇R(w), as ``train``'s
      ``regularizer_grad``), and ``noise_std`` >= 0: the sampling noise ξ_t ~ N(0, noise_std² I) of
      :class:`fbsgd.optimizers.AddNoise` (stream ``rng.derive_key("fbsgd.chain.xi", seed)``) added after
      it — the Section 7 set-up (eq. 5d) as an instance.  The reported clean gradient norm and loss
      include ρR.

    Every field is checked when the configuration is made (a ValueError naming the field).
    """

    net: Composite
    data: Dataset
    optimizer: str = "sgd"
    lr: float = 0.01
    beta: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    batch: int = 32
    T: int = 1000
    seed: int = 0
    init_seed: int = 0
    forward: dict = field(default_factory=dict)
    backward: dict = field(default_factory=dict)
    precision: str = "float64"
    metric_every: int = 10
    ewma: float = 0.99
    regularizer: str = "none"
    rho: float = 0.0
    noise_std: float = 0.0
    figure: str = ""
    panel: str = ""

    LABELS = ("figure", "panel")
    OBJECTS = ("net", "data", "forward", "backward")

    def __post_init__(self):
        plain_fields(self)

        def need(ok, name, msg):
            if not ok:
                raise ValueError(f"ChainConfig: {name} {msg}")

        need(isinstance(self.net, Composite), "net", f"must be a Composite of operators (fbsgd.passes.Composite; "
             f"fbsgd.problems.mlp builds one), got {type(self.net).__name__}")
        need(isinstance(self.data, Dataset), "data", f"must be a fbsgd.problems.Dataset (features and labels), "
             f"got {type(self.data).__name__}")
        last = self.net.ops[-1]
        need(last.uses_labels, "net", f"must end in a loss that reads the labels (LogisticLoss() for ±1 labels, "
             f"SoftmaxCrossEntropy(K) for classes 0..K-1); its last operator is {last!r}")
        need(self.net.op(1).in_dim == self.data.dim, "data",
             f"has {self.data.dim} features but the net's first operator {self.net.op(1)!r} takes {self.net.op(1).in_dim}")
        K_net = getattr(last, "classes", None)
        need(not (self.data.kind == "classes" and isinstance(K_net, int) and K_net != self.data.classes), "data",
             f"has {self.data.classes} classes but the net's loss {last!r} has {K_net}")
        try:
            last.check_labels(self.data.labels, self.data.rows, "ChainConfig: data")
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        need(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        need(_is_real(self.lr) and math.isfinite(self.lr) and self.lr > 0, "lr", f"(the step size) must be a finite number > 0, got {self.lr!r}")
        for name in ("beta", "beta2"):
            v = getattr(self, name)
            need(_is_real(v) and 0 <= v < 1, name, f"must be a number in [0, 1), got {v!r}")
        need(_is_real(self.eps) and math.isfinite(self.eps) and self.eps >= 0, "eps", f"must be a finite number >= 0, got {self.eps!r}")
        for name, lo in (("batch", 0), ("T", 1), ("seed", 0), ("init_seed", 0), ("metric_every", 1)):
            v = getattr(self, name)
            need(_is_int(v) and v >= lo, name, f"must be an integer >= {lo}, got {v!r}"
                 + (" (0: the full batch)" if name == "batch" else ""))
        need(self.T < 2**31, "T", f"must be < 2**31, got {self.T}")
        need(self.T >= 2 * self.metric_every, "T", f"must be at least 2 * metric_every, got T={self.T}, "
             f"metric_every={self.metric_every}")
        need(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}, got {self.precision!r}")
        need(_is_real(self.ewma) and 0 < self.ewma < 1, "ewma", f"must be in (0, 1), got {self.ewma!r}")
        need(isinstance(self.regularizer, str) and self.regularizer in REGULARIZERS, "regularizer",
             f"must be one of {REGULARIZERS}, got {self.regularizer!r}")
        for name in ("rho", "noise_std"):
            v = getattr(self, name)
            need(_is_real(v) and math.isfinite(v) and v >= 0, name, f"must be a finite number >= 0, got {v!r}")
        need(self.rho == 0 or self.regularizer != "none", "rho",
             f"must be 0 when regularizer is 'none' (name one of {REGULARIZERS[1:]}), got {self.rho!r}")
        for name in self.LABELS:
            need(isinstance(getattr(self, name), str), name, f"must be a string, got {getattr(self, name)!r}")
        for where in ("forward", "backward"):
            perts = getattr(self, where)
            need(isinstance(perts, dict), where, f"must be a dict from operator index to Perturbation, "
                 f"e.g. {where}={{{1 if where == 'forward' else 2}: p}}, got {type(perts).__name__}")
            object.__setattr__(self, where, dict(perts))
        try:
            self.plan().validate(len(self.net))
            for where in ("forward", "backward"):
                for i, p in getattr(self, where).items():
                    canonical(p)
            canonical(self.net)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"ChainConfig: {exc}") from None

    # -- what it runs ---------------------------------------------------------------------------------
    def plan(self) -> Plan:
        return Plan(forward=self.forward, backward=self.backward)

    def optimizer_rule(self):
        """The update rule of :mod:`fbsgd.optimizers` this configuration names (wrapped in
        :class:`fbsgd.optimizers.AddNoise` when ``noise_std`` > 0)."""
        if self.optimizer == "sgd":
            rule = SGD(self.lr)
        elif self.optimizer == "heavyball":
            rule = HeavyBall(self.lr, self.beta)
        else:
            rule = Adam(self.lr, self.beta, self.beta2, self.eps)
        if self.noise_std > 0:
            rule = AddNoise(rule, self.noise_std, self.xi_key())
        return rule

    def xi_key(self) -> int:
        """The stream key of the sampling noise ξ_t."""
        return rng.derive_key("fbsgd.chain.xi", int(self.seed))

    def regularizer_grad(self):
        """w ↦ ρ∇R(w) for ``train``'s ``regularizer_grad`` (None without a regularizer)."""
        if self.regularizer == "none":
            return None
        reg, rho = get_regularizer(self.regularizer), self.rho
        return lambda w: rho * reg.gradient(w)

    def initial_weights(self) -> np.ndarray:
        """w₀ = net.init_weight(numpy.random.default_rng(init_seed))."""
        return np.asarray(self.net.init_weight(np.random.default_rng(self.init_seed)), dtype=float)

    # -- identity -------------------------------------------------------------------------------------
    def computation(self) -> dict:
        """The fields that shape the result, the objects in canonical form (labels left out; β only for
        heavy-ball and Adam, β₂ and eps only for Adam): the cache key is built from it."""
        out = dict(kind="chain", net=canonical(self.net), data=canonical(self.data), optimizer=self.optimizer, lr=self.lr)
        if self.optimizer != "sgd":
            out["beta"] = self.beta
        if self.optimizer == "adam":
            out.update(beta2=self.beta2, eps=self.eps)
        out.update(batch=self.batch, T=self.T, seed=self.seed, init_seed=self.init_seed,
                   forward={str(i): canonical(p) for i, p in sorted(self.forward.items())},
                   backward={str(i): canonical(p) for i, p in sorted(self.backward.items())},
                   precision=self.precision, metric_every=self.metric_every, ewma=self.ewma)
        if self.regularizer != "none":  # only when set: the keys of earlier configurations stay
            out.update(regularizer=self.regularizer, rho=self.rho)
        if self.noise_std != 0:
            out["noise_std"] = self.noise_std
        return out

    def key(self) -> str:
        """Content hash of the computation and the engine's source: the cache key."""
        blob = (json.dumps(self.computation(), sort_keys=True) + source_hash("fbsgd.engine.sweeps")
                + objects_hash([self.forward, self.backward, self.net, self.data]))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def __eq__(self, other) -> bool:
        return (type(other) is type(self) and self.computation() == other.computation()
                and (self.figure, self.panel) == (other.figure, other.panel))

    def __hash__(self) -> int:
        return hash(json.dumps(self.computation(), sort_keys=True))

    def replace(self, **changes) -> "ChainConfig":
        return dataclasses.replace(self, **changes)

    def fields(self) -> dict:
        """Every field as a table row: the net, data and perturbations by their descriptions."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["net"] = repr(self.net)
        out["data"] = repr(self.data)
        for where in ("forward", "backward"):
            out[where] = repr(dict(sorted(out[where].items()))) if out[where] else None
        return out

    def shape(self) -> tuple:
        """What configurations must share to run in one kernel call: the operators and widths, the data,
        the batch, T, the precision and the metric interval."""
        return ("chain", canonical(self.net), canonical(self.data), self.batch, self.T, self.precision, self.metric_every)


# -------------------------------------------------------------------------------------------------
# the kernel's numbers
# -------------------------------------------------------------------------------------------------


def compile_ops(net: Composite) -> np.ndarray:
    """The operator table of the kernel (rows as :data:`fbsgd.engine.chain_kernel.OP_COLUMNS`), or a
    NotImplementedError naming the operator the kernel has no code for."""
    rows, yoff, doff = [], 0, 0
    for i, op in enumerate(net.ops, start=1):
        code = COMPILED_OPERATORS.get(type(op))
        if code is None:
            raise NotImplementedError(
                f"the compiled engine has no kernel for operator {i}, {op!r} ({type(op).__qualname__}); it runs "
                + ", ".join(c.__name__ for c in COMPILED_OPERATORS))
        bias = int(bool(getattr(op, "bias", False))) if type(op) is O.Affine else 0
        rows.append((code, op.in_dim, op.out_dim, int(net.offsets[i - 1]), bias, yoff, doff))
        yoff += op.out_dim
        doff += op.in_dim
    return np.array(rows, dtype=np.int64)


def _numbers(p: Perturbation) -> tuple[int, list]:
    """(kernel kind, its numbers) of a perturbation's memoryless compiled form, or NotImplementedError."""
    return _form(p.compiled(), p)[:2]


def _form(op, p) -> tuple[int, list, int, object]:
    """(kernel kind, numbers, wrap code, the memoryless form) of a compiled form, or NotImplementedError."""
    kind = getattr(op, "kind", None)
    wrap = K.PLAIN
    if kind in _WRAPS:
        wrap, op = _WRAPS[kind], op.inner
        kind = getattr(op, "kind", None)
    if kind not in _KINDS:
        raise NotImplementedError(f"the compiled engine has no kernel for compiled operations of kind {kind!r} ({p!r})")
    code, names = _KINDS[kind]
    if kind in ("element", "block"):
        vals = list(op.numbers) or [0.0]  # the function's numbers array ([0.0] when it has none)
    elif kind in ("topk", "randk"):
        vals = []
    elif all(hasattr(op, n) for n in names):  # named fields
        vals = [getattr(op, n) for n in names]
    else:
        vals = list(op.params)[: len(names)]
    if len(vals) != len(names) and names:
        raise ValueError(f"{p!r}: a compiled {kind!r} operation needs the numbers {names}, got {op.params!r}")
    return code, [float(v) for v in vals], wrap, op


def site_functions(cfg: "ChainConfig") -> tuple[tuple, tuple]:
    """The distinct element functions and block functions of a configuration's sites, in site order
    (their slots in the kernel)."""
    efns, bfns = [], []
    for (where, i), p in cfg.plan().places():
        code, _, _, op = _form(p.compiled(), p)
        fns = efns if code == K.ELEMENT else bfns if code == K.BLOCK else None
        if fns is not None and op.fn not in fns:
            fns.append(op.fn)
    return tuple(efns), tuple(bfns)


def _rows(cfg: "ChainConfig") -> int:
    return cfg.batch or cfg.data.rows


def compile_sites(cfg: ChainConfig, functions: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sites of a configuration as the kernel reads them: integers (2, N+1, :data:`~fbsgd.engine.chain_kernel.SITE_INTS`),
    numbers (2, N+1, F ≥ 5) and stream keys (2, N+1) of ``Plan.init(seed)`` (a kind with memory: its
    compressor's, ``fold_key(key, 0)``); index 0 forward, 1 backward.  The memory of a site with one is
    at its offset in the configuration's memory (:func:`memory_size`); an element or block kind's slot is
    the index of its function in ``functions`` (element functions, block functions; default
    :func:`site_functions`).  A NotImplementedError names a perturbation the kernel cannot run."""
    N = len(cfg.net)
    plan = cfg.plan()
    forms = {place: _form(p.compiled(), p) for place, p in plan.places()}
    F = max([5] + [len(f[1]) for f in forms.values()])
    si = np.zeros((2, N + 1, len(K.SITE_INTS)), np.int64)
    sf = np.zeros((2, N + 1, F))
    skey = np.zeros((2, N + 1), np.uint64)
    si[:, :, 3] = 1
    state = plan.init(cfg.seed)
    efns, bfns = site_functions(cfg) if functions is None else functions
    mem = 0
    for (where, i), p in plan.places():
        w = 0 if where == "forward" else 1
        sched = p.schedule
        if not sched.regular:
            raise NotImplementedError(
                f"the compiled engine needs a schedule with a first step, an interval and a last step; {p!r} at "
                f"{where}[{i}] acts at irregular steps (use every or budget with evenly spaced steps)")
        code, vals, wrap, op = forms[(where, i)]
        if sched.empty:
            continue
        k = getattr(op, "k", getattr(op, "block", 0))
        slot = efns.index(op.fn) if code == K.ELEMENT else bfns.index(op.fn) if code == K.BLOCK else 0
        if slot >= SLOTS:
            raise NotImplementedError(f"the compiled engine runs at most {SLOTS} distinct element functions and "
                                      f"{SLOTS} block functions per configuration; {p!r} at {where}[{i}] is one more")
        si[w, i] = (code, int(bool(op.per_sample)), sched.first, sched.interval,
                    NEVER if sched.last is None else sched.last + 1, wrap, k,
                    op.mode if code == K.BLOCK else _SCOPE_CODES.get(getattr(op, "scope", "per_sample"), 0), mem,
                    len(vals), slot)
        sf[w, i, : len(vals)] = vals
        key = state[(where, i)].key
        skey[w, i] = np.uint64((rng.fold_key(key, 0) if wrap != K.PLAIN else key) % 2**64)
        if wrap != K.PLAIN:
            width = cfg.net.op(i).out_dim if where == "forward" else cfg.net.op(i).in_dim
            mem += _rows(cfg) * width
    return si, sf, skey


def memory_size(cfg: ChainConfig) -> int:
    """The float64 entries of a configuration's memories (error feedback, delta compression), one message each."""
    si = compile_sites(cfg)[0]
    sizes = [0]
    for w in (0, 1):
        for i in range(si.shape[1]):
            if si[w, i, 5] != K.PLAIN:
                op = cfg.net.op(i)
                sizes.append(si[w, i, 8] + _rows(cfg) * (op.out_dim if w == 0 else op.in_dim))
    return max(sizes)


def kind_name(p) -> str:
    """A perturbation's kind as its class name, with the kinds it wraps: "Every(TopK)"."""
    inner = getattr(p, "inner", None)
    if callable(getattr(inner, "compiled", None)):  # a wrapped kind (asked, not class-tested)
        return f"{type(p).__name__}({kind_name(inner)})"
    return type(p).__name__


def not_compiled(cfg: ChainConfig) -> tuple[str, str] | None:
    """None when the kernel runs the configuration; else (the kind or operator it cannot run, why)."""
    try:
        compile_ops(cfg.net)
    except NotImplementedError as exc:
        bad = next(op for op in cfg.net.ops if type(op) not in COMPILED_OPERATORS)
        return f"operator {type(bad).__name__}", str(exc)
    efns, bfns = [], []
    for (where, i), p in cfg.plan().places():
        try:
            _numbers(p)
            if not p.schedule.regular:
                raise NotImplementedError(f"{p!r} acts at irregular steps; the compiled engine needs a first step, "
                                          "an interval and a last step (every, budget)")
            code, _, _, op = _form(p.compiled(), p)
            fns = efns if code == K.ELEMENT else bfns if code == K.BLOCK else None
            if fns is not None and op.fn not in fns:
                fns.append(op.fn)
                if len(fns) > SLOTS:  # this site's function is the one beyond the slots: name its kind
                    raise NotImplementedError(
                        f"the compiled engine runs at most {SLOTS} distinct element functions and {SLOTS} block "
                        f"functions per configuration; {where}[{i}] brings a {'third' if SLOTS == 2 else 'further'} "
                        f"{'element' if code == K.ELEMENT else 'block'} function")
        except NotImplementedError as exc:
            return kind_name(p), str(exc)
    return None


# -------------------------------------------------------------------------------------------------
# running
# -------------------------------------------------------------------------------------------------


def _labels(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    n = data.rows
    if data.kind == "binary":  # copies: a Dataset's arrays are read-only (another type for numba)
        return np.array(data.labels, dtype=np.float64), np.zeros(n, np.int64)
    return np.zeros(n), np.array(data.labels, dtype=np.int64)


_OPT_CODES = {"sgd": K.SGD, "heavyball": K.HEAVYBALL, "adam": K.ADAM}


def run_chain_chunk(configs: list[ChainConfig]) -> list[dict]:
    """Run configurations of one shape (:meth:`ChainConfig.shape`) in lockstep through the kernel
    (configurations whose sites call different element or block functions: one kernel call per tuple
    of functions; a configuration's bits do not depend on its company).

    Returns per configuration a dict: ``norms``, ``losses`` (the clean full-data gradient norm and
    loss at t = 0, k, 2k, ... < T), ``final_grad_norm``, ``final_loss``, ``train_accuracy`` (at w_T),
    ``diverged_at`` (−1: none), ``w`` (w_T) and ``runtime_s`` (the chunk's time per configuration)."""
    c0 = configs[0]
    shape = c0.shape()
    for c in configs[1:]:
        if c.shape() != shape:
            raise ValueError("run_chain_chunk: the configurations of a chunk must share net, data, batch, T, "
                             "precision and metric_every")
    groups: dict = {}
    for j, c in enumerate(configs):
        groups.setdefault(site_functions(c), []).append(j)
    efns = tuple(dict.fromkeys(f for fns in groups for f in fns[0]))
    bfns = tuple(dict.fromkeys(f for fns in groups for f in fns[1]))
    if len(groups) > 1 and max(len(efns), len(bfns)) > SLOTS:  # one kernel call per tuple of functions
        out = [None] * len(configs)
        for members in groups.values():
            for j, r in zip(members, run_chain_chunk([configs[j] for j in members])):
                out[j] = r
        return out
    ops = compile_ops(c0.net)
    X64 = np.array(c0.data.features, dtype=np.float64, order="C")  # a writable copy (one array type for numba)
    X = X64 if c0.precision == "float64" else np.ascontiguousarray(X64, dtype=np.float32)
    yb, yc = _labels(c0.data)
    C, T, k = len(configs), c0.T, c0.metric_every
    perm = K.engine_order(ops, c0.net.weight_size)
    W = np.array([c.initial_weights()[perm] for c in configs])  # the engine's order of the weights
    opt = np.array([_OPT_CODES[c.optimizer] for c in configs], dtype=np.int64)
    hyper = np.array([(c.lr, c.beta, c.beta2, c.eps) for c in configs], dtype=np.float64)
    reg = np.array([(_REG_CODES[c.regularizer], c.rho, c.noise_std) for c in configs], dtype=np.float64)
    xi_key = np.array([c.xi_key() % 2**64 for c in configs], dtype=np.uint64)
    m1, m2 = np.zeros_like(W), np.zeros_like(W)
    count = np.zeros(C, np.int64)
    batch_key = np.array([rng.derive_key("fbsgd.train.batch", int(c.seed)) % 2**64 for c in configs], dtype=np.uint64)
    sites = [compile_sites(c, (efns, bfns)) for c in configs]
    F = max(s[1].shape[2] for s in sites)
    si = np.ascontiguousarray(np.stack([s[0] for s in sites]))
    sf = np.ascontiguousarray(np.stack([np.pad(s[1], ((0, 0), (0, 0), (0, F - s[1].shape[2]))) for s in sites]))
    mem = np.zeros((C, max([1] + [memory_size(c) for c in configs])))
    skey = np.ascontiguousarray(np.stack([s[2] for s in sites]))
    points = -(-T // k)
    norms, losses = np.full((C, points), np.nan), np.full((C, points), np.nan)
    diverged_at = np.full(C, -1, dtype=np.int64)
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        args = (ops, X, X64, yb, yc, c0.batch, 0, T, k, W, opt, hyper, reg, xi_key, perm.astype(np.int64), m1, m2,
                count, batch_key, si, sf, skey, mem, norms, losses, diverged_at)
        if efns or bfns:  # a researcher's functions compiled in (slots left over: None)
            e = efns + (None,) * (SLOTS - len(efns))
            b = bfns + (None,) * (SLOTS - len(bfns))
            K.run_chains_fns(*args, *e, *b)
        else:
            K.run_chains(*args)
        final = np.full((C, 3), np.nan)
        K.final_metrics(ops, X64, yb, yc, W, reg, diverged_at, final)
    runtime = (time.perf_counter() - start) / C
    W_lib = np.empty_like(W)
    W_lib[:, perm] = W  # back to the library's order
    return [dict(norms=norms[j], losses=losses[j], final_grad_norm=float(final[j, 0]), final_loss=float(final[j, 1]),
                 train_accuracy=float(final[j, 2]), diverged_at=int(diverged_at[j]), w=W_lib[j], runtime_s=runtime)
            for j in range(C)]


def clean_metrics(net: Composite, data: Dataset, w: np.ndarray, regularizer: str = "none",
                  rho: float = 0.0) -> tuple[float, float, float]:
    """(‖∇F(w)‖, F(w), training accuracy) of the clean full-data passes (:func:`fbsgd.passes.passes`);
    with a ``regularizer`` (a name of :mod:`fbsgd.regularizers`), F includes ρR and ∇F ρ∇R."""
    p = passes(net, data.features, w, labels=data.labels)
    scores = p.ys[-2] if len(net) >= 2 else None
    if scores is None:
        acc = float("nan")
    elif data.kind == "binary":
        acc = float(np.mean(np.where(scores[:, 0] >= 0.0, 1.0, -1.0) == data.labels))
    else:
        acc = float(np.mean(np.argmax(scores, axis=1) == data.labels))
    grad, loss = p.gradient(), np.mean(p.ys[-1])
    if regularizer != "none":
        reg = get_regularizer(regularizer)
        grad, loss = grad + rho * reg.gradient(w), loss + rho * reg.value(w)
    return float(np.linalg.norm(grad)), float(loss), acc


def reference_chain_run(cfg: ChainConfig) -> dict:
    """One configuration through :func:`fbsgd.optimizers.train` with ``PassGradient(net, plan)`` (numpy,
    float64; ``regularizer_grad`` ρ∇R and the rule wrapped in ``AddNoise`` as the configuration says):
    the same dict as :func:`run_chain_chunk`."""
    net, data, k = cfg.net, cfg.data, cfg.metric_every
    last = {}

    def measured(w):
        if last.get("w") is None or not np.array_equal(last["w"], w):
            last.update(w=w.copy(), m=clean_metrics(net, data, w, cfg.regularizer, cfg.rho))
        return last["m"]

    start = time.perf_counter()
    with np.errstate(all="ignore"):
        run = train(PassGradient(net, cfg.plan()), cfg.initial_weights(), cfg.optimizer_rule(), cfg.T, data,
                    batch_size=cfg.batch or None, seed=cfg.seed, regularizer_grad=cfg.regularizer_grad(), record_every=k,
                    metrics={"grad_norm": lambda w: measured(w)[0], "loss": lambda w: measured(w)[1]})
        keep = run.t < cfg.T
        final = (float("nan"),) * 3 if run.diverged else measured(run.w)
    return dict(norms=run["grad_norm"][keep], losses=run["loss"][keep], final_grad_norm=final[0], final_loss=final[1],
                train_accuracy=final[2], diverged_at=int(run.diverged_at), w=run.w,
                runtime_s=time.perf_counter() - start)
