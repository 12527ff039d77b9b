"""fbsgd.studies.real_mechanisms.deep_chain: the runs through the engine against a direct run of
fbsgd.optimizers.train, the sites against hand-written passes, and the analysis on synthetic tables."""
import numpy as np
import pandas as pd
import pytest

from fbsgd import operators as O
from fbsgd import perturbations as P
from fbsgd.optimizers import SGD, Adam, HeavyBall, PassGradient, train
from fbsgd.passes import Composite, passes, perturbed_passes
from fbsgd.problems import Dataset
from fbsgd.studies.real_mechanisms import deep_chain as DC
from fbsgd.studies.error_propagation.injection import tanh_chain
from fbsgd.book.verdicts import Claim

LR = dict(sgd=0.1, heavyball=0.05, beta=0.9, adam=0.01)


def claim(name):
    return Claim(id=f"t.{name}", chapter="t", ref="-", source="book", text=name)


def test_chain_net_is_the_tanh_chain_with_its_weights_and_the_logistic_loss():
    for N, width, gain, seed in ((1, 3, 1.0, 0), (3, 5, 1.7, 4)):
        net = DC.chain_net(N, width, gain)
        ref, w = tanh_chain(N, width, gain, seed)
        assert [type(op) for op in net.ops] == [type(op) for op in ref.ops] + [O.LogisticLoss]
        np.testing.assert_array_equal(net.init_weight(np.random.default_rng(seed)), w)  # the same bits


def _hand_gradient(Ws, r, x, y, c_fwd=0.0, c_bwd=0.0):
    """The 2-layer chain's batch-mean gradient written out: y_i = tanh(W_i y_{i−1}) + c_fwd,
    out = y_2 r, ℓ = ln(1 + e^{−y·out}); the messages ∂ℓ/∂y_i get + c_bwd."""
    ys = [x]
    for W in Ws:
        ys.append(np.tanh(ys[-1] @ W.T) + c_fwd)
    out = ys[-1] @ r
    dout = -y / (1.0 + np.exp(y * out))
    g_r = (dout[:, None] * ys[-1]).mean(axis=0)
    v = dout[:, None] * r[None, :] + c_bwd  # ṽ_2 = ∂ℓ/∂y_2 + ε
    gs = [None, None]
    for i in (1, 0):
        dh = v * (1.0 - (ys[i + 1] - c_fwd) ** 2)  # tanh' at the exact pre-activation
        gs[i] = (dh[:, :, None] * ys[i][:, None, :]).mean(axis=0).ravel()
        v = dh @ Ws[i] + c_bwd  # ṽ_1 = ∂ℓ/∂y_1 + ε
    return np.concatenate(gs + [g_r])


@pytest.mark.parametrize("place", ["none", "forward", "backward"])
def test_sites_put_the_mechanism_after_each_tanh_or_on_each_message_into_a_tanh(place):
    N, D, B = 2, 3, 5
    g = np.random.default_rng(1)
    x, y = g.standard_normal((B, D)), np.where(g.standard_normal(B) > 0, 1.0, -1.0)
    net = DC.chain_net(N, D, 1.3)
    w = net.init_weight(np.random.default_rng(2))
    ws = net.split(w)
    c = 0.25
    s = DC.sites(N, place, P.Constant(c))
    assert sorted(s["forward"]) == ([2, 4] if place == "forward" else [])  # Tanh operators 2 and 4
    assert sorted(s["backward"]) == ([3, 5] if place == "backward" else [])  # messages into operators 2 and 4
    plan = P.Plan(**s)
    got = perturbed_passes(net, x, w, plan, plan.init(0), labels=y)[0].gradient()
    Ws = [ws[1].reshape(D, D), ws[3].reshape(D, D)]
    want = _hand_gradient(Ws, ws[5], x, y, c_fwd=c if place == "forward" else 0.0,
                          c_bwd=c if place == "backward" else 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="place must be one of"):
        DC.sites(N, "middle", P.Constant(c))


