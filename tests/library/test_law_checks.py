"""Perturbations that cannot lie: a Law refuses impossible fields, and ``P.check`` / ``P.check_compiled``
catch a kind whose declarations (law, conditional law, schedule, compiled form) contradict its ``apply``."""
import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import pytest

from fbsgd import correctors as C
from fbsgd import laws, lowprec, rng
from fbsgd import perturbations as P

# -------------------------------------------------------------------------------------------------
# the Law validates itself
# -------------------------------------------------------------------------------------------------


def test_the_issue_probe_is_refused_naming_each_problem():
    with pytest.raises(ValueError) as e:
        P.Law("banana", additive="yes", zero_mean=True, second_moment=-1.0)
    msg = str(e.value)
    assert "family must be one of" in msg and "'banana'" in msg
    assert "additive must be True or False, got 'yes'" in msg
    assert "second_moment must be >= 0" in msg


@pytest.mark.parametrize("kw,words", [
    (dict(mean=0.5), "zero_mean is True but mean is 0.5"),
    (dict(mean=math.nan), "mean must be a finite number"),
    (dict(second_moment=math.inf), "second_moment must be a finite number >= 0"),
    (dict(fourth_moment=-1e-3), "fourth_moment must be >= 0"),
    (dict(bound=-1.0), "bound must be >= 0"),
    (dict(relative_bound=-0.5), "relative_bound must be >= 0"),
    (dict(per_sample=1), "per_sample must be True or False"),
    (dict(support=(1.0, -1.0)), "support must be (low, high) with finite low <= high"),
])
def test_a_law_refuses_each_impossible_field(kw, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        P.Law("uniform", True, True, **kw)


@pytest.mark.parametrize("kw,words", [
    (dict(mean=0.5, second_moment=0.1), "mean² = 0.25 exceeds second_moment = 0.1"),
    (dict(second_moment=2.0, fourth_moment=1.0), "exceeds fourth_moment"),
    (dict(second_moment=2.0, bound=1.0), "second_moment = 2 exceeds bound² = 1"),
    (dict(mean=1.5, bound=1.0), r"\|mean\| = 1.5 exceeds bound = 1"),
    (dict(support=(-2.0, 2.0), bound=1.0), "reaches beyond bound"),
    (dict(mean=3.0, support=(0.0, 2.0)), "lies outside support"),
])
def test_a_law_refuses_numbers_that_contradict_each_other(kw, words):
    with pytest.raises(ValueError, match=words):
        P.Law("uniform", True, False, **kw)


def test_a_relative_bound_does_not_bound_the_moments():
    # |δ| ≤ bound + relative_bound·|x| says nothing about E δ² over inputs of any size
    P.Law("input_dependent", False, False, second_moment=5.0, bound=0.1, relative_bound=0.5)
    law = P.Law("input_dependent", np.bool_(False), np.bool_(True), relative_bound=None)  # numpy bools are bools
    assert law.zero_mean is True and law.relative_bound is None


def test_every_built_in_kind_still_builds_its_law():
    kinds = [P.Identity(), P.UniformNoise(-1, 2), P.UniformNoise(0.5, 0.5), P.GaussianNoise(0.3, 0.1),
             P.GaussianNoise(0.0, 0.2), P.TwoPointNoise(0.4), P.Constant(-0.3), P.Constant([0.1, -0.2]),
             P.zero_mean_uniform(1.0, 10), P.nonzero_mean_uniform(3.0, 10), P.BitFlip(0.0), P.BitFlip(1e-3, "sign"),
             P.TopK(3), P.RandK(2), P.ErrorFeedback(P.TopK(1)), P.every(3, P.UniformNoise(0, 1)),
             P.budget(4, 100, P.GaussianNoise(1.0)), P.chain(P.UniformNoise(0, 1), P.Constant(0.5), P.TwoPointNoise(0.2)),
             P.chain(P.Round("bfloat16"), P.UniformNoise(0, 1)), C.SecondOrderDebias(0.1), C.UniformDebias(0.3)]
    kinds += [P.Round(f, m) for f in lowprec.FORMATS for m in ("nearest", "stochastic")]
    for p in kinds:
        assert isinstance(p.law, P.Law), p


# -------------------------------------------------------------------------------------------------
# the built-in kinds are what they say
# -------------------------------------------------------------------------------------------------


def _x(n=300, seed=0):
    g = np.random.default_rng(seed)
    return (g.standard_normal(n) * 10.0 ** g.uniform(-2, 1, n)).reshape(-1, 1)


@pytest.mark.parametrize("p", [
    P.UniformNoise(-0.5, 0.5), P.nonzero_mean_uniform(2.0, 10), P.UniformNoise(0.0, 1.0, per_sample=False),
    P.GaussianNoise(0.3), P.TwoPointNoise(0.2), P.Constant(0.1), P.Identity(),
    P.Round("bfloat16"), P.Round("float16", "stochastic"), P.Round("float8_e4m3fn"), P.Round("float8_e5m2", "stochastic"),
    P.BitFlip(1e-3, "sign"), P.BitFlip(0.01, "mantissa"), P.TopK(5, scope="batch"), P.RandK(30, scope="batch"),
    P.every(3, P.Round("float8_e4m3fn", "stochastic"), offset=1), P.budget(3, 30, P.UniformNoise(-1, 1)),
    P.ErrorFeedback(P.TopK(3, scope="batch")),
], ids=repr)
def test_built_in_kinds_pass_their_check(p):
    report = P.check(p, _x(), draws=400)
    assert report.ok, str(report)


@pytest.mark.parametrize("p", [P.Round(f, m) for f in ("bfloat16", "float16", "float8_e4m3fn", "float8_e5m2")
                               for m in ("nearest", "stochastic")]
                         + [P.BitFlip(r, f) for r in (1e-3, 0.3) for f in ("sign", "exponent", "mantissa", "any")]
                         + [P.UniformNoise(-0.2, 0.7), P.UniformNoise(0, 1, per_sample=False),
                            P.every(4, P.Round("float8_e5m2", "stochastic"), offset=2),
                            P.budget(5, 50, P.BitFlip(0.1, "exponent"))], ids=repr)
def test_built_in_compiled_forms_agree_with_apply(p):
    assert P.check_compiled(p) is None


# -------------------------------------------------------------------------------------------------
# the issue's probes: kinds that lie
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftedUniform(P.Perturbation):
    """Adds U(0, 2) but declares zero-mean U(−1, 1)."""

    def apply(self, x, key, step):
        return x + rng.uniform(key, step, np.shape(x), 0.0, 2.0)

    @property
    def law(self):
        return P.Law("uniform", True, True, 0.0, 1 / 3, 1 / 5, bound=1.0, support=(-1.0, 1.0))


@dataclass(frozen=True)
class BlockQuantizer(P.Perturbation):
    """Blockwise symmetric quantizer (scale = block max / 15, rounded to nearest): biased given x, but
    declares zero mean and second moment 1e-6."""

    block: int = 32

    def apply(self, x, key, step):
        v = np.asarray(x, dtype=float).reshape(-1)
        out = np.empty_like(v)
        for s in range(0, v.size, self.block):
            b = v[s:s + self.block]
            scale = np.max(np.abs(b)) / 15
            out[s:s + self.block] = b if scale == 0 else np.round(b / scale) * scale
        return out.reshape(np.shape(x))

    @property
    def law(self):
        return P.Law("input_dependent", False, True, 0.0, 1e-6)


E4M3 = lowprec.format_of("float8_e4m3fn")  # no infinities: an entry past 448 becomes NaN


@dataclass(frozen=True)
class SaturatingE4M3(P.Perturbation):
    """Rounds to e4m3 and saturates at ±448, but its compiled form says: round to e4m3, overflow to NaN
    (what :func:`fbsgd.lowprec.round_entries` does for a format without infinities)."""

    def apply(self, x, key, step):
        x = np.asarray(x)
        r = lowprec.round_array(np.clip(x, -448.0, 448.0), E4M3, "nearest")
        return r.astype(x.dtype)

    @property
    def law(self):
        return P.Law("input_dependent", False, False)

    def compiled(self):
        return P.RoundOp.to("float8_e4m3fn")


@dataclass(frozen=True)
class DeclaresE2M1(P.Perturbation):
    """Declares a rounding to e2m1 as its compiled form: a format the engine does not know."""

    def apply(self, x, key, step):
        return np.asarray(x)

    def compiled(self):
        return P.CompiledOp("round", (1, 0, 6.0, False, False))


def _messages():
    """The forward messages z = −a·w of the Section 7 chain at its minimizer (2,000 samples)."""
    from fbsgd.problems import LogisticRegression

    prob = LogisticRegression.generate(d=10, M=2000)
    return (-prob.signed_features @ prob.minimize())[:, None]


def test_a_kind_that_adds_u02_but_declares_zero_mean_is_reported():
    z = _messages()
    report = P.check(ShiftedUniform(), z, draws=500)
    fields = report.fields()
    assert {"law.zero_mean", "law.mean", "law.second_moment", "law.fourth_moment", "law.bound", "law.support"} <= set(fields)
    by = {d.field: d for d in report.disagreements}
    assert by["law.mean"].declared == 0.0 and by["law.mean"].measured == pytest.approx(1.0, abs=0.05)
    assert by["law.second_moment"].measured == pytest.approx(4 / 3, abs=0.05)
    assert "law.zero_mean" in str(report) and "measured" in str(report)
    with pytest.raises(ValueError, match="law.zero_mean"):
        P.check(ShiftedUniform(), z, draws=100, raise_on_disagreement=True)


def test_a_biased_block_quantizer_declaring_zero_mean_is_reported_with_its_measured_moment():
    z = _messages()
    report = P.check(BlockQuantizer(), z)
    by = {d.field: d for d in report.disagreements}
    assert {"law.zero_mean", "law.second_moment"} <= set(by)
    measured = P.measure(BlockQuantizer(), z)["second_moment"]  # the package's plain empirical moments
    assert by["law.second_moment"].declared == 1e-6
    assert by["law.second_moment"].measured == pytest.approx(measured, rel=1e-12)
    assert measured > 1e-3


def test_a_compiled_form_that_overflows_to_nan_while_apply_saturates_is_refused():
    x = np.array([448.0, 500.0, -1e4])
    np.testing.assert_array_equal(SaturatingE4M3().apply(x, 0, 0), [448.0, 448.0, -448.0])
    with pytest.raises(ValueError, match=r"max_finite / has_inf \(overflow\).*at x = .*compiled gives nan, apply gives"):
        P.check_compiled(SaturatingE4M3())
    report = P.check(SaturatingE4M3(), _messages() * 1000, draws=50)
    d = [d for d in report.disagreements if d.field.startswith("compiled()")]
    assert len(d) == 1 and "nan" in d[0].declared and "448.0" in d[0].measured


def test_a_compiled_rounding_to_a_format_the_engine_does_not_know_is_refused_naming_the_field():
    # e2m1 (float4) is not one of fbsgd.lowprec.FORMATS: the compiled engine cannot round to it
    with pytest.raises(ValueError, match=r"RoundOp: field man_bits = 1 is not that of a known format.*float8_e4m3fn"):
        P.check_compiled(DeclaresE2M1())
    with pytest.raises(ValueError, match=r"man_bits"):
        P.check(DeclaresE2M1(), _messages(), draws=10)


def test_compiled_forms_that_differ_from_apply_name_the_field():
    @dataclass(frozen=True)
    class SharedButSaysPerSample(P.Perturbation):
        def apply(self, x, key, step):
            return x + rng.uniform(key, step, (1,) + np.shape(x)[1:], -1.0, 1.0)

        def compiled(self):
            return P.CompiledOp("uniform", (-1.0, 1.0), True)

    @dataclass(frozen=True)
    class WrongRange(P.Perturbation):
        def apply(self, x, key, step):
            return x + rng.uniform(key, step, np.shape(x), 0.0, 2.0)

        def compiled(self):
            return P.CompiledOp("uniform", (-1.0, 1.0), True)

    @dataclass(frozen=True)
    class WrongFormat(P.Perturbation):
        def apply(self, x, key, step):
            return lowprec.round_array(np.asarray(x), "float8_e5m2")

        def compiled(self):
            return P.CompiledOp("round", (*lowprec.format_of("float8_e4m3fn").args, False))

    with pytest.raises(ValueError, match=r"compiled\(\).per_sample: at x = "):
        P.check_compiled(SharedButSaysPerSample())
    with pytest.raises(ValueError, match=r"\(low, high\).*at x = "):
        P.check_compiled(WrongRange())
    with pytest.raises(ValueError, match=r"man_bits / emin.*at x = "):
        P.check_compiled(WrongFormat())


def test_a_schedule_and_a_conditional_law_that_lie_are_reported():
    @dataclass(frozen=True)
    class SaysEveryOther(P.Perturbation):
        def apply(self, x, key, step):
            return x + 1.0

        @property
        def schedule(self):
            return P.Schedule(first=0, interval=2)

        @property
        def law(self):
            return P.Law("constant", True, False, 1.0, 1.0, 1.0, bound=1.0)

    @dataclass(frozen=True)
    class WrongPoint(P.Perturbation):
        def apply(self, x, key, step):
            return 2.0 * np.asarray(x)

        def conditional_law(self, x, *, draws=10, seed=0):
            return laws.point_law(x, 3.0 * np.asarray(x, dtype=float))

        @property
        def law(self):
            return P.Law("input_dependent", False, False)

    x = np.array([[0.5], [-1.0]])
    assert P.check(SaysEveryOther(), x, draws=20).fields() == ["schedule"]
    report = P.check(WrongPoint(), x, draws=20)
    assert report.fields() == ["conditional_law"]
    assert report.disagreements[0].measured == 1.0  # apply gives 2·0.5, the law says 3·0.5


def test_evaluate_compiled_uses_the_engine_semantics():
    x = np.array([0.1, -3.3, 448.0, 500.0, 1e-5])
    op = P.Round("float8_e4m3fn").compiled()
    np.testing.assert_array_equal(laws.evaluate_compiled(op, x, 1, 0),
                                  x.astype(ml_dtypes.float8_e4m3fn).astype(float))  # NaN compared as NaN
    # every bit of the exponent flipped (rate 1): an XOR of the float32 pattern
    flip = laws.evaluate_compiled(P.BitFlip(1.0, "exponent").compiled(), x.astype(np.float32), 1, 0)
    want = (x.astype(np.float32).view(np.uint32) ^ np.uint32(0xFF << 23)).view(np.float32)
    np.testing.assert_array_equal(flip.view(np.uint32), want.view(np.uint32))
    # uniform noise in float64: x + a + (b − a)·u with the stream's draw of each entry, as the readable apply
    u = P.UniformNoise(-0.25, 0.5)
    np.testing.assert_array_equal(laws.evaluate_compiled(u.compiled(), x, 99, 3), u.apply(x, 99, 3))
