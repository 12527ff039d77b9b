"""Sweeps: many Section 7 configurations run in lockstep, cached by content,
split into independent chunks executed through joblib, returned as a tidy table.

>>> configs = [RunConfig(perturbation="forward", sigma_f=s, gamma=g, seed=k)
...            for s in ... for g in ... for k in ...]
>>> result = run_sweep(configs, n_jobs=2)
>>> result.table          # one row per configuration
>>> result.traces         # long table of the EWMA curves (trajectory plots)

Running is separate from plotting: chapters call :func:`run_sweep` once and
plot from ``result.table`` and ``result.traces`` only.

Parallelism: each chunk is one call of a plain function through
``joblib.Parallel``; the backend is whatever joblib is configured to use, so

>>> from dask.distributed import Client; client = Client("scheduler:8786")
>>> with joblib.parallel_config(backend="dask"):
...     result = run_sweep(configs)

runs the same sweep on a Dask cluster without any change to the code.

Determinism: a configuration's random streams are derived from its own
identity (every field that affects the computation) and its seed, and the
kernel never mixes configurations, so its result is bit-identical alone, in
any batch, in any order or chunking, and across reruns.

Any chain: :func:`run_sweep` takes :class:`fbsgd.engine.chains.ChainConfig` (a chain of library
operators on a :class:`fbsgd.problems.Dataset`, any optimizer, perturbations at any site) beside
:class:`RunConfig`, with the same cache, table, workers and progress bar; a chunk holds
configurations of one shape (:meth:`ChainConfig.shape`).

The reference path: a configuration the compiled kernels cannot run (a perturbation whose
``compiled()`` raises NotImplementedError or whose schedule is irregular; an operator of the
user's own) still runs, one at a time, through :func:`fbsgd.optimizers.train` with the perturbed
passes of :func:`fbsgd.passes.perturbed_passes` (numpy, float64), into the same table and cache;
each sweep says so once, with a :class:`NotCompiledWarning` naming the kinds.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from fbsgd import __version__, rng
from fbsgd.engine.chains import ChainConfig, reference_chain_run, run_chain_chunk
from fbsgd.engine.chains import COMPILED_OPERATORS, kind_name, plain_fields
from fbsgd.engine.chains import _KINDS as CHAIN_KINDS
from fbsgd.engine.chains import _WRAPS as CHAIN_WRAPS
from fbsgd.engine.chains import not_compiled as chain_not_compiled
from fbsgd.engine.lockstep import FORMS, KINDS, compile_plan, kernel, kernel_params, xi_key
from fbsgd.engine.provenance import objects_hash, source_hash
from fbsgd.metrics import ewma
from fbsgd.optimizers import SGD, AddNoise, PassGradient, train
from fbsgd.perturbations import Plan, at_steps, canonical, check_compiled, nested_kinds, every, nonzero_mean_uniform, zero_mean_uniform
from fbsgd.problems import LogisticRegression
from fbsgd.engine.storage import atomic_write_bytes

__all__ = ["RunConfig", "ChainConfig", "SweepResult", "run_sweep", "engine_hash", "default_cache_dir", "stable_summary",
           "memory_needed", "check_memory", "machine_memory", "check_writable", "entry_key", "CacheWarning",
           "NotCompiledWarning", "not_compiled", "check_kinds"]

_PERTURBATIONS = ("none", "forward", "backward", "both")
# the summaries are also computed with these EWMA factors (for the reproducibility notes)
ALT_EWMAS = (0.9, 0.99, 0.999)
_MEANS = ("zero", "nonzero")
_MODES = ("per_sample", "shared")
_REGULARIZERS = ("nonconvex", "l2")
# the exact gradient norm from the pass's own z (σ summed in float64), or from a separate float64 pass
_METRICS = ("pass", "float64")


@dataclass(frozen=True)
class RunConfig:
    """One run of perturbed SGD on the Section 7 logistic regression.

    ``figure`` and ``panel`` are labels for the table; every other field is
    part of the computation.  ``interval`` = Δt: perturbations act at
    iterations t with t % Δt == 0.  ``mode``: one draw per sample
    (``per_sample``) or one draw per iteration shared by all samples.
    ``w0_std``: the run starts from w₀ = 0 (default) or w₀ ~ N(0, w0_std² I)
    drawn from the run's own stream.  ``start`` and ``budget``: perturbations
    act at t = start, start + Δt, ... and, if ``budget`` > 0, only that many
    times (a budget Q of Section 6.2).

    ``metric``: the exact gradient norm is computed from the pass's own z with
    σ summed in float64 ("pass", the default), or from a separate float64
    pass ("float64", slower: the reference for the reproducibility notes).

    ``forward`` and ``backward``: any perturbation object, placed after f₁ and after ∂f₂/∂f₁.
    The compiled engine runs every kind whose ``compiled()`` gives a form its kernel knows (the
    built-in ``UniformNoise``, ``Round``, ``BitFlip``, ``TopK``, ``RandK``, ``ErrorFeedback`` and
    ``DeltaCompression`` around a memoryless one, the de-biasing correctors, a researcher's
    ``ElementOp`` or ``BlockOp``; with ``every`` or ``budget`` schedules); any other kind
    runs on the reference path (:func:`run_sweep`, :func:`not_compiled`).  They stand beside the
    σ-described uniform noise of the paper and may not share its place.
    """

    figure: str = ""
    panel: str = ""
    regularizer: str = "nonconvex"
    rho: float = 0.001
    perturbation: str = "none"
    mean: str = "zero"
    sigma_f: float = 0.0
    sigma_b: float = 0.0
    interval: int = 1
    mode: str = "per_sample"
    gamma: float = 0.01
    seed: int = 0
    T: int = 200_000
    noise_std: float = 0.001
    d: int = 10
    M: int = 2000
    data_seed: int = 0
    ewma: float = 0.99
    metric_every: int = 10
    precision: str = "float32"
    metric: str = "pass"
    w0_std: float = 0.0
    start: int = 0
    budget: int = 0
    forward: object = None
    backward: object = None

    LABELS = ("figure", "panel")
    OBJECTS = ("forward", "backward")
    # fields that do not change the random draws (a run with smaller T is a prefix)
    NOT_IN_STREAMS = ("T", "ewma", "metric_every", "precision", "metric")

    def __post_init__(self):
        plain_fields(self)  # gamma=1 and gamma=1.0 are one configuration, with one key and one stream

        def need(ok, msg):
            if not ok:
                raise ValueError(f"RunConfig: {msg}")

        need(self.regularizer in _REGULARIZERS, f"regularizer must be one of {_REGULARIZERS}, got {self.regularizer!r}")
        need(self.perturbation in _PERTURBATIONS, f"perturbation must be one of {_PERTURBATIONS}, got {self.perturbation!r}")
        need(self.mean in _MEANS, f"mean must be one of {_MEANS}, got {self.mean!r}")
        need(self.mode in _MODES, f"mode must be one of {_MODES}, got {self.mode!r}")
        need(self.precision in ("float32", "float64"), f"precision must be 'float32' or 'float64', got {self.precision!r}")
        need(self.metric in _METRICS, f"metric must be one of {_METRICS}, got {self.metric!r}")
        for name in ("rho", "sigma_f", "sigma_b", "noise_std", "w0_std"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"{name} must be a finite number >= 0, got {v!r}")
        need(isinstance(self.gamma, (int, float)) and math.isfinite(self.gamma) and self.gamma > 0, f"gamma must be > 0, got {self.gamma!r}")
        need(0 < self.ewma < 1, f"ewma must be in (0, 1), got {self.ewma!r}")
        for name, lo in (("interval", 1), ("T", 2), ("d", 1), ("M", 1), ("metric_every", 1), ("seed", 0), ("data_seed", 0), ("start", 0), ("budget", 0)):
            v = getattr(self, name)
            need(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo, f"{name} must be an integer >= {lo}, got {v!r}")
        need(self.T < 2**31, f"T must be < 2**31, got {self.T}")
        need(self.T >= 2 * self.metric_every, f"T must be at least 2 * metric_every, got T={self.T}, metric_every={self.metric_every}")
        need(self.start < self.T, f"start must be < T, got start={self.start}, T={self.T}")
        need(self.budget == 0 or self.start + (self.budget - 1) * self.interval < self.T,
             f"budget {self.budget} with interval {self.interval} from start {self.start} does not fit in T = {self.T}")
        for name, paper_place in (("forward", ("forward", "both")), ("backward", ("backward", "both"))):
            p = getattr(self, name)
            if p is None:
                continue
            sigma = self.sigma_f if name == "forward" else self.sigma_b
            need(not (self.perturbation in paper_place and sigma > 0),
                 f"give either perturbation={self.perturbation!r} with sigma > 0 or {name}=..., not both at one place")
            try:  # Plan refuses what is not a perturbation, compile_plan invalid compiled numbers (what the
                # kernel cannot run, NotImplementedError, runs on the reference path), canonical what cannot be
                # part of a key (a lambda, NaN, an object without fields)
                try:
                    compile_plan(Plan(**{name: {1 if name == "forward" else 2: p}}), 0)
                except NotImplementedError:
                    pass
                canonical(p)
            except ValueError as exc:
                raise ValueError(f"RunConfig: {name}: {exc}") from None

    @classmethod
    def from_row(cls, row) -> "RunConfig":
        """The configuration of one row of a sweep table (extra columns are ignored).

        A row with a ``forward`` or ``backward`` perturbation object holds only its
        description; pass the object again: ``RunConfig.from_row(row).replace(forward=p)``
        is not possible, so such rows raise a ValueError that says so."""
        vals = {}
        for k in cls.__dataclass_fields__:
            if k not in row:
                continue
            v = row[k]
            v = v.item() if hasattr(v, "item") else v
            if k in cls.OBJECTS:
                if isinstance(v, str) and v:
                    raise ValueError(f"the row's {k} perturbation {v} cannot be rebuilt from its description; "
                                     f"make the RunConfig with the perturbation object")
                v = None
            vals[k] = v
        return cls(**vals)

    def fields(self) -> dict:
        """Every field, with the perturbation objects as their descriptions (a table row)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k in self.OBJECTS:
            out[k] = repr(out[k]) if out[k] is not None else None
        return out

    # -- identity ---------------------------------------------------------------------------------
    def computation(self) -> dict:
        """The fields that shape the result (labels left out, unset objects left out), the perturbation
        objects in their canonical form (:func:`fbsgd.perturbations.canonical`: equal objects, one form,
        in every process), from which the cache key and the random streams are built."""
        out = {k: v for k, v in self.fields().items() if k not in self.LABELS and not (k in self.OBJECTS and v is None)}
        return {k: canonical(getattr(self, k)) if k in self.OBJECTS else v for k, v in out.items()}

    def key(self) -> str:
        """Content hash of the computation, the engine's source and the source of the modules that define
        the perturbation objects (:func:`fbsgd.engine.provenance.objects_hash`): the cache key."""
        blob = (json.dumps(self.computation(), sort_keys=True) + engine_hash()
                + objects_hash([getattr(self, k) for k in self.OBJECTS]))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def stream_seed(self) -> int:
        ident = {k: v for k, v in self.computation().items() if k not in self.NOT_IN_STREAMS}
        return rng.derive_key("fbsgd.sweeps", json.dumps(ident, sort_keys=True))

    # -- the perturbations as core objects ---------------------------------------------------------
    def plan(self) -> Plan:
        """δ after f₁ and/or ε after ∂f₂/∂f₁, as :class:`fbsgd.perturbations.Plan`."""
        make = zero_mean_uniform if self.mean == "zero" else nonzero_mean_uniform
        per_sample = self.mode == "per_sample"

        def place(sigma):
            p = make(sigma, self.d, per_sample)
            if self.start == 0 and self.budget == 0:
                return every(self.interval, p) if self.interval > 1 else p
            end = self.T if self.budget == 0 else min(self.T, self.start + self.budget * self.interval)
            return at_steps(range(self.start, end, self.interval), p)

        forward, backward = {}, {}
        if self.perturbation in ("forward", "both") and self.sigma_f > 0:
            forward[1] = place(self.sigma_f)
        if self.perturbation in ("backward", "both") and self.sigma_b > 0:
            backward[2] = place(self.sigma_b)
        if self.forward is not None:
            forward[1] = self.forward
        if self.backward is not None:
            backward[2] = self.backward
        return Plan(forward=forward, backward=backward)

    def kernel_row(self) -> dict:
        """The kernel's numbers for this run (the fields of :data:`fbsgd.engine.kernel.PARAMS`)."""
        row = compile_plan(self.plan(), self.stream_seed())
        row.update(gamma=self.gamma, rho=self.rho, reg=_REGULARIZERS.index(self.regularizer),
                   noise_std=self.noise_std, xi_key=xi_key(self.stream_seed()),
                   f_star=_optimum(self.d, self.M, self.rho, self.regularizer, self.data_seed),
                   metric64=int(self.metric == "float64"))
        return row

    def initial_weights(self) -> np.ndarray:
        if self.w0_std == 0:
            return np.zeros(self.d)
        return rng.normal(rng.derive_key("fbsgd.sweeps.w0", self.stream_seed()), 0, self.d, self.w0_std)

    def problem(self) -> LogisticRegression:
        return _problem(self.d, self.M, self.rho, self.regularizer, self.data_seed)


