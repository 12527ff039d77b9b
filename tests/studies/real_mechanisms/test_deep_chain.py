"""fbsgd.studies.real_mechanisms.deep_chain: the batched passes against the reference passes, and the analysis on synthetic tables."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.real_mechanisms import deep_chain as DC
from fbsgd.passes import passes
from fbsgd.studies.error_propagation.injection import tanh_chain
from fbsgd.book.verdicts import Claim


def claim(name):
    return Claim(id=f"t.{name}", chapter="t", ref="-", source="book", text=name)


def test_clean_batched_gradient_matches_finite_differences_and_reference_forward():
    N, D = 3, 5
    net, w = tanh_chain(N, D, 1.0, seed=1)
    x, y = DC.classification_data(7, D, seed=2)
    W = np.stack([w, w * 0.9])
    loss, g = DC.batched_passes(W, np.stack([x, x]), np.stack([y, y]), N, D)
    out = passes(net, x, w).ys[-1][:, 0]  # the reference chain's readout
    assert loss[0] == pytest.approx(np.mean(np.logaddexp(0, -y * out)))
    e = np.zeros_like(w)
    for j in (0, 10, len(w) - 1):
        e[:] = 0
        e[j] = 1e-6
        lp, _ = DC.batched_passes((w + e)[None], x[None], y[None], N, D)
        lm, _ = DC.batched_passes((w - e)[None], x[None], y[None], N, D)
        assert g[0, j] == pytest.approx((lp[0] - lm[0]) / 2e-6, rel=1e-5, abs=1e-9)


def _stable(errors):
    rows = []
    for (mech, place), errs in errors.items():
        for N, e in zip((2, 4, 8), errs):
            rows.append(dict(optimizer="sgd", N=N, place=place, mechanism=mech, label=f"{mech} {place}",
                             relative_gradient_error=e, over_clean=1.0))
    return pd.DataFrame(rows)


def test_depth_growth_and_compounding_verdict():
    geo = _stable({("m", "forward"): [1.0, 4.0, 64.0]})  # ×64 from N = 2 to 8, beyond ×4
    lin = _stable({("m", "forward"): [1.0, 2.0, 4.0]})  # exactly additive
    mixed = _stable({("m", "forward"): [1.0, 4.0, 64.0], ("m", "backward"): [1.0, 1.0, 1.0]})
    assert DC.depth_growth(geo).per_layer_factor.iloc[0] == pytest.approx(64 ** (1 / 6))
    out = [DC.compounding_verdict(claim, DC.depth_growth(t), "c").outcome for t in (geo, lin, mixed)]
    assert out == ["holds", "fails", "partial"]


def test_forward_sensitive_verdict():
    t = _stable({("m", "forward"): [2.0, 2.0, 0.5], ("m", "backward"): [1.0, 1.0, 1.0]})
    assert DC.forward_sensitive_verdict(claim, t, "f", column="relative_gradient_error").outcome == "partial"
    t = _stable({("m", "forward"): [0.5, 0.5, 0.5], ("m", "backward"): [1.0, 1.0, 1.0]})
    assert DC.forward_sensitive_verdict(claim, t, "f", column="relative_gradient_error").outcome == "fails"


def test_lemma_factors():
    lf = DC.lemma_factors([2, 4], 8, 1.0)
    assert np.allclose(lf.C_v, np.maximum(1.0, lf.C_grad ** lf.N))
    assert lf.eq21_factor.iloc[0] == pytest.approx(3 * lf.C_grad.iloc[0] ** 2)


def _floors(sgd, other, optimizer="adam"):
    """Stable tables for plain SGD and ``optimizer`` with the given floors (over_clean) at N = 2, 4."""
    rows = []
    for opt, vals in (("sgd", sgd), (optimizer, other)):
        rows.append(dict(optimizer=opt, N=2, place="none", mechanism="none", label="clean", over_clean=1.0))
        for N, v in zip((2, 4), vals):
            rows.append(dict(optimizer=opt, N=N, place="forward", mechanism="m", label="m forward", over_clean=v))
    return pd.DataFrame(rows)


def test_optimizer_floor_table_ratio_and_band():
    f = DC.optimizer_floor_table(_floors([2.0, 4.0], [2.2, 8.0]), optimizers=("adam",))
    assert list(f.N) == [2, 4]
    assert f.ratio_to_base.tolist() == pytest.approx([1.1, 2.0])
    assert f.same_floor.tolist() == [True, False]  # 1.1 in 0.8–1.25, 2.0 outside


def test_optimizer_floor_verdict_holds_partial_fails():
    def outcome(other):
        floors = DC.optimizer_floor_table(_floors([2.0, 4.0], other), optimizers=("adam",))
        return DC.optimizer_floor_verdict(claim, floors, "o", "adam")
    assert outcome([2.1, 3.6]).outcome == "holds"
    v = outcome([2.1, 1.0])  # ×1.05 and ×0.25
    assert v.outcome == "partial" and v.key_number == pytest.approx(0.25)
    assert outcome([4.0, 1.0]).outcome == "fails"


def test_bmm_matches_matmul():
    g = np.random.default_rng(3)
    a, b = g.standard_normal((3, 5, 7)), g.standard_normal((3, 7, 4))
    assert np.allclose(DC._bmm(a, b), a @ b, rtol=1e-13, atol=1e-13)


def test_compounding_evidence_names_endpoints_and_fit_and_rule_uses_words():
    geo = _stable({("m", "forward"): [1.0, 4.0, 64.0]})
    v = DC.compounding_verdict(claim, DC.depth_growth(geo), "c")
    assert "endpoints ×64" in v.evidence and "log-linear fit" in v.evidence and v.key_number == pytest.approx(64)
    t = _stable({("m", "forward"): [2.0, 2.0, 0.5], ("m", "backward"): [1.0, 1.0, 1.0]})
    v = DC.forward_sensitive_verdict(claim, t, "f", column="relative_gradient_error")
    assert "relative_gradient_error" not in v.rule and "relative gradient error" in v.rule