def _direct(N, width, gain, data, place, mech, opt, seed, T, batch, every, draws):
    """One configuration through fbsgd.optimizers.train with the readable passes, summarised as run_deep does."""
    ops = []
    for _ in range(N):
        ops += [O.Linear(width, width), O.Tanh(width)]
    net = Composite(ops + [O.Linear(width, 1), O.LogisticLoss()])
    w0 = tanh_chain(N, width, gain, seed)[1]
    where = {"forward": {2 * i: mech for i in range(1, N + 1)}, "backward": {2 * i + 1: mech for i in range(1, N + 1)}}
    plan = P.Plan(**{place: where[place]}) if place != "none" else P.Plan()
    rule = {"sgd": SGD(LR["sgd"]), "heavyball": HeavyBall(LR["heavyball"], LR["beta"]), "adam": Adam(LR["adam"])}[opt]
    X, Y = data.features, data.labels
    run = train(PassGradient(net, plan), w0, rule, T, data, batch_size=batch, seed=seed, record_every=every,
                metrics={"norm": lambda w: float(np.linalg.norm(passes(net, X, w, labels=Y).gradient()))})
    t, norms = run.t, run["norm"]
    stable = float(np.mean(norms[(t < T) & (t >= T - T // 2)]))
    loss = float(np.mean(passes(net, X, run.w, labels=Y).ys[-1]))
    err = 0.0
    if place != "none":
        g0 = passes(net, X, run.w, labels=Y).gradient()
        st = plan.init(seed)
        for s in range(draws):
            state = {k: v._replace(step=T + s) for k, v in st.items()}
            err += np.sum((perturbed_passes(net, X, run.w, plan, state, labels=Y)[0].gradient() - g0) ** 2) / draws
        err /= np.sum(g0 ** 2)
    return stable, loss, err


def test_run_deep_rows_are_direct_train_runs():
    N, width, gain, n, T, batch, every, draws = 2, 4, 1.2, 24, 8, 4, 2, 3
    mech = P.Round("float8_e5m2", mode="stochastic")
    table = DC.run_deep([N], [mech], ["sgd", "heavyball", "adam"], [0, 3], width=width, gain=gain, n_data=n,
                        data_seed=5, T=T, batch=batch, metric_every=every, lr=LR, error_draws=draws,
                        n_jobs=1, cache_dir=False, progress=False)
    assert len(table) == 3 * 2 * 3  # optimizers × seeds × (clean, forward, backward)
    assert list(table.columns) == ["N", "place", "mechanism", "label", "optimizer", "seed", "diverged",
                                   "stable_grad_norm", "final_loss", "relative_gradient_error"]
    data = Dataset(*DC.classification_data(n, width, 5))
    for r in table.itertuples():
        stable, loss, err = _direct(N, width, gain, data, r.place, mech, r.optimizer, r.seed, T, batch, every, draws)
        assert not r.diverged
        assert r.stable_grad_norm == pytest.approx(stable, rel=1e-9)
        assert r.final_loss == pytest.approx(loss, rel=1e-9)
        assert r.relative_gradient_error == pytest.approx(err, rel=1e-6, abs=0.0)
        assert (r.relative_gradient_error > 0) == (r.place != "none")


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


def test_compounding_evidence_names_endpoints_and_fit_and_rule_uses_words():
    geo = _stable({("m", "forward"): [1.0, 4.0, 64.0]})
    v = DC.compounding_verdict(claim, DC.depth_growth(geo), "c")
    assert "endpoints ×64" in v.evidence and "log-linear fit" in v.evidence and v.key_number == pytest.approx(64)
    t = _stable({("m", "forward"): [2.0, 2.0, 0.5], ("m", "backward"): [1.0, 1.0, 1.0]})
    v = DC.forward_sensitive_verdict(claim, t, "f", column="relative_gradient_error")
    assert "relative_gradient_error" not in v.rule and "relative gradient error" in v.rule


def test_final_weights_are_the_weights_a_direct_train_run_ends_at():
    mech = P.Round("float8_e5m2")
    pairs = DC.deep_configs([2], [mech], ["heavyball"], [1], width=3, gain=1.0, n_data=10, data_seed=0, T=6, batch=2,
                            metric_every=2, lr=LR, places=("backward",))
    cfgs = [c for r, c in pairs if r.place == "backward"]
    net = Composite([O.Linear(3, 3), O.Tanh(3), O.Linear(3, 3), O.Tanh(3), O.Linear(3, 1), O.LogisticLoss()])
    run = train(PassGradient(net, P.Plan(backward={3: mech, 5: mech})), tanh_chain(2, 3, 1.0, 1)[1],
                HeavyBall(LR["heavyball"], LR["beta"]), 6, Dataset(*DC.classification_data(10, 3, 0)), batch_size=2, seed=1)
    np.testing.assert_allclose(DC.final_weights(cfgs)[0], run.w, rtol=1e-10, atol=1e-13)
