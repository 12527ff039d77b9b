"""A researcher's own compiled block kind (fbsgd.perturbations.BlockOp), written here as a user would: its
fields checked, its blocks in the Section 7 kernel as lowprec.map_blocks cuts them (bit for bit, float32 and
float64, shared and per-sample draws, blocks that divide the tile and blocks that do not), a whole run
against the built-in Round and against the reference path, batch invariance, and check_compiled."""
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from numba import njit

from fbsgd import lowprec, rng
from fbsgd import perturbations as P
from fbsgd.engine import kernel as K
from fbsgd.engine import lockstep as E
from fbsgd.engine.sweeps import RunConfig, run_sweep

# ---------------------------------------------------------------------------------------------------
# the user's kind: an MX-style block quantizer (a power-of-two scale per block, elements rounded)
# ---------------------------------------------------------------------------------------------------


@njit
def mx_style(x, u, numbers, out):
    """numbers = (man_bits, emin, max_finite, emax, stochastic): X = 2^(⌊log₂ amax⌋ − emax), at least 2^-127;
    each x / X clamped to ±max_finite, rounded (nearest, or stochastically with u), times X."""
    amax = 0.0
    for i in range(x.size):
        amax = max(amax, abs(x[i]))
    k = -127
    if amax > 0.0:
        k = max(math.frexp(amax)[1] - 1 - np.int64(numbers[3]), -127)
    X = math.ldexp(1.0, k)
    for i in range(x.size):
        y = min(max(x[i] / X, -numbers[2]), numbers[2])
        out[i] = lowprec.round_scalar(y, np.int64(numbers[0]), np.int64(numbers[1]), numbers[2], False,
                                      u[i] if numbers[4] != 0.0 else -1.0) * X


E4M3 = lowprec.FORMATS["float8_e4m3fn"]
BF16 = lowprec.FORMATS["bfloat16"]


@dataclass(frozen=True)
class MXStyle(P.Perturbation):
    """Blocks of ``block`` consecutive entries with a shared power-of-two scale, elements in ``fmt``.  With
    block 1 and bfloat16 (emax 126: the scaled value stays in [2^126, 2^127), inside bfloat16's normal range
    with room to round up) it is the bfloat16 rounding of every entry in the normal range."""

    block: int = 32
    fmt: str = "float8_e4m3fn"
    stochastic: bool = False
    per_sample: bool = True

    def compiled(self):
        f = lowprec.FORMATS[self.fmt]
        emax = 126 if self.fmt == "bfloat16" else math.frexp(f.max_finite)[1] - 1
        return P.BlockOp(mx_style, self.block, (f.man_bits, f.emin, f.max_finite, emax, float(self.stochastic)),
                         per_sample=self.per_sample)

    def apply(self, x, key, step):
        return self.compiled().apply(x, key, step)

    @property
    def law(self):
        return P.Law("input_dependent", False, False)


# ---------------------------------------------------------------------------------------------------
# the fields and the reference (apply / map_blocks)
# ---------------------------------------------------------------------------------------------------


def test_block_op_checks_its_fields():
    op = P.BlockOp(mx_style, 32, (3, -6, 448, 8, 0))
    assert (op.kind, op.block, op.numbers, op.params, op.per_sample) == \
        ("block", 32, (3.0, -6.0, 448.0, 8.0, 0.0), (32, 3.0, -6.0, 448.0, 8.0, 0.0), True)
    assert P.BlockOp(mx_style, 4.0).block == 4
    for build, message in [
        (lambda: P.BlockOp(lambda x, u, numbers, out: None, 32), "field fn must be a numba function"),
        (lambda: P.BlockOp(mx_style, 0), "field block must be an integer >= 1"),
        (lambda: P.BlockOp(mx_style, 2.5), "field block must be an integer"),
        (lambda: P.BlockOp(mx_style, True), "field block must be an integer"),
        (lambda: P.BlockOp(mx_style, 32, (1.0, float("inf"))), r"field numbers\[1\] must be a finite number"),
        (lambda: P.BlockOp(mx_style, 32, 7), "field numbers must be a tuple"),
        (lambda: P.BlockOp(mx_style, 32, (), "no"), "field per_sample must be True or False"),
    ]:
        with pytest.raises(ValueError, match=message):
            build()

    @njit
    def element_like(x, u, numbers):
        return x

    with pytest.raises(ValueError, match=r"field fn \('element_like'\) must compile as fn\(x: float64 array"):
        P.BlockOp(element_like, 8)

    @njit
    def returns(x, u, numbers, out):
        return 1.0

    with pytest.raises(ValueError, match="it must write into out and return nothing"):
        P.BlockOp(returns, 8)


@njit
def _block_sums(x, u, numbers, out):
    s = 0.0
    for i in range(x.size):
        s += x[i]
    for i in range(x.size):
        out[i] = s + numbers[0] * u[i]


