"""The chain engine's memory kinds, Top-K / Rand-K, a researcher's element and block kinds, and the
Section 7 chain as an instance (regularizer, ρ, sampling noise), against the readable reference:
``p.apply`` / ``p.transform`` on a message, and fbsgd.optimizers.train with PassGradient (through
fbsgd.engine.chains.reference_chain_run) on whole runs; the Section 7 instance also against the closed
form of fbsgd.problems.LogisticRegression."""
import numba
import numpy as np
import pytest

from fbsgd import correctors as Co
from fbsgd import operators as O
from fbsgd import perturbations as P
from fbsgd import rng
from fbsgd.engine import chain_kernel as K
from fbsgd.engine import chains as CH
from fbsgd.engine.chains import ChainConfig
from fbsgd.passes import Composite
from fbsgd.problems import Dataset, LogisticRegression


@numba.njit
def clip_jitter(x, u, numbers):
    """A researcher's element function: clip to ±numbers[0], then add (u − ½)·numbers[1]."""
    return min(max(x, -numbers[0]), numbers[0]) + (u - 0.5) * numbers[1]


@numba.njit
def block_sign(x, u, numbers, out):
    """A researcher's block function: the block's largest magnitude with each entry's sign, scaled by a draw."""
    s = 0.0
    for i in range(x.size):
        s = max(s, abs(x[i]))
    for i in range(x.size):
        out[i] = s * (1.0 if x[i] >= 0.0 else -u[i])


class ClipJitter(P.Perturbation):
    def compiled(self):
        return P.ElementOp(clip_jitter, (0.5, 0.1))

    def apply(self, x, key, step):
        return self.compiled().apply(x, key, step)


class BlockSign(P.Perturbation):
    def __init__(self, block, per_sample=True):
        self.block, self.per_sample = block, per_sample

    def compiled(self):
        return P.BlockOp(block_sign, self.block, per_sample=self.per_sample)

    def apply(self, x, key, step):
        return self.compiled().apply(x, key, step)


MEMORYLESS = {
    "topk": P.TopK(2), "topk batch": P.TopK(2, "batch"), "randk": P.RandK(2), "randk batch": P.RandK(1, "batch"),
    "element": ClipJitter(), "block": BlockSign(2), "block shared": BlockSign(3, per_sample=False),
}
MEMORY = {
    "ef topk": P.ErrorFeedback(P.TopK(1)), "ef randk batch": P.ErrorFeedback(P.RandK(1, "batch")),
    "ef round": P.ErrorFeedback(P.Round("float8_e4m3fn", mode="stochastic")),
    "ef bitflip": P.ErrorFeedback(P.BitFlip(0.05, "mantissa")), "ef uniform": P.ErrorFeedback(P.UniformNoise(-0.2, 0.1)),
    "ef element": P.ErrorFeedback(ClipJitter()), "ef block": P.ErrorFeedback(BlockSign(2)),
    "delta topk batch": Co.DeltaCompression(P.TopK(1, "batch")), "delta randk": Co.DeltaCompression(P.RandK(1)),
    "delta round": Co.DeltaCompression(P.Round("bfloat16")),
    "delta element": Co.DeltaCompression(ClipJitter()), "delta block": Co.DeltaCompression(BlockSign(3)),
    "every 3 ef topk": P.every(3, P.ErrorFeedback(P.TopK(1))),
    "every 2 delta randk": P.every(2, Co.DeltaCompression(P.RandK(1)), offset=1),
}
KINDS = {**MEMORYLESS, **MEMORY}


# forward and backward sites of ONE_WIDE with messages of 4, 3 and 1 entries per sample
PLACES = [("forward", 1), ("forward", 6), ("forward", 3), ("backward", 3), ("backward", 7), ("backward", 5)]


def _grid(net, data, kinds, places=PLACES, **kw):
    return [ChainConfig(net, data, **{where: {i: p}}, panel=f"{name} {where}[{i}]", **kw)
            for (where, i) in places for name, p in kinds.items()]


def _same(a, b):
    return np.array_equal(np.asarray(a).view(np.uint64), np.asarray(b).view(np.uint64))


# -- on one message ---------------------------------------------------------------------------------