@lru_cache(maxsize=16)
def _problem(d, M, rho, regularizer, data_seed):
    return LogisticRegression.generate(d=d, M=M, rho=rho, regularizer=regularizer, data_seed=data_seed)


@lru_cache(maxsize=16)
def _optimum(d, M, rho, regularizer, data_seed) -> float:
    """f* of the problem (Newton from 0; the problems of the book have a unique minimizer there)."""
    p = _problem(d, M, rho, regularizer, data_seed)
    return p.loss(p.minimize())


@lru_cache(maxsize=8)
def _data(d, M, data_seed):
    p = LogisticRegression.generate(d=d, M=M, data_seed=data_seed)
    AT64 = np.ascontiguousarray(p.signed_features.T)
    return AT64, AT64.astype(np.float32)


def engine_hash() -> str:
    """Hash of everything that can change a run's result: the source of every fbsgd
    module a sweep imports (derived from the imports, :func:`fbsgd.engine.provenance.module_closure`)
    and the versions of numpy, numba, llvmlite and scipy."""
    return source_hash("fbsgd.engine.sweeps")


# bytes per metric point: each configuration of a chunk keeps its float64 gradient-norm
# trace; the summaries then work on one configuration at a time with about five
# temporaries of the same length (EWMA curves, step indices, masks)
_TRACE_BYTES, _SUMMARY_BYTES = 8, 40


