"""The compiled engine for any chain (fbsgd.engine.chains) against the readable reference,
fbsgd.optimizers.train with PassGradient(net, plan): kind by kind and site by site, in float64 and
float32; the optimizers; minibatch and full batch; batch invariance; the reference path for a kind
without a compiled form; a researcher's own chain on their own arrays; the configuration's checks."""
import math
import warnings

import numpy as np
import pytest

from fbsgd import lowprec
from fbsgd import operators as O
from fbsgd import perturbations as P
from fbsgd.engine import chain_kernel as K
from fbsgd.engine import chains as CH
from fbsgd.engine import sweeps as S
from fbsgd.engine.chains import ChainConfig
from fbsgd.optimizers import SGD, Adam, HeavyBall, PassGradient, train
from fbsgd.passes import Composite
from fbsgd.problems import Dataset, mlp

# every built-in kind the kernel compiles, with a schedule each kernel path must honour
KINDS = {
    "uniform": P.UniformNoise(-0.3, 0.2),
    "uniform shared": P.every(2, P.UniformNoise(-0.5, 0.5, per_sample=False)),
    "round nearest": P.Round("bfloat16"),
    "round stochastic": P.Round("float8_e4m3fn", mode="stochastic"),
    "round e5m2 budget": P.budget(4, 20, P.Round("float8_e5m2")),
    "bitflip mantissa": P.BitFlip(0.05, "mantissa"),
    "bitflip sign": P.every(3, P.BitFlip(0.5, "sign")),
}


def _places(N):
    return [("forward", i) for i in range(1, N)] + [("backward", i) for i in range(2, N + 1)]


def _reference(cfg: ChainConfig):
    """The same run through the readable reference: train with the perturbed passes, the same seed."""
    return train(PassGradient(cfg.net, cfg.plan()), cfg.initial_weights(), cfg.optimizer_rule(), cfg.T, cfg.data,
                 batch_size=cfg.batch or None, seed=cfg.seed)


def _grid(net, data, kinds, **kw):
    cfgs = []
    for (where, i) in _places(len(net)):
        for name, p in kinds.items():
            cfgs.append(ChainConfig(net, data, **{where: {i: p}}, panel=f"{name} {where}[{i}]", **kw))
    return cfgs


@pytest.fixture(scope="module")
def binary():
    return Dataset.classification(40, 3, seed=4)


def test_float64_bits_equal_the_reference_for_every_kind_at_every_site():
    """A 3-layer chain of width 1 with one sample per step: every sum has one term, so BLAS and numpy
    agree exactly, and the engine's weights after T steps must be the reference's, bit for bit, for
    every kind at every forward and backward site (sigmoid, ReLU, identity: the kernel's formulas are numpy's)."""
    data = Dataset.classification(30, 1, seed=2)
    net = Composite([O.Affine(1, 1), O.Sigmoid(1), O.ReLU(1), O.Affine(1, 1), O.Identity(1), O.Affine(1, 1),
                     O.LogisticLoss()])
    cfgs = _grid(net, data, {**KINDS, "bitflip exponent": P.BitFlip(0.02, "exponent")}, T=20, batch=1, lr=0.5,
                 metric_every=5, init_seed=3)
    assert len(cfgs) == 12 * 8
    out = CH.run_chain_chunk(cfgs)
    with np.errstate(all="ignore"):
        for cfg, got in zip(cfgs, out):
            ref = _reference(cfg)
            np.testing.assert_array_equal(got["w"], ref.w, err_msg=cfg.panel)
            assert got["diverged_at"] == ref.diverged_at, cfg.panel
    clean = CH.run_chain_chunk([cfgs[0].replace(forward={}, backward={})])[0]["w"]
    assert sum(np.array_equal(o["w"], clean) for o in out) <= 2  # the perturbations act


def _assert_close(cfgs, out, rtol):
    worst = 0.0
    for cfg, got in zip(cfgs, out):
        ref = _reference(cfg)
        assert got["diverged_at"] == ref.diverged_at == -1, cfg.panel
        err = np.max(np.abs(got["w"] - ref.w)) / np.max(np.abs(ref.w))
        assert err < rtol, (cfg.panel, err)
        worst = max(worst, err)
    return worst


def test_float64_agrees_with_the_reference_for_every_kind_at_every_site(binary):
    """The same grid on a tanh chain of widths 4 and 5, 8 samples per step: the kernel's products (BLAS)
    and tanh sum and round in their own order, so agreement is to a few ulps, not bits."""
    net = mlp(3, [4, 5], activation="tanh")
    cfgs = _grid(net, binary, KINDS, T=20, batch=8, lr=0.3, metric_every=5)
    assert _assert_close(cfgs, CH.run_chain_chunk(cfgs), rtol=1e-13) > 0  # not bits: BLAS sums in its own order