def test_apply_cuts_rows_into_blocks_and_draws_from_the_stream():
    """Blocks restart at every row (the last one shorter); one column, or one dimension: one row; the draws
    are the stream's at the entries' flat indices (index 0 for all when shared)."""
    x = np.arange(10.0).reshape(2, 5)
    got = P.BlockOp(_block_sums, 2).apply(x, 3, 1)
    np.testing.assert_array_equal(got, [[1, 1, 5, 5, 4], [11, 11, 15, 15, 9]])
    col = P.BlockOp(_block_sums, 4).apply(np.arange(10.0).reshape(10, 1), 3, 1)
    np.testing.assert_array_equal(col.ravel(), [6, 6, 6, 6, 22, 22, 22, 22, 17, 17])
    np.testing.assert_array_equal(P.BlockOp(_block_sums, 4).apply(np.arange(10.0), 3, 1), col.ravel())
    u = P.BlockOp(_block_sums, 3, (1.0,)).apply(np.zeros(7), 11, 2)
    np.testing.assert_array_equal(u, rng.uniform(11, 2, 7))
    shared = P.BlockOp(_block_sums, 3, (1.0,), per_sample=False).apply(np.zeros(7), 11, 2)
    np.testing.assert_array_equal(shared, np.full(7, rng.uniform(11, 2, 1)[0]))
    assert P.BlockOp(_block_sums, 3).apply(np.ones(4, np.float32), 0, 0).dtype == np.float32


def test_axis_cuts_rows_or_columns_and_draws_at_each_entrys_flat_index():
    """axis -1: blocks along each row; axis 0: blocks down each column (consecutive samples of a feature);
    None: the rows, a one-column message its column.  The draw of an entry is the stream's at its flat
    C-order index whichever way the message is cut."""
    x = np.arange(12.0).reshape(4, 3)  # rows [0 1 2] [3 4 5] [6 7 8] [9 10 11]
    rows = P.BlockOp(_block_sums, 2, axis=-1).apply(x, 3, 1)
    np.testing.assert_array_equal(rows, [[1, 1, 2], [7, 7, 5], [13, 13, 8], [19, 19, 11]])
    np.testing.assert_array_equal(P.BlockOp(_block_sums, 2).apply(x, 3, 1), rows)
    cols = P.BlockOp(_block_sums, 3, axis=0).apply(x, 3, 1)
    np.testing.assert_array_equal(cols, [[9, 12, 15], [9, 12, 15], [9, 12, 15], [9, 10, 11]])
    one = np.arange(5.0).reshape(5, 1)
    np.testing.assert_array_equal(P.BlockOp(_block_sums, 2, axis=-1).apply(one, 3, 1), one)  # one-entry rows
    np.testing.assert_array_equal(P.BlockOp(_block_sums, 2, axis=0).apply(one, 3, 1),
                                  P.BlockOp(_block_sums, 2).apply(one, 3, 1))
    u = P.BlockOp(_block_sums, 3, (1.0,), axis=0).apply(np.zeros((4, 3)), 11, 2)
    np.testing.assert_array_equal(u, rng.uniform(11, 2, 12).reshape(4, 3))
    with pytest.raises(ValueError, match="field axis must be -1"):
        P.BlockOp(_block_sums, 2, axis=1)


# ---------------------------------------------------------------------------------------------------
# the kernel's block step, bit for bit
# ---------------------------------------------------------------------------------------------------


def _place(block, per_sample, key):
    p = np.zeros(1, dtype=K.PLACE)
    p[0]["kind"], p[0]["block"], p[0]["per_sample"], p[0]["key"] = K.BLOCK, block, int(per_sample), key
    return p


@njit
def _kernel_step(z, t, places, numbers, fn):
    M = z.size
    K.perturb_blocks(z, M, t, places[0], numbers, fn, np.empty(M), np.empty(M), np.empty(M))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("per_sample", [True, False])
@pytest.mark.parametrize("block", [1, 7, 32, 256, 300])
def test_the_kernels_block_step_is_map_blocks(dtype, per_sample, block):
    """The kernel's BLOCK step on a message of 1000 samples (four tiles of 256; blocks that divide the tile
    and blocks that do not, 300 > TILE spans two) gives the bits of BlockOp.apply on the one-column message,
    stochastic (the draws) and to nearest."""
    g = np.random.default_rng(block)
    z = (g.standard_normal(1000) * np.exp(g.uniform(-8, 8, 1000))).astype(dtype)
    for stochastic in (0.0, 1.0):
        op = P.BlockOp(mx_style, block, (E4M3.man_bits, E4M3.emin, E4M3.max_finite, 8, stochastic), per_sample)
        want = op.apply(z.reshape(-1, 1), 99, 4).ravel()
        got = z.copy()
        _kernel_step(got, 4, _place(block, per_sample, 99), np.array(op.numbers), op.fn)
        assert got.dtype == dtype and got.tobytes() == want.tobytes()
        assert not np.array_equal(got, z)


# ---------------------------------------------------------------------------------------------------
# whole runs through the kernel
# ---------------------------------------------------------------------------------------------------