def memory_needed(T: int, metric_every: int, chunk_size: int = 8, n_jobs: int = 1) -> int:
    """Bytes a sweep holds at once: each of ``n_jobs`` workers runs a chunk of
    ``chunk_size`` configurations whose traces have ⌈T / metric_every⌉ points."""
    points = -(-int(T) // int(metric_every))
    workers = max(1, int(n_jobs) if n_jobs and n_jobs > 0 else (os.cpu_count() or 1))
    return workers * points * (int(chunk_size) * _TRACE_BYTES + _SUMMARY_BYTES)


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 if unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def check_memory(T: int, metric_every: int, chunk_size: int = 8, n_jobs: int = 1, fraction: float = 0.5) -> int:
    """Raise MemoryError, before anything runs, when a sweep would need more than
    ``fraction`` of the machine's memory; return the estimate in bytes."""
    need, have = memory_needed(T, metric_every, chunk_size, n_jobs), machine_memory()
    if have and need > fraction * have:
        raise MemoryError(
            f"a sweep with T = {T:,}, metric_every = {metric_every} and {chunk_size} configurations per worker "
            f"x {max(1, n_jobs if n_jobs and n_jobs > 0 else os.cpu_count() or 1)} workers needs about "
            f"{need / 2**30:.1f} GiB, more than {fraction:.0%} of this machine's {have / 2**30:.1f} GiB: "
            f"lower T, raise metric_every, or lower n_jobs")
    return need


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Create ``folder`` if needed and prove it writable (a probe file written and removed),
    else raise a ValueError that names ``what`` and the reason — before anything is computed."""
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".fbsgd-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {str(folder)!r} is not a writable folder: {exc.strerror or exc}") from None
    return folder


def default_cache_dir() -> Path:
    """$FBSGD_CACHE_DIR, else ~/.cache/fbsgd/sweeps."""
    env = os.environ.get("FBSGD_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fbsgd" / "sweeps"


# -------------------------------------------------------------------------------------------------
# summaries (Section 7.1)
# -------------------------------------------------------------------------------------------------


def stable_summary(trace: np.ndarray, T: int, metric_every: int) -> tuple[float, float]:
    """Stable gradient norm (mean EWMA over the last ⌊T/2⌋ iterations) and stable
    iteration complexity (first iteration whose EWMA is below 1.5 × that norm).

    ``trace[i]`` is the EWMA at iteration i·metric_every.
    """
    t = np.arange(trace.size) * metric_every
    last = t >= T - T // 2
    stable = float(np.mean(trace[last]))
    below = np.nonzero(trace < 1.5 * stable)[0]
    return stable, float(t[below[0]]) if below.size else float("nan")


def _trace_grid(T: int, metric_every: int, points: int) -> np.ndarray:
    """Iterations (multiples of metric_every, < T) at which curves are kept: half log-spaced, half evenly spaced."""
    n = -(-T // metric_every)
    idx = np.unique(np.concatenate([np.geomspace(1, n, max(points // 2, 2)).astype(int) - 1,
                                    np.linspace(0, n - 1, max(points // 2, 2)).astype(int)]))
    return idx * metric_every


# -------------------------------------------------------------------------------------------------
# the cache: one small .npz per configuration, written atomically
# -------------------------------------------------------------------------------------------------


class CacheWarning(UserWarning):
    """A cache entry did not belong to the configuration it was filed under; it is recomputed."""


class NotCompiledWarning(UserWarning):
    """Configurations of a sweep run on the reference path (numpy, one at a time), not in a compiled kernel."""


def not_compiled(cfg) -> tuple[str, str] | None:
    """None when a compiled kernel runs ``cfg`` (a RunConfig or ChainConfig); else (the kind or operator
    it cannot run, why).  Such a configuration runs on the reference path."""
    if isinstance(cfg, ChainConfig):
        return chain_not_compiled(cfg)
    for name in RunConfig.OBJECTS:
        p = getattr(cfg, name)
        if p is None:
            continue
        try:
            compile_plan(Plan(**{name: {1 if name == "forward" else 2: p}}), 0)
        except NotImplementedError as exc:
            return kind_name(p), str(exc)
    return None


def compiled_forms(chain: bool) -> str:
    """The compiled forms a kernel runs, from its own table (the chain kernel's ``_KINDS`` and ``_WRAPS``
    of :mod:`fbsgd.engine.chains`, the Section 7 kernel's :data:`fbsgd.engine.lockstep.KINDS`)."""
    kinds = list(CHAIN_KINDS) + list(CHAIN_WRAPS) if chain else list(KINDS)
    return ", ".join(f"{FORMS.get(k, k)} ({k!r})" for k in kinds)


def _notice(configs: list) -> str | None:
    """The one notice of a sweep whose configurations include some the compiled kernels cannot run."""
    found: dict = {}
    refused = set()  # which kernels refused: True the chain kernel, False the Section 7 kernel
    for c in configs:
        why = not_compiled(c)
        if why is not None:
            found.setdefault(why[0], why[1])
            refused.add(isinstance(c, ChainConfig))
    if not found:
        return None
    count = sum(1 for c in configs if not_compiled(c) is not None)
    kinds = ", ".join(found)
    first = next(iter(found.values()))
    operator = any(k.startswith("operator ") for k in found)
    runs = "; ".join(f"the {'chain' if chain else 'Section 7'} kernel runs {compiled_forms(chain)}"
                     for chain in sorted(refused))
    how = ("give the kind's class a compiled() method that returns its compiled form (a "
           f"fbsgd.perturbations.CompiledOp: {runs}; the forms with memory, ErrorFeedbackOp and DeltaOp, around a "
           "memoryless one), with a schedule that has a first step, an interval and a last step (every, budget)")
    if operator:
        how += ("; the chain kernel runs the operators " + ", ".join(c.__name__ for c in COMPILED_OPERATORS)
                + " (exactly these classes)")
    return (f"run_sweep: {count} configuration{'s' if count != 1 else ''} run on the reference path, not compiled "
            f"(fbsgd.optimizers.train with the perturbed passes: numpy, float64, one configuration at a time; the "
            f"same table, cache and workers), because the compiled engine cannot run {kinds} ({first}). "
            f"To run them compiled, {how}.")


def entry_key(cfg, trace_points: int) -> str:
    """The cache entry of a configuration: its key and every argument that shapes what is stored."""
    return hashlib.sha256(f"{cfg.key()} trace_points={int(trace_points)}".encode()).hexdigest()[:32]


def _identity(cfg, trace_points: int) -> dict:
    """What an entry must have been computed for: stored in it, checked on load."""
    return dict(computation=cfg.computation(), key=cfg.key(), source_hash=engine_hash(), trace_points=int(trace_points))


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.npz"


def _save(cache_dir: Path, key: str, identity: dict, summary: dict, traces: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, identity=np.array(json.dumps(identity, sort_keys=True)), summary=np.array(json.dumps(summary)),
             **{f"trace_{k}": v for k, v in traces.items()})
    atomic_write_bytes(_cache_path(cache_dir, key), buf.getvalue())


def _load(cache_dir: Path, key: str, identity: dict | None = None):
    """(summary, traces) of a valid entry, else None.  An unreadable entry is a silent
    miss; an entry computed for another configuration, code or trace grid is a miss
    with one :class:`CacheWarning` naming the file.  Both are overwritten."""
    path = _cache_path(cache_dir, key)
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            stored = json.loads(str(z["identity"])) if "identity" in z.files else None
            traces = {k[len("trace_"):]: z[k] for k in z.files if k.startswith("trace_")}
            summary = json.loads(str(z["summary"]))
    except Exception:  # unreadable entry: treat as a miss and overwrite it
        return None
    if "w_final" not in traces:  # an entry without w_T: a miss
        return None
    if identity is not None and stored != json.loads(json.dumps(identity, sort_keys=True)):
        warnings.warn(f"fbsgd cache entry {path} was not computed for this configuration and code; recomputing it",
                      CacheWarning, stacklevel=3)
        return None
    return summary, traces


# -------------------------------------------------------------------------------------------------
# running a chunk (a plain function: joblib ships it to processes or to Dask workers)
# -------------------------------------------------------------------------------------------------


def _run_chunk(configs: list, keys: list[str], expected_hash: str, cache_dir: str | None, trace_points: int) -> list[tuple]:
    """Run one chunk (:func:`_chunks`): Section 7 configurations that share (T, d, M, data_seed,
    metric_every, precision), chain configurations of one shape, or one configuration on the
    reference path; ``keys`` are their cache entries.  Returns (key, summary, traces) per configuration."""
    if engine_hash() != expected_hash:
        raise RuntimeError(
            f"this worker runs a different fbsgd engine ({engine_hash()}) than the process that started the sweep "
            f"({expected_hash}): fbsgd was changed during the sweep, or the cluster's workers have another version installed"
        )
    c0 = configs[0]
    if isinstance(c0, ChainConfig) or not_compiled(c0) is not None:
        return _run_other_chunk(configs, keys, cache_dir, trace_points)
    AT64, AT32 = _data(c0.d, c0.M, c0.data_seed)
    AT = AT32 if c0.precision == "float32" else AT64
    run = kernel(c0.d, c0.precision)
    params = kernel_params([c.kernel_row() for c in configs])
    C, T, k = len(configs), c0.T, c0.metric_every
    W = np.array([c.initial_weights() for c in configs])
    norms = np.full((C, -(-T // k)), np.nan)
    diverged_at = np.full(C, -1, dtype=np.int64)
    problems = [c.problem() for c in configs]
    optima = [_optimum(c.d, c.M, c.rho, c.regularizer, c.data_seed) for c in configs]
    checkpoints = _trace_grid(T, k, trace_points)
    gaps = np.full((C, checkpoints.size), np.nan)
    start = time.perf_counter()
    run(AT, AT64, W, 0, T, k, params, norms, checkpoints, gaps, diverged_at)  # f(w_t) − f* at the checkpoints too
    runtime = (time.perf_counter() - start) / C
    out = []
    for i, cfg in enumerate(configs):
        summary, traces = _section7_result(cfg, norms[i], int(diverged_at[i]), W[i], gaps[i], checkpoints, runtime,
                                           problems[i], optima[i])
        if cache_dir is not None:
            _save(Path(cache_dir), keys[i], _identity(cfg, trace_points), summary, traces)
        out.append((keys[i], summary, traces))
    return out


def _section7_result(cfg: RunConfig, norms: np.ndarray, diverged_at: int, w: np.ndarray, gaps: np.ndarray,
                     checkpoints: np.ndarray, runtime: float, problem, optimum: float) -> tuple[dict, dict]:
    """(summary, traces) of a Section 7 run from its gradient norms at t = 0, k, 2k, ... < T, the step
    that diverged (−1: none), w_T, and the loss gaps at the trace's checkpoints."""
    T, k = cfg.T, cfg.metric_every
    diverged = diverged_at >= 0
    smooth = ewma(norms, cfg.ewma, k)
    if diverged:
        stable, stable_it = float("nan"), float("nan")
    else:
        stable, stable_it = stable_summary(smooth, T, k)
    finite = smooth[np.isfinite(smooth)]
    alternatives = {}
    for beta in ALT_EWMAS:
        alt = stable_summary(ewma(norms, beta, k), T, k) if not diverged else (float("nan"), float("nan"))
        alternatives[f"stable_grad_norm_ewma{beta:g}"] = alt[0]
        alternatives[f"stable_iteration_ewma{beta:g}"] = alt[1]
    summary = dict(stable_grad_norm=stable, stable_iteration=stable_it, diverged=diverged,
                   diverged_at=int(diverged_at) if diverged else -1,
                   final_ewma=float(finite[-1]) if finite.size else float("nan"),
                   final_weight_norm=float(np.linalg.norm(w)) if not diverged else float("nan"),
                   mean_sq_grad_norm=float(np.mean(norms ** 2)) if not diverged else float("nan"),
                   final_loss_gap=float(problem.loss(w) - optimum) if not diverged else float("nan"),
                   **alternatives, runtime_s=runtime, engine_hash=engine_hash(), fbsgd_version=__version__)
    traces = dict(t=checkpoints, ewma=smooth[checkpoints // k], loss_gap=gaps, grad_norm=norms[checkpoints // k],
                  w_final=np.asarray(w, dtype=np.float64))
    return summary, traces


def _section7_reference(cfg: RunConfig, checkpoints: np.ndarray) -> tuple:
    """A Section 7 configuration through :func:`fbsgd.optimizers.train` (the reference path): the perturbed
    passes with the plan's streams keyed by the run's stream seed (as the kernel keys them), the sampling
    noise ξ and the regularizer's gradient, in float64.  Returns (norms, diverged_at, w_T, gaps at the
    checkpoints, seconds)."""
    problem = cfg.problem()
    optimum = _optimum(cfg.d, cfg.M, cfg.rho, cfg.regularizer, cfg.data_seed)
    seed = cfg.stream_seed()
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        run = train(PassGradient(problem.net, cfg.plan()), cfg.initial_weights(),
                    AddNoise(SGD(cfg.gamma), cfg.noise_std, xi_key(seed)), cfg.T, problem.data, seed=seed,
                    regularizer_grad=lambda w: problem.rho * problem.regularizer.gradient(w), record_every=cfg.metric_every,
                    metrics={"grad_norm": lambda w: float(np.linalg.norm(problem.gradient(w))),
                             "loss_gap": lambda w: float(problem.loss(w) - optimum)})
    keep = run.t < cfg.T
    return (run["grad_norm"][keep], run.diverged_at, run.w, run["loss_gap"][keep][checkpoints // cfg.metric_every],
            time.perf_counter() - start)


def _chain_result(cfg: ChainConfig, raw: dict, checkpoints: np.ndarray) -> tuple[dict, dict]:
    """(summary, traces) of a chain run from :func:`fbsgd.engine.chains.run_chain_chunk`'s dict."""
    T, k = cfg.T, cfg.metric_every
    norms, diverged_at = raw["norms"], raw["diverged_at"]
    diverged = diverged_at >= 0
    smooth = ewma(norms, cfg.ewma, k)
    stable, stable_it = (float("nan"), float("nan")) if diverged else stable_summary(smooth, T, k)
    finite = smooth[np.isfinite(smooth)]
    nan = float("nan")
    summary = dict(stable_grad_norm=stable, stable_iteration=stable_it, diverged=diverged,
                   diverged_at=int(diverged_at) if diverged else -1,
                   final_ewma=float(finite[-1]) if finite.size else nan,
                   final_grad_norm=raw["final_grad_norm"] if not diverged else nan,
                   final_loss=raw["final_loss"] if not diverged else nan,
                   train_accuracy=raw["train_accuracy"] if not diverged else nan,
                   final_weight_norm=float(np.linalg.norm(raw["w"])) if not diverged else nan,
                   mean_sq_grad_norm=float(np.mean(norms ** 2)) if not diverged else nan,
                   runtime_s=raw["runtime_s"], engine_hash=engine_hash(), fbsgd_version=__version__)
    idx = checkpoints // k
    traces = dict(t=checkpoints, ewma=smooth[idx], grad_norm=norms[idx], loss=raw["losses"][idx],
                  w_final=np.asarray(raw["w"], dtype=np.float64))
    return summary, traces


def _run_other_chunk(configs: list, keys: list[str], cache_dir: str | None, trace_points: int) -> list[tuple]:
    """A chunk of chain configurations of one shape (the chain kernel), or one configuration on the
    reference path (:func:`fbsgd.optimizers.train`)."""
    c0 = configs[0]
    checkpoints = _trace_grid(c0.T, c0.metric_every, trace_points)
    if isinstance(c0, ChainConfig):
        if not_compiled(c0) is None:
            raws = run_chain_chunk(configs)
        else:
            raws = [reference_chain_run(c) for c in configs]
        results = [_chain_result(c, raw, checkpoints) for c, raw in zip(configs, raws)]
    else:
        results = []
        for c in configs:
            norms, diverged_at, w, gaps, seconds = _section7_reference(c, checkpoints)
            results.append(_section7_result(c, norms, diverged_at, w, gaps, checkpoints, seconds, c.problem(),
                                            _optimum(c.d, c.M, c.rho, c.regularizer, c.data_seed)))
    out = []
    for cfg, key, (summary, traces) in zip(configs, keys, results):
        if cache_dir is not None:
            _save(Path(cache_dir), key, _identity(cfg, trace_points), summary, traces)
        out.append((key, summary, traces))
    return out


def _chunks(configs: list, chunk_size: int, workers: int = 1) -> list[list]:
    """Group configurations that can share a kernel call, then cut into chunks of at most
    ``chunk_size``, and into at least ``workers`` chunks where the group allows it, so that a
    group of few long runs (9 runs of 2,000,000 iterations, say) keeps every worker busy rather
    than one chunk of 8 and one of 1.  Chunking never changes a result (each configuration's
    arithmetic is its own; tests/test_engine.py).  A Section 7 group shares (T, d, M, data_seed,
    metric_every, precision), a chain group its shape (:meth:`ChainConfig.shape`); a configuration on
    the reference path is a chunk of its own."""
    groups: dict = {}
    for i, c in enumerate(configs):
        if not_compiled(c) is not None:
            key = ("reference", i)
        elif isinstance(c, ChainConfig):
            key = c.shape()
        else:
            key = (c.T, c.d, c.M, c.data_seed, c.metric_every, c.precision)
        groups.setdefault(key, []).append(c)
    out = []
    for group in groups.values():
        # similar work next to each other: the perturbation kind and interval decide the cost
        if isinstance(group[0], ChainConfig):
            group.sort(key=lambda c: (c.optimizer, c.lr, c.seed))
        else:
            group.sort(key=lambda c: (c.perturbation, c.interval, c.mode, c.regularizer, c.gamma, c.seed))
        size = max(1, min(chunk_size, -(-len(group) // max(1, workers))))
        out += [group[i : i + size] for i in range(0, len(group), size)]
    return out


@dataclass
class SweepResult:
    table: pd.DataFrame
    traces: pd.DataFrame = field(repr=False)  # config_id, t, ewma, grad_norm, loss_gap (f(w_t) − f*)
    weights: dict = field(default_factory=dict, repr=False)  # config_id -> w_T (float64, the library's order)
    computed: int = 0
    from_cache: int = 0
    wall_s: float = 0.0


def cost_text(*results: SweepResult) -> str:
    """What one or more sweeps cost, as the chapters print it: "N computed, M from the cache, S s"."""
    return (f"{sum(r.computed for r in results)} computed, {sum(r.from_cache for r in results)} from the cache, "
            f"{sum(r.wall_s for r in results):.1f} s")


_CHECKED: dict = {}  # (kind's class, canonical form) → None: compiled form checked against apply in this process


def _placed_kinds(plan: Plan):
    """(place, perturbation) of every perturbation of a plan, the kinds a wrapper holds included
    (:func:`fbsgd.perturbations.nested_kinds`)."""
    return [(f"{where}[{i}]", q) for where, perts in (("forward", plan.forward), ("backward", plan.backward))
            for i, p in perts.items() for q in nested_kinds(p)]


def check_kinds(configs) -> None:
    """Refuse, before anything is computed, a configuration whose perturbation's compiled form computes
    something else than its ``apply`` (:func:`fbsgd.perturbations.check_compiled`: bits, or float32
    rounding, on probe inputs): the engine would run a different function from the one written.  Each
    distinct kind (its class and canonical form) is checked once per process; a kind without a compiled
    form passes (it runs on the reference path, which calls ``apply`` itself), and so does one with a
    compiled form and no ``apply`` (nothing to compare it with)."""
    for c in configs:
        for place, p in _placed_kinds(c.plan()):
            key = (type(p), canonical(p))
            if key in _CHECKED:
                continue
            try:
                check_compiled(p)
            except NotImplementedError:  # a kind with a compiled form and no apply: nothing to disagree with
                pass
            except ValueError as e:
                raise ValueError(f"run_sweep: the perturbation at {place} of configuration {c!r:.200} is refused, before "
                                 f"anything is computed: its compiled() form computes something else than its apply. {e}") from None
            _CHECKED[key] = None


def run_sweep(configs, *, n_jobs: int | None = None, cache_dir: str | os.PathLike | None | bool = True,
              chunk_size: int = 8, trace_points: int = 600, progress: bool = True) -> SweepResult:
    """Run (or load from the cache) every configuration (:class:`RunConfig` or :class:`ChainConfig`); one
    table row per configuration, with its fields, its results and ``path`` ("compiled" or "reference");
    the traces (one row per configuration and checkpoint) and each run's final weights w_T
    (``SweepResult.weights[config_id]``) beside it.

    ``cache_dir``: True → :func:`default_cache_dir`; a path; or False/None for no cache.
    ``n_jobs``: joblib workers (None → joblib's default for the active backend, -1 → all cores).
    Configurations the compiled kernels cannot run (:func:`not_compiled`) run on the reference path,
    with one :class:`NotCompiledWarning` per sweep naming their kinds.
    """
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm.auto import tqdm

    configs = list(configs)
    if not configs:
        raise ValueError("run_sweep needs at least one configuration")
    for c in configs:
        if not isinstance(c, (RunConfig, ChainConfig)):
            raise TypeError(f"run_sweep takes RunConfig or ChainConfig objects, got {type(c).__name__}")
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if n_jobs == 0 or isinstance(n_jobs, bool) or not (n_jobs is None or isinstance(n_jobs, int)):
        raise ValueError(f"n_jobs must be a non-zero integer (-1: all cores) or None, got {n_jobs!r}")
    if cache_dir is True:
        cache_dir = default_cache_dir()
    cache = Path(cache_dir) if cache_dir else None
    if cache is not None:
        check_writable(cache, "the sweep cache folder (cache_dir, or $FBSGD_CACHE_DIR)")
    for T, k in sorted({(c.T, c.metric_every) for c in configs}):
        check_memory(T, k, min(chunk_size, len(configs)), n_jobs or 1)
    check_kinds(configs)

    start = time.perf_counter()
    results: dict = {}
    todo: dict = {}
    if not (isinstance(trace_points, int) and not isinstance(trace_points, bool) and trace_points >= 4):
        raise ValueError(f"trace_points must be an integer >= 4, got {trace_points!r}")
    for c in configs:
        key = entry_key(c, trace_points)
        if key in results or key in todo:
            continue
        hit = _load(cache, key, _identity(c, trace_points)) if cache is not None else None
        if hit is not None:
            results[key] = (hit[0], hit[1], True)
        else:
            todo[key] = c
    notice = _notice(list(todo.values()))
    if notice is not None:
        warnings.warn(notice, NotCompiledWarning, stacklevel=2)
    chunks = _chunks(list(todo.values()), chunk_size, effective_n_jobs(n_jobs))
    if chunks:
        expected = engine_hash()
        jobs = (delayed(_run_chunk)(ch, [entry_key(c, trace_points) for c in ch], expected, str(cache) if cache else None, trace_points)
                for ch in chunks)
        bar = tqdm(total=len(todo), desc="configurations", unit="run", disable=not progress)
        for chunk_out in Parallel(n_jobs=n_jobs, return_as="generator")(jobs):
            for key, summary, traces in chunk_out:
                results[key] = (summary, traces, False)
            bar.update(len(chunk_out))
        bar.close()

    rows, trace_rows, weights = [], [], {}
    for c in configs:
        summary, traces, cached = results[entry_key(c, trace_points)]
        rows.append({**c.fields(), **summary, "cached": cached, "config_id": c.key(),
                     "path": "compiled" if not_compiled(c) is None else "reference"})
        trace_rows.append(pd.DataFrame({"config_id": c.key(), **{k: v for k, v in traces.items() if k != "w_final"}}))
        weights[c.key()] = traces["w_final"]
    table = pd.DataFrame(rows)
    traces = pd.concat(trace_rows, ignore_index=True).drop_duplicates(["config_id", "t"])
    return SweepResult(table, traces, weights, computed=len(todo), from_cache=sum(r[2] for r in results.values()),
                       wall_s=time.perf_counter() - start)