def test_float32_agrees_within_float32_rounding(binary):
    """The float32 pass (float64 update) against the float64 reference: within float32 rounding (2⁻²⁴ per
    operation) accumulated over 20 steps — and no rounding or flip decided otherwise than in float64."""
    net = mlp(3, [4, 5], activation="tanh")
    cfgs = _grid(net, binary, KINDS, T=20, batch=8, lr=0.3, metric_every=5, precision="float32")
    _assert_close(cfgs, CH.run_chain_chunk(cfgs), rtol=1e-6)
    clean = [ChainConfig(net, binary, T=20, batch=8, lr=0.3, metric_every=5, precision=p) for p in ("float32", "float64")]
    w32, w64 = (o["w"] for o in CH.run_chain_chunk(clean[:1]) + CH.run_chain_chunk(clean[1:]))
    assert 0 < np.max(np.abs(w32 - w64)) / np.max(np.abs(w64)) < 1e-5  # clean: float32 rounding only


@pytest.mark.parametrize("optimizer", ["sgd", "heavyball", "adam"])
@pytest.mark.parametrize("batch", [1, 0])
def test_optimizers_full_batch_and_minibatch_bits_on_the_one_wide_chain(optimizer, batch):
    """SGD, heavy-ball and Adam written in the order of fbsgd.optimizers: bits (width 1, so a full batch
    sums its samples — in the reference's order — only in the bias and weight gradients: checked to ulps)."""
    data = Dataset.classification(1 if batch == 1 else 12, 1, seed=5)
    net = Composite([O.Affine(1, 1), O.Sigmoid(1), O.Affine(1, 1), O.LogisticLoss()])
    cfg = ChainConfig(net, data, optimizer=optimizer, lr=0.05 if optimizer == "adam" else 0.8, beta=0.7, batch=batch,
                      T=30, metric_every=3, forward={1: P.UniformNoise(-0.2, 0.3)},
                      backward={2: P.Round("bfloat16", mode="stochastic")})
    got, ref = CH.run_chain_chunk([cfg])[0], _reference(cfg)
    if batch == 1:
        np.testing.assert_array_equal(got["w"], ref.w)
    else:
        np.testing.assert_allclose(got["w"], ref.w, rtol=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "heavyball", "adam"])
def test_the_update_is_the_optimizers_bit_for_bit(optimizer):
    rule = {"sgd": SGD(0.3), "heavyball": HeavyBall(0.3, 0.8), "adam": Adam(0.01, 0.85, 0.99, 1e-7)}[optimizer]
    hyper = np.array([rule.lr, getattr(rule, "beta", getattr(rule, "beta1", 0.0)), getattr(rule, "beta2", 0.0),
                      getattr(rule, "eps", 0.0)])
    code = {"sgd": K.SGD, "heavyball": K.HEAVYBALL, "adam": K.ADAM}[optimizer]
    g = np.random.default_rng(0)
    w = g.standard_normal(7)
    mine, m1, m2 = w.copy(), np.zeros(7), np.zeros(7)
    state = rule.init(w)
    for t in range(12):
        grad = g.standard_normal(7) * 10.0 ** g.integers(-3, 3)
        step, state = rule.update(grad, state, w)
        w = w - step
        assert not K.update(mine, grad, code, hyper, m1, m2, t)
        np.testing.assert_array_equal(mine, w)
    big = np.full(7, 1e9)
    assert K.update(big, np.zeros(7), K.SGD, hyper, m1, m2, 0)  # the divergence rule of fbsgd.optimizers


