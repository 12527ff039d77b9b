"""The compiled forms of the perturbations (fbsgd.perturbations.CompiledOp): named fields, checked when
built; and a researcher's own compiled element kind (ElementOp), run by the Section 7 kernel."""
import importlib.util
import sys
import warnings
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import pytest
from numba import njit

from fbsgd import lowprec
from fbsgd import perturbations as P
from fbsgd.engine import lockstep as E
from fbsgd.engine.sweeps import RunConfig, run_sweep
from fbsgd.vecmath import bits_to_f64, f64_to_bits

# ---------------------------------------------------------------------------------------------------
# the named forms
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(lowprec.FORMATS))
@pytest.mark.parametrize("mode", ["nearest", "stochastic"])
def test_round_gives_the_numbers_of_its_format(name, mode):
    f = lowprec.FORMATS[name]
    if name == "float32":
        op = P.RoundOp.to(name, mode)
    else:
        op = P.Round(name, mode).compiled()
    assert isinstance(op, P.RoundOp) and isinstance(op, P.CompiledOp)
    assert (op.kind, op.man_bits, op.emin, op.max_finite, op.has_inf, op.stochastic) == \
        ("round", f.man_bits, 1 - f.bias, f.max_finite, f.has_inf, mode == "stochastic")
    assert op.params == (f.man_bits, 1 - f.bias, f.max_finite, f.has_inf, mode == "stochastic")
    assert op.per_sample is True and op.format == name


@pytest.mark.parametrize("field", sorted(lowprec.FIELDS))
def test_bitflip_and_uniform_give_their_numbers(field):
    op = P.BitFlip(0.25, field).compiled()
    lo, n = {"sign": (31, 1), "exponent": (23, 8), "mantissa": (0, 23), "any": (0, 32)}[field]
    assert isinstance(op, P.BitFlipOp) and (op.kind, op.rate, op.lo_bit, op.n_bits) == ("bitflip", 0.25, lo, n)
    assert op.params == (0.25, lo, n) and op.per_sample is True
    u = P.UniformNoise(-0.5, 2.0, per_sample=False).compiled()
    assert isinstance(u, P.UniformOp) and (u.kind, u.low, u.high, u.per_sample, u.params) == ("uniform", -0.5, 2.0, False, (-0.5, 2.0))
    assert P.every(3, P.BitFlip(0.25, field)).compiled() == op  # a schedule does not change what is computed


def test_the_positional_form_builds_the_named_form_with_the_same_checks():
    assert P.CompiledOp("uniform", (-1, 2), False) == P.UniformOp(-1.0, 2.0, False)
    bf16 = lowprec.FORMATS["bfloat16"]
    assert P.CompiledOp("round", bf16.args) == P.RoundOp(*bf16.args, stochastic=False)  # four numbers: nearest
    assert P.CompiledOp("round", (*bf16.args, True)) == P.RoundOp.to("bfloat16", "stochastic")
    assert P.CompiledOp("bitflip", (0.5, 0, 23), True) == P.BitFlipOp(0.5, 0, 23)
    with pytest.raises(ValueError, match="RoundOp: field man_bits = 60"):
        P.CompiledOp("round", (60, -2000, 1e300, True, False))
    with pytest.raises(ValueError, match=r"kind must be one of \['uniform', 'round', 'bitflip'\].*ElementOp"):
        P.CompiledOp("gauss", (0.0, 1.0))
    with pytest.raises(ValueError, match=r"the 3 numbers \('rate', 'lo_bit', 'n_bits'\)"):
        P.CompiledOp("bitflip", (0.5, 0))
    with pytest.raises(ValueError, match="per_sample of a 'round' operation must be True"):
        P.CompiledOp("round", bf16.args, False)