def _site(p, shape, seed=3):
    """The kernel's site (integers, numbers, key) of ``p`` placed at forward[1] of a chain whose first
    message has ``shape`` (rows, width), and the reference state of that place."""
    rows, width = shape
    data = Dataset.classification(rows, 1, seed=0)
    net = Composite([O.Affine(1, width), O.Identity(width), O.Affine(width, 1), O.LogisticLoss()])
    cfg = ChainConfig(net, data, batch=rows, forward={1: p}, seed=seed)
    si, sf, skey = CH.compile_sites(cfg)
    return si[0, 1], sf[0, 1], skey[0, 1], cfg.plan().init(seed)[("forward", 1)]


def _values(g, shape):
    x = g.standard_normal(shape) * 10.0 ** g.integers(-2, 2, shape)
    x[0, :2] = 0.75  # ties (to the lower index)
    x[1, 0], x[-1, -1] = -0.75, 0.0
    return x


@pytest.mark.parametrize("name", ["topk", "topk batch", "randk", "randk batch"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_topk_and_randk_on_a_message_are_their_apply_bit_for_bit(name, dtype):
    """Every row (per sample) or column (batch) keeps the entries TopK/RandK.apply keeps, with the same
    bits: ties to the lower index, NaN last, Rand-K's draws and its n/k scale in the message's precision."""
    p = {"topk": P.TopK(3), "topk batch": P.TopK(2, "batch"), "randk": P.RandK(3), "randk batch": P.RandK(2, "batch")}[name]
    g = np.random.default_rng(5)
    shape = (6, 7)
    si, sf, key, state = _site(p, shape)
    for t in range(4):
        x = _values(g, shape).astype(dtype)
        if t == 3:
            x[2, 3] = np.nan
        want = p.apply(x.copy(), state.key, t)
        m = x.reshape(-1).copy()
        K.perturb_plain(m, shape[1], t, si, sf, key, np.empty(m.size, np.float32), np.zeros(1), np.empty((2, m.size)),
                        np.empty((3, 8)))
        assert want.dtype == m.dtype
        np.testing.assert_array_equal(m.reshape(shape).view(np.uint8), np.ascontiguousarray(want).view(np.uint8))
        kept = np.count_nonzero(m.reshape(shape) != 0, axis=1 if p.scope == "per_sample" else 0)
        assert kept.max() <= p.k


@pytest.mark.parametrize("name", ["ef topk", "ef randk batch", "ef round", "ef bitflip", "ef uniform", "delta topk batch",
                                  "delta randk", "delta round"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_memory_kind_over_steps_on_a_message_is_its_transform(name, dtype):
    """Error feedback and delta compression keep their memory between calls: T steps of the kernel's site
    on fresh messages give p.transform's messages (stored in the message's precision), step by step."""
    p = MEMORY[name]
    shape = (5, 4)
    si, sf, key, state = _site(p, shape)
    assert si[5] == (K.FEEDBACK if name.startswith("ef") else K.DELTA)
    g = np.random.default_rng(7)
    mem = np.zeros(shape[0] * shape[1])
    memory = state.memory
    for t in range(6):
        x = _values(g, shape).astype(dtype)
        want, memory = p.transform(x.copy(), state.key, t, memory)
        m = x.reshape(-1).copy()
        K.perturb_plain(m, shape[1], t, si, sf, key, np.empty(m.size, np.float32), mem, np.empty((2, m.size)),
                        np.empty((3, 8)))
        np.testing.assert_array_equal(m.reshape(shape), want.astype(dtype))
        assert _same(mem, memory.reshape(-1))  # the memory itself, bit for bit (float64)
    assert np.any(mem != 0)


# -- whole runs -------------------------------------------------------------------------------------

# every matrix product of one sample has one term, or sums to one output (BLAS's order is then numpy's)
ONE_WIDE = Composite([O.Affine(1, 4), O.ReLU(4), O.Affine(4, 1), O.Sigmoid(1), O.Affine(1, 3), O.Identity(3),
                      O.Affine(3, 1), O.LogisticLoss()])


@pytest.fixture(scope="module")
def one_wide_data():
    return Dataset.classification(30, 1, seed=2)


def _check(cfgs, out, bits, rtol=0.0):
    for cfg, got in zip(cfgs, out):
        ref = CH.reference_chain_run(cfg)
        assert got["diverged_at"] == ref["diverged_at"], cfg.panel
        if bits:
            assert _same(got["w"], ref["w"]), cfg.panel
        else:
            err = np.max(np.abs(got["w"] - ref["w"])) / np.max(np.abs(ref["w"]))
            assert err <= rtol, (cfg.panel, err)
        # the clean full-data metrics: the same numbers, summed over the data in the kernel's own order
        np.testing.assert_allclose(got["norms"], ref["norms"], rtol=max(rtol, 1e-12), err_msg=cfg.panel)
        np.testing.assert_allclose(got["losses"], ref["losses"], rtol=max(rtol, 1e-12), err_msg=cfg.panel)


def test_float64_bits_for_every_new_kind_at_every_site(one_wide_data):
    """One sample per step through a chain whose input has one feature: every product has one term, so
    the engine's w_T is the reference's bit for bit, for every kind at every forward and backward site
    (Top-K/Rand-K of the rows, element and block kinds, error feedback and delta compression around each
    memoryless kind, schedules with memory kept across inactive steps)."""
    cfgs = _grid(ONE_WIDE, one_wide_data, KINDS, T=12, batch=1, lr=0.5, metric_every=4, init_seed=3)
    assert CH.not_compiled(cfgs[0]) is None and all(CH.not_compiled(c) is None for c in cfgs)
    out = CH.run_chain_chunk(cfgs)
    _check(cfgs, out, bits=True)
    clean = CH.run_chain_chunk([cfgs[0].replace(forward={}, backward={})])[0]["w"]
    wide = [o for c, o in zip(cfgs, out)  # not the batch scopes (a batch of one), not a message of one entry
            if "batch" not in c.panel and not c.panel.endswith(("forward[3]", "backward[5]"))]
    assert len(wide) == 4 * 17 and sum(np.array_equal(o["w"], clean) for o in wide) == 0  # the kinds act


def test_the_memory_is_kept_across_inactive_steps(one_wide_data):
    """every(3, ErrorFeedback(TopK)) keeps its residual from one active step to the next: the run is the
    reference's (whose _Gated keeps the memory), and differs from a memory reset at every active step."""
    kw = dict(T=24, batch=1, lr=0.5, metric_every=4, init_seed=1)
    kept = ChainConfig(ONE_WIDE, one_wide_data, backward={3: P.every(3, P.ErrorFeedback(P.TopK(1)))}, **kw)
    got = CH.run_chain_chunk([kept])[0]
    assert _same(got["w"], CH.reference_chain_run(kept)["w"])
    reset = ChainConfig(ONE_WIDE, one_wide_data, backward={3: P.every(3, P.TopK(1))}, **kw)
    assert not np.array_equal(got["w"], CH.run_chain_chunk([reset])[0]["w"])


def test_minibatch_scopes_and_float32(one_wide_data):
    """Three samples per step (the batch scopes act; the batch sums are BLAS's: agreement to ulps), in
    float64 and in the float32 pass (within float32 rounding)."""
    for precision, rtol in (("float64", 1e-13), ("float32", 1e-4)):  # float32: a rounding decided on the other side
        cfgs = _grid(ONE_WIDE, one_wide_data, KINDS, places=[("forward", 1), ("backward", 7)], T=12, batch=3, lr=0.3,
                     metric_every=4, precision=precision)
        _check(cfgs, CH.run_chain_chunk(cfgs), bits=False, rtol=rtol)


@pytest.mark.parametrize("optimizer", ["sgd", "heavyball", "adam"])
def test_optimizers_with_memory_element_and_block_kinds_bits(optimizer, one_wide_data):
    cfg = ChainConfig(ONE_WIDE, one_wide_data, optimizer=optimizer, lr=0.05 if optimizer == "adam" else 0.5, beta=0.7,
                      batch=1, T=30, metric_every=3, forward={1: Co.DeltaCompression(P.RandK(1)), 3: ClipJitter()},
                      backward={3: P.ErrorFeedback(P.TopK(2)), 7: BlockSign(2)})
    _check([cfg], CH.run_chain_chunk([cfg]), bits=True)


def test_a_configuration_gives_the_same_bits_alone_and_in_a_batch_of_five(one_wide_data):
    """Alone, the target (memory kinds whose compressors draw) runs in the kernel without a researcher's
    function; among others that bring an element and a block function (and other optimizers, sites, memory
    sizes and blocks) in the kernel with them: other machine code, other buffers, the same bits.  (The kernel
    with these two functions is the one the tests above compiled: no compilation of its own.)"""
    for precision in ("float64", "float32"):
        base = dict(T=16, batch=3, metric_every=2, precision=precision)
        target = ChainConfig(ONE_WIDE, one_wide_data, lr=0.2, seed=3, forward={2: P.ErrorFeedback(P.RandK(1, "batch"))},
                             backward={7: Co.DeltaCompression(P.RandK(1))}, **base)
        others = [ChainConfig(ONE_WIDE, one_wide_data, lr=0.1 * k, seed=k, optimizer=o, backward={b: p}, **base)
                  for k, o, b, p in ((1, "adam", 2, P.TopK(1)), (2, "heavyball", 6, ClipJitter()),
                                     (4, "sgd", 5, P.every(2, P.ErrorFeedback(P.Round("bfloat16")))),
                                     (5, "sgd", 3, BlockSign(3, per_sample=False)))]
        assert CH.site_functions(target) == ((), ()) and CH.site_functions(others[1])[0] and CH.site_functions(others[3])[1]
        alone = CH.run_chain_chunk([target])[0]
        mixed = CH.run_chain_chunk(others[:2] + [target] + others[2:])[2]
        assert _same(alone["w"], mixed["w"]) and _same(alone["norms"], mixed["norms"])


# -- the Section 7 chain as an instance -------------------------------------------------------------


@pytest.fixture(scope="module")
def section7():
    prob = LogisticRegression.generate(d=5, M=60, rho=1e-3, regularizer="nonconvex", data_seed=1)
    return prob, Dataset(prob.features, prob.labels), Composite([O.Linear(5, 1), O.LogisticLoss()])


def test_section7_metrics_and_updates_are_the_closed_form(section7):
    """Full batch, regularizer "nonconvex", ρ = 1e-3, noise_std = 1e-3: the engine's first metric is
    ‖∇f(w₀)‖ and f(w₀) of LogisticRegression's closed form, and two steps are
    w ← w − γ(∇f(w) + ξ_t), ξ_t = noise_std · rng.normal(derive_key("fbsgd.chain.xi", seed), t, d)."""
    prob, data, net = section7
    cfg = ChainConfig(net, data, lr=0.5, batch=0, T=2, metric_every=1, seed=4, regularizer="nonconvex", rho=1e-3,
                      noise_std=1e-3)
    got = CH.run_chain_chunk([cfg])[0]
    w = cfg.initial_weights()
    assert got["norms"][0] == pytest.approx(np.linalg.norm(prob.gradient(w)), rel=1e-13)
    assert got["losses"][0] == pytest.approx(prob.loss(w), rel=1e-13)
    key = rng.derive_key("fbsgd.chain.xi", 4)
    for t in range(2):
        w = w - 0.5 * (prob.gradient(w) + 1e-3 * rng.normal(key, t, w.shape))
    np.testing.assert_allclose(got["w"], w, rtol=1e-13)
    assert got["final_loss"] == pytest.approx(prob.loss(w), rel=1e-13)
    assert got["final_grad_norm"] == pytest.approx(np.linalg.norm(prob.gradient(w)), rel=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "heavyball", "adam"])
def test_section7_instance_with_memory_kinds_is_the_reference(optimizer, section7):
    prob, data, net = section7
    kinds = {"ef topk batch": P.ErrorFeedback(P.TopK(20, "batch")), "delta round": Co.DeltaCompression(P.Round("bfloat16")),
             "randk batch": P.RandK(30, "batch"), "block": BlockSign(4), "uniform": P.UniformNoise(-0.1, 0.1)}
    for precision, rtol in (("float64", 1e-13), ("float32", 1e-5)):
        cfgs = [ChainConfig(net, data, optimizer=optimizer, lr=0.05 if optimizer == "adam" else 0.5, batch=0, T=20,
                            metric_every=4, regularizer="nonconvex", rho=1e-3, noise_std=1e-3, forward={1: p},
                            precision=precision, panel=name) for name, p in kinds.items()]
        _check(cfgs, CH.run_chain_chunk(cfgs), bits=False, rtol=rtol)


def test_section7_bits_with_one_feature_and_one_sample(section7):
    """With one feature and one sample per step every sum has one term: regularizer, ρ and ξ_t bit for bit."""
    data = Dataset.classification(20, 1, seed=3)
    net = Composite([O.Linear(1, 1), O.LogisticLoss()])
    for reg, opt in (("nonconvex", "sgd"), ("l2", "heavyball"), ("nonconvex", "adam")):
        cfg = ChainConfig(net, data, optimizer=opt, lr=0.1, batch=1, T=20, metric_every=4, regularizer=reg, rho=1e-2,
                          noise_std=1e-2, forward={1: P.ErrorFeedback(P.Round("bfloat16"))})
        _check([cfg], CH.run_chain_chunk([cfg]), bits=True)


# -- identity, refusals, and what stays on the reference path ---------------------------------------


def test_new_fields_are_checked_keyed_only_when_set(one_wide_data):
    base = ChainConfig(ONE_WIDE, one_wide_data)
    assert not {"regularizer", "rho", "noise_std"} & set(base.computation())  # earlier keys unchanged
    assert base.key() == ChainConfig(ONE_WIDE, one_wide_data, regularizer="none", rho=0, noise_std=0.0).key()
    assert len({base.key(), base.replace(regularizer="l2").key(), base.replace(regularizer="l2", rho=1e-3).key(),
                base.replace(noise_std=1e-3).key()}) == 4
    for kw, field in ((dict(regularizer="l1"), "regularizer"), (dict(regularizer="l2", rho=-1.0), "rho"),
                      (dict(rho=1e-3), "rho"), (dict(noise_std=float("nan")), "noise_std"),
                      (dict(noise_std=-0.1), "noise_std"), (dict(regularizer=2), "regularizer")):
        with pytest.raises(ValueError, match=f"ChainConfig: {field} "):
            ChainConfig(ONE_WIDE, one_wide_data, **kw)


def test_compiled_forms_refuse_invalid_fields_naming_them():
    cases = [(lambda: P.TopKOp(0), "TopKOp: field k"), (lambda: P.TopKOp(2.5), "TopKOp: field k"),
             (lambda: P.TopKOp(2, "rows"), "TopKOp: field scope"), (lambda: P.RandKOp(-1), "RandKOp: field k"),
             (lambda: P.RandKOp(1, None), "RandKOp: field scope"),
             (lambda: P.ErrorFeedbackOp(3), "ErrorFeedbackOp: field inner"),
             (lambda: P.DeltaOp(P.ErrorFeedbackOp(P.TopKOp(1))), "DeltaOp: field inner")]
    for make, words in cases:
        with pytest.raises(ValueError, match=words):
            make()
    assert P.TopK(2, "batch").compiled() == P.TopKOp(2, "batch")
    assert Co.DeltaCompression(P.RandK(1)).compiled() == P.DeltaOp(P.RandKOp(1))


def test_what_the_kernel_cannot_run_stays_on_the_reference_path(one_wide_data):
    """A compressor with its own schedule inside error feedback, memory inside memory, a kind without a
    compiled form inside a corrector: not_compiled names them (run_sweep runs them on the reference path)."""
    for p in (P.ErrorFeedback(P.every(2, P.TopK(1))), Co.DeltaCompression(P.ErrorFeedback(P.TopK(1))),
              P.ErrorFeedback(P.GaussianNoise(0.1))):
        why = CH.not_compiled(ChainConfig(ONE_WIDE, one_wide_data, backward={3: p}))
        assert why is not None and why[0] == type(p).__name__, why


@numba.njit
def _halve(x, u, numbers):
    return 0.5 * x


@numba.njit
def _double(x, u, numbers):
    return 2.0 * x


class Halve(P.Perturbation):
    def compiled(self):
        return P.ElementOp(_halve)

    def apply(self, x, key, step):
        return self.compiled().apply(x, key, step)


class Double(P.Perturbation):
    def compiled(self):
        return P.ElementOp(_double)

    def apply(self, x, key, step):
        return self.compiled().apply(x, key, step)


def test_not_compiled_names_the_kind_that_brings_a_function_beyond_the_slots(one_wide_data):
    """Three distinct element functions at three sites: the third one's kind is named, whatever the order
    of the sites before it (the kinds of the first two sites are fine)."""
    cfg = ChainConfig(ONE_WIDE, one_wide_data, forward={1: ClipJitter(), 3: Halve()}, backward={5: Double()})
    kind, why = CH.not_compiled(cfg)
    assert kind == "Double" and "backward[5] brings a third element function" in why, (kind, why)
    assert CH.not_compiled(ChainConfig(ONE_WIDE, one_wide_data, forward={1: ClipJitter(), 3: Halve()},
                                       backward={5: Halve()})) is None  # a function used twice takes one slot