def test_elements_tanh_rounding_and_flips_agree_with_the_library():
    g = np.random.default_rng(1)
    x = np.concatenate([g.standard_normal(20_000) * s for s in (1e-3, 0.3, 1.0, 4.0, 30.0)] + [[0.0, 700.0, -700.0]])
    t64 = np.array([K.tanh64(v) for v in x[:2000]] + [K.tanh64(v) for v in x[-3:]])
    ref = np.tanh(np.concatenate([x[:2000], x[-3:]]))
    assert np.max(np.abs(t64 - ref) / np.maximum(np.abs(ref), 1e-300)) < 4 * 2.0**-52
    x32 = x.astype(np.float32)
    t32 = np.array([K.tanh32(v) for v in x32[::25]], dtype=np.float64)
    ref32 = np.tanh(x32[::25].astype(np.float64))
    assert np.max(np.abs(t32 - ref32) / np.maximum(np.abs(ref32), 1e-30)) < 3 * 2.0**-23
    # rounding: the vectorized normal range and round_scalar for the rest, as round_array, bit for bit
    f = lowprec.format_of("float8_e4m3fn")
    edge = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-9, -2.0**-9, 447.9, 448.0, 465.0, 500.0, -1e6, 2.0**-6, 1.0625])
    vals = np.concatenate([edge, g.standard_normal(3000) * 10.0 ** g.integers(-4, 3, 3000)])
    for name in ("bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"):
        f = lowprec.format_of(name)
        for mode in ("nearest", "stochastic"):
            for dtype in (np.float64, np.float32):
                m = vals.astype(dtype)
                want = lowprec.round_array(m, name, mode, key=11, step=3)
                K.round_message(m, f.man_bits, f.emin, f.max_finite, f.has_inf, mode == "stochastic", np.uint64(11), 3)
                np.testing.assert_array_equal(m.view(np.uint32 if dtype == np.float32 else np.uint64),
                                              want.view(np.uint32 if dtype == np.float32 else np.uint64))
    # bit flips on a float64 message: only the entries hit change, as BitFlip.apply
    for field in ("any", "exponent"):
        p = P.BitFlip(0.03, field)
        m = g.standard_normal(400)
        with np.errstate(invalid="ignore"):
            want = p.apply(m, 7, 2)
        lo, n = lowprec.FIELDS[field]
        sf = np.array([0.03, lo, n, 0.0, 0.0])
        si = np.array([K.BITFLIP, 1, 0, 1, 2**62])
        K.perturb(m, 4, 2, si, sf, np.uint64(7), np.empty(400, np.float32))
        np.testing.assert_array_equal(m.view(np.uint64), want.view(np.uint64))


def test_a_configuration_gives_the_same_bits_alone_and_in_any_chunk(binary):
    net = mlp(3, [4], activation="tanh")
    for precision in ("float64", "float32"):
        base = dict(T=16, batch=5, metric_every=2, precision=precision)
        target = ChainConfig(net, binary, lr=0.2, seed=3, forward={2: P.Round("bfloat16", mode="stochastic")},
                             backward={2: P.BitFlip(0.05)}, **base)
        others = [ChainConfig(net, binary, lr=0.1 * k, seed=k, optimizer=o, backward={3: P.UniformNoise(-1, 1)}, **base)
                  for k, o in zip((1, 2, 4), ("adam", "heavyball", "sgd"))]
        alone = CH.run_chain_chunk([target])[0]
        mixed = CH.run_chain_chunk(others[:2] + [target] + others[2:])[2]
        np.testing.assert_array_equal(alone["w"], mixed["w"])
        np.testing.assert_array_equal(alone["norms"], mixed["norms"])


def test_divergence_is_marked_and_frozen_as_the_reference_stops(binary):
    net = mlp(3, [4], activation="relu")
    cfg = ChainConfig(net, binary, lr=1e9, T=10, batch=4, metric_every=1)
    got, ref = CH.run_chain_chunk([cfg])[0], _reference(cfg)
    assert got["diverged_at"] == ref.diverged_at >= 0
    assert np.isnan(got["norms"][got["diverged_at"] + 1:]).all() and math.isnan(got["final_loss"])


class _BlockSign(P.Perturbation):
    """A researcher's kind without a compiled form: each message's sign times the mean magnitude of its row."""

    def __init__(self, scale):
        self.scale = scale

    def apply(self, x, key, step):
        return np.sign(x) * np.abs(x).mean(axis=1, keepdims=True) * self.scale

    @property
    def law(self):
        return P.Law("input_dependent", False, False)


def test_a_users_uncompiled_kind_runs_through_run_sweep_on_the_reference_path(binary, tmp_path):
    net = mlp(3, [4], activation="tanh")
    cfgs = [ChainConfig(net, binary, T=12, batch=6, lr=0.2, metric_every=2, seed=s, backward={3: _BlockSign(1.0)})
            for s in (0, 1)]
    compiled = ChainConfig(net, binary, T=12, batch=6, lr=0.2, metric_every=2, forward={1: P.Round("bfloat16")})
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        res = S.run_sweep(cfgs + [compiled], cache_dir=tmp_path, progress=False, n_jobs=1, trace_points=100)
    mine = [w for w in notes if issubclass(w.category, S.NotCompiledWarning)]
    assert len(mine) == 1
    text = str(mine[0].message)
    assert "_BlockSign" in text and "not compiled" in text and "compiled()" in text and "2 configurations" in text
    assert list(res.table.path) == ["reference", "reference", "compiled"]
    for cfg, row in zip(cfgs, res.table.itertuples()):
        ref = train(PassGradient(net, cfg.plan()), cfg.initial_weights(), cfg.optimizer_rule(), cfg.T, binary,
                    batch_size=cfg.batch, seed=cfg.seed)
        grad, loss, acc = CH.clean_metrics(net, binary, ref.w)
        assert (row.final_grad_norm, row.final_loss, row.train_accuracy) == (grad, loss, acc)
    again = S.run_sweep(cfgs, cache_dir=tmp_path, progress=False, n_jobs=1, trace_points=100)
    assert again.table.cached.all()


