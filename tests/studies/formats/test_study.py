"""The formats chapter's study code, against independent facts (closed forms, the library's passes)."""
import numpy as np
import pandas as pd
import pytest

from fbsgd import formats as F
from fbsgd import operators as O
from fbsgd.studies.formats import study as S
from fbsgd.studies.formats import verdicts as FV
from fbsgd.book.verdicts import Claim


def test_ocp_scale_clips_a_block_maximum_above_the_element_range_and_the_table_says_so():
    # amax = 1.9: OCP k = floor(log2 1.9) - 8 = -8, y = 1.9 * 256 = 486.4 > 448 is clipped to 448 -> 1.75, δ = -0.15
    x = np.zeros((1, 32))
    x[0, 0] = 1.9
    kinds = {"ocp": F.MX("float8_e4m3fn", 32, "ocp", "stochastic", -1),
             "ceil": F.MX("float8_e4m3fn", 32, "ceil", "stochastic", -1)}
    t = S.class_table(kinds, {"m": [x]}).set_index("kind")
    assert t.loc["ocp", "bias_rel"] == pytest.approx(0.15 / 1.9, rel=1e-12)
    assert not t.loc["ocp", "zero_mean"] and t.loc["ocp", "biased_share"] == pytest.approx(1 / 32)
    # ceil: k = ceil(log2(1.9 / 448)) = -7, y = 243.2 between E4M3 neighbours 240 and 256: zero mean
    assert t.loc["ceil", "zero_mean"] and t.loc["ceil", "bias_rel"] <= S.ZERO_MEAN_RTOL
    # the two-point law's second moment: p = 3.2/16 up to 256, else 240, times 2^-7
    p = 3.2 / 16
    second = (p * (256 - 243.2) ** 2 + (1 - p) * (240 - 243.2) ** 2) * 2.0**-14
    assert t.loc["ceil", "rms_rel"] == pytest.approx(np.sqrt(second) / 1.9, rel=1e-9)


def test_nearest_is_biased_and_its_relative_bound_is_one_for_values_flushed_to_zero():
    x = np.array([[1.0] + [1e-6] * 31])  # 1e-6 / 2^(0-8) is far below E4M3's smallest subnormal: flushed to 0
    t = S.class_table({"n": F.MX("float8_e4m3fn", 32, "ocp", "nearest", -1)}, {"m": [x]}).iloc[0]
    assert not t.zero_mean and t.max_rel == pytest.approx(1.0)


def test_T_of_keeps_gamma_times_T():
    assert S.T_of(200_000, 0.01, 0.01, 10) == 200_000
    assert S.T_of(200_000, 0.1, 0.01, 10) == 20_000
    assert S.T_of(200_000, 0.03, 0.01, 10) == 66_667
    assert S.T_of(1_000, 1.0, 0.001, 10) == 200  # at least 20 metric points


@pytest.mark.parametrize("N", [1, 2, 4])
def test_recipe_sites_are_after_every_activation_and_on_every_affine_output_gradient(N):
    net = S.digits_net(N, 8)
    sites = S.recipe_sites(N, "MXFP8", "both")
    assert sorted(sites["forward"]) == [i for i in range(1, len(net) + 1) if isinstance(net.op(i), O.Tanh)]
    # backward[i] perturbs the message into operator i - 1: every affine layer's output gradient
    assert sorted(sites["backward"]) == [i + 1 for i in range(1, len(net)) if isinstance(net.op(i), O.Affine)]
    assert all(p.element == "float8_e5m2" for p in sites["backward"].values())
    assert S.recipe_sites(N, "MXFP8", "none") == dict(forward={}, backward={})
    with pytest.raises(ValueError, match="recipe must be one of"):
        S.recipe_sites(N, "FP3", "both")


def test_mlp_messages_are_the_passes_activations_and_affine_output_gradients():
    train, _ = S.digits_data(0)
    net = S.digits_net(2, 8)
    w = net.init_weight(np.random.default_rng(0))
    acts, grads = S.mlp_messages(net, train, w, rows=16)
    assert [a.shape for a in acts] == [(16, 8), (16, 8)] and all(np.all(np.abs(a) < 1) for a in acts)  # tanh outputs
    assert [g.shape for g in grads] == [(16, 8), (16, 8), (16, 10)]
    # the last one is the softmax cross-entropy's gradient at the logits: softmax - onehot, rows sum to 0
    assert np.allclose(grads[-1].sum(axis=1), 0.0, atol=1e-12)


def test_catalogue_names_are_the_kinds_labels():
    cat = S.kind_catalogue(0, 2000)
    assert all(p.label == name for name, p in cat.items())
    assert cat["MXFP8 E4M3 block 2000 ceil nearest"].block == 2000
    with pytest.raises(ValueError, match="unknown scaled kind"):
        S.kinds_named(["MXFP9"], 0)


def _claim(name):
    return Claim(id=f"formats.{name}", chapter="formats", ref="r", source="book", text="t", section="Section 4",
                 decided_by="fig")


def _digits(ratio_fwd, ratio_bwd, depths=(2, 8), seeds=(0, 1, 2), settled=True):
    rows = []
    for N in depths:
        for s in seeds:
            rows.append(dict(N=N, recipe="none", site="none", seed=s, stable_grad_norm=1.0, settled=settled))
            for site, r in (("forward", ratio_fwd(N)), ("backward", ratio_bwd(N))):
                rows.append(dict(N=N, recipe="MXFP4 SR", site=site, seed=s, stable_grad_norm=r, settled=settled))
    return pd.DataFrame(rows)


def test_site_verdict_finds_the_forward_site_dominant_only_beyond_the_recovery_factor():
    assert FV.site_verdict(_claim, _digits(lambda N: 3.0, lambda N: 1.0)).outcome == "holds"
    assert FV.site_verdict(_claim, _digits(lambda N: 1.0, lambda N: 3.0)).outcome == "fails"
    assert FV.site_verdict(_claim, _digits(lambda N: 1.2, lambda N: 1.0)).outcome == "unresolved"  # ties only
    assert FV.site_verdict(_claim, _digits(lambda N: 3.0, lambda N: 1.0, settled=False)).outcome == "unresolved"


def test_sr_and_depth_verdicts():
    t = _digits(lambda N: N / 2.0, lambda N: 1.1)
    assert FV.sr_floor_verdict(_claim, t).outcome == "holds"
    assert FV.sr_floor_verdict(_claim, _digits(lambda N: 1.0, lambda N: 2.0)).outcome == "fails"
    d = FV.depth_verdict(_claim, t)  # forward: 4 / 1 = 4 > 1.5 amplified; backward 1.1/1.1 = 1 not
    assert d.outcome == "partial" and d.key_number == pytest.approx(4.0)


def test_digits_summary_divides_by_the_clean_run_of_the_same_depth_and_seed():
    t = _digits(lambda N: 2.0, lambda N: 1.0).assign(test_accuracy=0.9, diverged=False, drift=1.0)
    t.loc[t.recipe == "none", "test_accuracy"] = 0.95
    s = S.digits_summary(t)
    f = s[(s.site == "forward")]
    assert np.allclose(f.over_clean, 2.0) and np.allclose(f.accuracy_change, -0.05)