BF16 = lowprec.FORMATS["bfloat16"]
INVALID = [
    # the examples
    (lambda: P.RoundOp(60, -2000, BF16.max_finite, True), "field man_bits = 60 is not that of a known format"),
    (lambda: P.RoundOp(7, -2000, BF16.max_finite, True), "field emin = -2000 is not that of a known format"),
    (lambda: P.BitFlipOp(0.1, 30, 8), r"field n_bits must be in 1\.\.2 .*bits 30\.\.37"),
    (lambda: P.BitFlipOp(2.0, 0, 23), r"field rate must be a probability in \[0, 1\], got 2\.0"),
    (lambda: P.BitFlipOp(-0.5, 0, 23), r"field rate must be a probability in \[0, 1\], got -0\.5"),
    # and the others
    (lambda: P.RoundOp(7, -126, 1000.0, True), "field max_finite = 1000.0 is not that of a known format"),
    (lambda: P.RoundOp(7, -126, 448.0, True), "are not those of one format"),
    (lambda: P.RoundOp(7, -14, BF16.max_finite, True), r"\(man_bits, emin, max_finite, has_inf\) = .* are not those of one format"),
    (lambda: P.RoundOp(7, -126, BF16.max_finite, False), "are not those of one format"),
    (lambda: P.RoundOp(7.5, -126, BF16.max_finite, True), "field man_bits must be an integer"),
    (lambda: P.RoundOp(7, -126, BF16.max_finite, 2), "field has_inf must be True or False"),
    (lambda: P.RoundOp(7, -126, BF16.max_finite, True, "yes"), "field stochastic must be True or False"),
    (lambda: P.RoundOp.to("float7"), "name must be one of"),
    (lambda: P.RoundOp.to("bfloat16", "up"), "mode"),
    (lambda: P.BitFlipOp(float("nan"), 0, 1), "field rate must be a finite number"),
    (lambda: P.BitFlipOp(0.1, 32, 1), r"field lo_bit must be in 0\.\.31"),
    (lambda: P.BitFlipOp(0.1, -1, 1), r"field lo_bit must be in 0\.\.31"),
    (lambda: P.BitFlipOp(0.1, 0, 0), r"field n_bits must be in 1\.\.32"),
    (lambda: P.BitFlipOp(0.1, 0, 33), r"field n_bits must be in 1\.\.32"),
    (lambda: P.UniformOp(1.0, -1.0), "field high must be >= low"),
    (lambda: P.UniformOp(float("-inf"), 1.0), "field low must be a finite number"),
    (lambda: P.UniformOp(0.0, 1.0, "no"), "field per_sample must be True or False"),
]