def _kernel_run(plan, precision, seed=7, T=40, M=600, d=10):
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
def test_the_kernel_runs_a_user_block_kind_as_the_builtin_round(precision):
    """Blocks of one entry with bfloat16 elements (scaled by a power of two, which bfloat16's normal range
    absorbs) are the bfloat16 rounding of every entry: at the forward and the backward place, to nearest and
    stochastically, the block kernel (whole messages of 600 samples) gives the bits of the tile kernel with
    the built-in Round("bfloat16") — two independent implementations, the same streams."""
    for stochastic in (False, True):
        mode = "stochastic" if stochastic else "nearest"
        user = MXStyle(1, "bfloat16", stochastic)
        got = _kernel_run(dict(forward={1: user}, backward={2: user}), precision)
        builtin = _kernel_run(dict(forward={1: P.Round("bfloat16", mode)}, backward={2: P.Round("bfloat16", mode)}),
                              precision)
        assert got[0].tobytes() == builtin[0].tobytes() and got[1].tobytes() == builtin[1].tobytes()
        assert not np.array_equal(got[1], _kernel_run({}, precision)[1])  # the rounding acted


@pytest.mark.parametrize("per_sample", [True, False])
def test_run_sweep_runs_a_user_block_kind_compiled_as_the_reference_does(per_sample):
    """Through run_sweep (compiled: no notice of the reference path) and through the reference
    fbsgd.optimizers.train path (the kind's apply on the (M, 1) messages), in float64, with blocks that span
    tiles (300) and that do not divide them (7): the same run up to the summation order of the dot products."""
    cfg = RunConfig(T=30, gamma=0.5, M=700, metric_every=1, precision="float64",
                    forward=MXStyle(7, stochastic=True, per_sample=per_sample),
                    backward=MXStyle(300, "float8_e5m2", stochastic=True, per_sample=per_sample))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run_sweep([cfg], cache_dir=False, progress=False, n_jobs=1, trace_points=10_000)
    w_ref, norms_ref, div = E.reference_run(cfg.problem(), cfg.plan(), cfg.stream_seed(), cfg.gamma, cfg.T,
                                            cfg.noise_std, E.xi_key(cfg.stream_seed()), metric_every=1)
    assert div == -1
    np.testing.assert_allclose(res.traces.sort_values("t").grad_norm.to_numpy(), norms_ref, rtol=1e-10)
    assert res.table.final_weight_norm.iloc[0] == pytest.approx(np.linalg.norm(w_ref), rel=1e-10)
    clean = run_sweep([RunConfig(T=30, gamma=0.5, M=700, metric_every=1, precision="float64")], cache_dir=False,
                      progress=False, n_jobs=1)
    assert abs(clean.table.final_weight_norm.iloc[0] - np.linalg.norm(w_ref)) > 1e-6  # the blocks acted


def test_user_block_kinds_are_batch_invariant():
    """Configurations with block kinds of other sizes and draws, with none, and with built-in kinds in one
    sweep (float32, the default): each gives the bits it gives alone."""
    both = dict(forward=MXStyle(32), backward=MXStyle(7, stochastic=True))
    target = RunConfig(T=300, gamma=0.1, seed=2, M=700, **both)
    others = [RunConfig(T=300, gamma=g, M=700, forward=f, backward=b) for g in (0.05, 0.2)
              for f, b in ((None, None), (MXStyle(300), MXStyle(1, stochastic=True)), (P.Round("float16"), None))]
    others.append(RunConfig(T=300, gamma=0.1, seed=3, M=700, **both))

    def fingerprint(configs, chunk):
        res = run_sweep(configs, cache_dir=False, progress=False, n_jobs=1, chunk_size=chunk, trace_points=10_000)
        tr = res.traces[res.traces.config_id == target.key()].sort_values("t")
        row = res.table[res.table.config_id == target.key()].iloc[0]
        return row.final_weight_norm, tr.grad_norm.to_numpy().tobytes()

    alone = fingerprint([target], 1)
    assert fingerprint(others[:3] + [target] + others[3:], 8) == alone
    assert fingerprint(list(reversed(others)) + [target], 3) == alone


# ---------------------------------------------------------------------------------------------------
# a wrong compiled declaration
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeclaresOtherBlocks(MXStyle):
    """Its apply quantizes blocks of 16; its compiled() declares blocks of 32."""

    def compiled(self):
        return P.BlockOp(mx_style, 32, MXStyle.compiled(self).numbers)

    def apply(self, x, key, step):
        return MXStyle.compiled(self).apply(x, key, step)


def test_check_compiled_catches_a_wrong_block_declaration():
    assert P.check_compiled(MXStyle(16)) is None
    assert P.check_compiled(MXStyle(5, "float8_e5m2", stochastic=True, per_sample=False)) is None
    with pytest.raises(ValueError, match=r"compiled\(\) and apply disagree in compiled\(\): fn / block / numbers"):
        P.check_compiled(DeclaresOtherBlocks(16))