def test_a_users_chain_on_their_own_arrays_through_run_sweep(tmp_path):
    """A softmax chain on a Dataset of the user's random features and labels (3 classes), two optimizers,
    minibatch and full batch: the table's numbers are the reference's, and the cache serves them again."""
    g = np.random.default_rng(9)
    data = Dataset(g.standard_normal((60, 4)), g.integers(0, 3, 60), name="mine")
    net = Composite([O.Affine(4, 6), O.ReLU(6), O.Affine(6, 3), O.Identity(3), O.SoftmaxCrossEntropy(3)])
    cfgs = [ChainConfig(net, data, optimizer=o, lr=lr, batch=b, T=24, metric_every=4, seed=2,
                        forward={4: P.UniformNoise(-0.05, 0.05)}, figure="mine")
            for o, lr in (("sgd", 0.2), ("adam", 0.02)) for b in (10, 0)]
    res = S.run_sweep(cfgs, cache_dir=tmp_path, progress=False, n_jobs=1, trace_points=100)
    assert len(res.table) == 4 and (res.table.path == "compiled").all() and not res.table.diverged.any()
    assert {"net", "data", "optimizer", "lr", "batch", "stable_grad_norm", "final_loss", "final_grad_norm",
            "train_accuracy", "config_id"} <= set(res.table.columns)
    for cfg, row in zip(cfgs, res.table.itertuples()):
        ref = _reference(cfg)
        grad, loss, acc = CH.clean_metrics(net, data, ref.w)
        assert row.final_loss == pytest.approx(loss, rel=1e-11) and row.final_grad_norm == pytest.approx(grad, rel=1e-9)
        assert row.train_accuracy == acc
        tr = res.traces[res.traces.config_id == cfg.key()].sort_values("t")
        assert tr.t.iloc[0] == 0 and tr.loss.iloc[0] == pytest.approx(CH.clean_metrics(net, data, cfg.initial_weights())[1])
    again = S.run_sweep(cfgs, cache_dir=tmp_path, progress=False, n_jobs=1, trace_points=100)
    assert again.computed == 0 and list(again.table.final_loss) == list(res.table.final_loss)


def test_the_configuration_is_checked_and_keyed_by_content(binary):
    net = mlp(3, [4])
    with pytest.raises(ValueError, match="ChainConfig: optimizer must be one of"):
        ChainConfig(net, binary, optimizer="rmsprop")
    with pytest.raises(ValueError, match="ChainConfig: lr"):
        ChainConfig(net, binary, lr=0.0)
    with pytest.raises(ValueError, match="ChainConfig: batch must be an integer >= 0"):
        ChainConfig(net, binary, batch=-1)
    with pytest.raises(ValueError, match="ChainConfig: data has 3 features but"):
        ChainConfig(mlp(2, [4]), binary)
    with pytest.raises(ValueError, match="ChainConfig: net must end in a loss"):
        ChainConfig(Composite([O.Affine(3, 1), O.Softplus(1)]), binary)
    with pytest.raises(ValueError, match="ChainConfig: .*backward perturbation at operator 1"):
        ChainConfig(net, binary, backward={1: P.Round("bfloat16")})
    with pytest.raises(ValueError, match="ChainConfig: T must be at least 2 \\* metric_every"):
        ChainConfig(net, binary, T=10, metric_every=6)
    with pytest.raises(ValueError, match="ChainConfig: precision"):
        ChainConfig(net, binary, precision="float16")
    a = ChainConfig(net, binary, lr=1, beta=0.5, T=100, forward={2: P.Round("bfloat16")})
    b = ChainConfig(mlp(3, [4]), Dataset(binary.features, binary.labels), lr=1.0, beta=0.7, T=100.0,
                    forward={2: P.Round("bfloat16")}, figure="label only")
    assert a.key() == b.key()  # equal nets and data, lr 1 and 1.0, β unused by SGD, labels aside: one key
    assert a.key() != a.replace(seed=1).key() != a.replace(optimizer="heavyball").key()