@pytest.mark.parametrize("build,message", INVALID, ids=[m[:40] for _, m in INVALID])
def test_invalid_fields_are_refused_with_the_field_and_what_is_allowed(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_known_format_is_listed_when_a_round_is_refused():
    with pytest.raises(ValueError) as info:
        P.RoundOp(60, -2000, 1.0, True)
    for name, f in lowprec.FORMATS.items():
        assert f"{name}: {f.args}" in str(info.value)


# ---------------------------------------------------------------------------------------------------
# a researcher's own compiled element kind, written here as a user would
# ---------------------------------------------------------------------------------------------------

_ABS = np.int64(0x7FFFFFFFFFFFFFFF)


@njit
def round_bits(x, u, numbers):
    """x rounded to numbers[0] mantissa bits: to nearest, ties to even (numbers[1] == 0), or up with
    probability (|x| - lo) / (hi - lo) (numbers[1] == 1).  No limit on the exponent range."""
    drop = 52 - np.int64(numbers[0])
    low = (np.int64(1) << drop) - 1
    b = f64_to_bits(x)
    a = b & _ABS
    if numbers[1] == 0.0:
        r = (a + (low >> 1) + ((a >> drop) & 1)) & ~low
    else:
        r = a & ~low
        if u < np.float64(a & low) * bits_to_f64((1023 - drop) << 52):
            r += low + 1
    return bits_to_f64((b & ~_ABS) | r)


@dataclass(frozen=True)
class RoundBits(P.Perturbation):
    """Round every entry to ``bits`` mantissa bits (an element kind, compiled by the engine)."""

    bits: int
    stochastic: bool = False

    def compiled(self):
        return P.ElementOp(round_bits, (self.bits, float(self.stochastic)))

    def apply(self, x, key, step):
        return self.compiled().apply(x, key, step)

    @property
    def law(self):
        return P.Law("input_dependent", False, self.stochastic)


@njit
def _shifted(x, u, numbers):
    return x + numbers[0] * u


def test_element_op_checks_its_fields():
    op = P.ElementOp(round_bits, (7, 0))
    assert (op.kind, op.params, op.numbers, op.per_sample) == ("element", (7.0, 0.0), (7.0, 0.0), True)
    with pytest.raises(ValueError, match="field fn must be a numba function"):
        P.ElementOp(lambda x, u, numbers: x, ())
    with pytest.raises(ValueError, match=r"field numbers\[1\] must be a finite number"):
        P.ElementOp(round_bits, (7, float("nan")))
    with pytest.raises(ValueError, match="field numbers must be a tuple"):
        P.ElementOp(round_bits, 7)

    @njit
    def two_args(x, u):
        return x

    with pytest.raises(ValueError, match=r"field fn \('two_args'\) must compile as fn\(x: float64, u: float64, numbers"):
        P.ElementOp(two_args, ())


def test_element_apply_is_the_format_of_ml_dtypes_and_draws_from_the_stream():
    """The reference path of the kind (its apply): bfloat16 rounding as ml_dtypes does it, in float32
    and float64; the draws of an element op are the stream's, entry by entry."""
    x = np.random.default_rng(0).standard_normal(5000) * 10.0 ** np.random.default_rng(1).integers(-30, 30, 5000)
    for dtype in (np.float64, np.float32):
        xd = x.astype(dtype)
        got = RoundBits(7).apply(xd, key=3, step=1)
        assert got.dtype == dtype
        assert got.tobytes() == xd.astype(ml_dtypes.bfloat16).astype(dtype).tobytes()
    u = P.ElementOp(_shifted, (1.0,)).apply(np.zeros((4, 3)), key=11, step=2)
    assert u.shape == (4, 3)
    from fbsgd import rng

    np.testing.assert_array_equal(u.ravel(), rng.uniform(11, 2, 12))
    shared = P.ElementOp(_shifted, (1.0,), per_sample=False).apply(np.zeros(5), key=11, step=2)
    np.testing.assert_array_equal(shared, np.full(5, rng.uniform(11, 2, 1)[0]))


def _kernel_run(plan, precision, seed=7, T=60, M=300, d=10):
    """w_T and the gradient norms of one configuration through the kernel, with the plan's streams keyed by ``seed``."""
    cfg = RunConfig(T=T, gamma=0.5, M=M, d=d, precision=precision)
    prob = cfg.problem()
    AT64 = np.ascontiguousarray(prob.signed_features.T)
    AT = AT64.astype(precision)
    row = E.compile_plan(P.Plan(**plan), seed)
    row.update(gamma=cfg.gamma, rho=prob.rho, reg=0, noise_std=cfg.noise_std, xi_key=E.xi_key(seed), f_star=0.0, metric64=0)
    W = np.zeros((1, d))
    norms = np.full((1, T), np.nan)
    E.kernel(d, precision)(AT, AT64, W, 0, T, 1, E.kernel_params([row]), norms, np.zeros(0, np.int64), np.zeros((1, 0)),
                           np.full(1, -1, np.int64))
    return W[0], norms[0]


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_the_kernel_runs_a_user_element_kind_as_the_builtin_round_of_its_format(precision):
    """The kernel with the researcher's RoundBits(7) at both places gives the bits of the kernel with the
    built-in Round("bfloat16") — two independent implementations of one rounding, the same streams —
    to nearest and stochastically (its draws are those of the place's stream, as Round's)."""
    for stochastic in (False, True):
        mode = "stochastic" if stochastic else "nearest"
        user = _kernel_run(dict(forward={1: RoundBits(7, stochastic)}, backward={2: RoundBits(7, stochastic)}), precision)
        builtin = _kernel_run(dict(forward={1: P.Round("bfloat16", mode)}, backward={2: P.Round("bfloat16", mode)}),
                              precision)
        assert user[0].tobytes() == builtin[0].tobytes() and user[1].tobytes() == builtin[1].tobytes()
        clean = _kernel_run({}, precision)
        assert not np.array_equal(user[1], clean[1])  # the rounding acted


def test_run_sweep_runs_a_user_element_kind_compiled_as_the_reference_does():
    """Through run_sweep (compiled: no notice of the reference path) and through the reference
    fbsgd.optimizers.train path, in float64: the same run up to the summation order of the dot
    products (numpy's against the kernel's), as every built-in kind (tests/engine/test_lockstep.py)."""
    cfg = RunConfig(T=30, gamma=0.5, M=300, metric_every=1, precision="float64", forward=RoundBits(7),
                    backward=RoundBits(5, True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run_sweep([cfg], cache_dir=False, progress=False, n_jobs=1, trace_points=10_000)
    w_ref, norms_ref, div = E.reference_run(cfg.problem(), cfg.plan(), cfg.stream_seed(), cfg.gamma, cfg.T,
                                            cfg.noise_std, E.xi_key(cfg.stream_seed()), metric_every=1)
    assert div == -1
    np.testing.assert_allclose(res.traces.sort_values("t").grad_norm.to_numpy(), norms_ref, rtol=1e-10)
    assert res.table.final_weight_norm.iloc[0] == pytest.approx(np.linalg.norm(w_ref), rel=1e-10)


def test_user_element_kinds_are_batch_invariant():
    """Configurations with different element functions, with none, and with built-in kinds in one sweep:
    each gives the bits it gives alone."""
    target = RunConfig(T=400, gamma=0.1, seed=2, forward=RoundBits(7), backward=RoundBits(4, True))
    others = [RunConfig(T=400, gamma=g, forward=f) for g in (0.05, 0.2)
              for f in (None, RoundBits(3), P.Round("float16"), RoundBits(10, True))]
    others.append(RunConfig(T=400, gamma=0.1, backward=RoundBits(2)))

    def fingerprint(configs, chunk):
        res = run_sweep(configs, cache_dir=False, progress=False, n_jobs=1, chunk_size=chunk, trace_points=10_000)
        tr = res.traces[res.traces.config_id == target.key()].sort_values("t")
        row = res.table[res.table.config_id == target.key()].iloc[0]
        return row.final_weight_norm, tr.grad_norm.to_numpy().tobytes()

    alone = fingerprint([target], 1)
    assert fingerprint(others[:3] + [target] + others[3:], 8) == alone
    assert fingerprint(list(reversed(others)) + [target], 3) == alone


_KIND_SOURCE = '''
from dataclasses import dataclass
import numpy as np
from numba import njit
from fbsgd import perturbations as P


@njit
def shift(x, u, numbers):
    return x + {body}


@dataclass(frozen=True)
class Shift(P.Perturbation):
    a: float

    def compiled(self):
        return P.ElementOp(shift, (self.a,))

    def apply(self, x, key, step):
        return self.compiled().apply(x, key, step)
'''


def _load(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(_KIND_SOURCE.format(body=body))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_cache_identity_of_a_user_element_kind_follows_its_element_function(tmp_path):
    """A kind's identity in the sweep cache (its canonical form) covers the element function it calls:
    edited, the function gives another key; the same code gives the same key."""
    a = _load(tmp_path, "user_kind_a", "numbers[0]")
    b = _load(tmp_path, "user_kind_b", "2.0 * numbers[0]")
    c = _load(tmp_path, "user_kind_c", "numbers[0]")
    ka, kb, kc = (RunConfig(T=100, forward=m.Shift(0.5)).key() for m in (a, b, c))
    assert ka != kb and ka == kc
