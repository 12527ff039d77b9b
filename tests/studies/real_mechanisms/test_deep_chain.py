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
    deep = DC.run_deep([N], [mech], ["sgd", "heavyball", "adam"], [0, 3], width=width, gain=gain, n_data=n,
                       data_seed=5, T=T, batch=batch, metric_every=every, lr=LR, error_draws=draws,
                       n_jobs=1, cache_dir=False, progress=False)
    table = deep.runs
    assert len(table) == 3 * 2 * 3  # optimizers × seeds × (clean, forward, backward)
    assert list(table.columns) == ["N", "place", "mechanism", "label", "optimizer", "seed", "diverged",
                                   "stable_grad_norm", "drift", "settled", "final_loss", "relative_gradient_error"]
    data = Dataset(*DC.classification_data(n, width, 5))
    for r in table.itertuples():
        stable, loss, err = _direct(N, width, gain, data, r.place, mech, r.optimizer, r.seed, T, batch, every, draws)
        assert not r.diverged
        assert r.stable_grad_norm == pytest.approx(stable, rel=1e-9)
        assert r.final_loss == pytest.approx(loss, rel=1e-9)
        assert r.relative_gradient_error == pytest.approx(err, rel=1e-6, abs=0.0)
        assert (r.relative_gradient_error > 0) == (r.place != "none")
        assert r.settled == (0.8 <= r.drift <= 1.25)
    # one comparable point per clean run, and every mechanism and place measured at its weights
    assert len(deep.points) == 3 * 2 and len(deep.errors) == 3 * 2 * 2
    assert set(deep.errors.place) == {"forward", "backward"}


def _direct_trajectory(cfg, T_long):
    """The weights and full-data losses of a direct fbsgd.optimizers.train run of ``cfg`` (its net, rule,
    data, batch, seed, penalty) for T_long steps, recorded after every step."""
    ws, losses = {}, {}
    X, Y = cfg.data.features, cfg.data.labels

    def grab(w):
        k = len(ws)
        ws[k] = w.copy()
        p = passes(cfg.net, X, w, labels=Y)
        losses[k] = float(np.mean(p.ys[-1])) + (cfg.rho * float(w @ w) if cfg.regularizer == "l2" else 0.0)
        return 0.0

    train(PassGradient(cfg.net, cfg.plan()), cfg.initial_weights(), cfg.optimizer_rule(), T_long, cfg.data,
          batch_size=cfg.batch, seed=cfg.seed, regularizer_grad=cfg.regularizer_grad(), record_every=1,
          metrics={"grab": grab})
    return ws, losses


@pytest.mark.parametrize("optimizer", ["sgd", "heavyball", "adam"])
def test_prefix_property_a_shorter_run_is_the_longer_runs_first_steps(optimizer):
    """The configuration with T = t ends where a direct train run of the longer horizon is after t steps
    (minibatches and streams depend on the seed and the step only), and prefix_weights checks its loss."""
    pairs = DC.deep_configs([2], [], [optimizer], [4], width=3, gain=1.1, n_data=16, data_seed=2, T=12, batch=4,
                            metric_every=2, lr=LR, places=(), regularizer="l2", rho=1e-2)
    cfg = pairs[0][1]
    ws, losses = _direct_trajectory(cfg, 12)
    for t in (2, 6, 8):
        got = DC.prefix_weights([cfg], [t], [losses[t]], n_jobs=1, cache_dir=False)[0]
        np.testing.assert_allclose(got, ws[t], rtol=1e-10, atol=1e-13)
    assert np.array_equal(DC.prefix_weights([cfg], [0], [losses[0]], n_jobs=1, cache_dir=False)[0], cfg.initial_weights())
    with pytest.raises(RuntimeError, match="not the same trajectory"):
        DC.prefix_weights([cfg], [6], [losses[6] * (1 + 1e-6)], n_jobs=1, cache_dir=False)


@pytest.mark.parametrize("place", ["forward", "backward"])
def test_mean_gradient_is_the_batch_mean_of_the_readable_passes(place):
    """The same draws as fbsgd.passes.perturbed_passes (stochastic rounding at every site) and the same mean."""
    net = DC.chain_net(3, 5, 1.3)
    x, y = DC.classification_data(40, 5, 1)
    w = net.init_weight(np.random.default_rng(7))
    plan = P.Plan(**DC.sites(3, place, P.Round("float8_e5m2", mode="stochastic")))
    for step in (0, 5):
        state = {k: v._replace(step=step) for k, v in plan.init(3).items()}
        want = perturbed_passes(net, x, w, plan, state, labels=y)[0].gradient()
        np.testing.assert_allclose(DC.mean_gradient(net, x, w, plan, state, labels=y), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(DC.mean_gradient(net, x, w, labels=y), passes(net, x, w, labels=y).gradient(),
                               rtol=1e-12, atol=1e-15)


def _clean(losses):
    """Clean traces: {(optimizer, N, seed): losses at t = 0, 10, 20, ...}."""
    return pd.DataFrame([dict(optimizer=o, N=N, seed=s, t=10 * i, loss=v) for (o, N, s), ls in losses.items()
                         for i, v in enumerate(ls)])


def test_loss_level_and_comparable_points():
    clean = _clean({("sgd", 2, 0): [0.7, 0.4, 0.2, 0.1], ("sgd", 8, 0): [0.7, 0.6, 0.3, 0.35],
                    ("adam", 2, 0): [0.7, 0.5, 0.5, 0.5]})
    levels = DC.loss_level(clean)
    assert levels == {"sgd": 0.3, "adam": 0.5}  # the highest of the lowest losses per optimizer
    pts = DC.comparable_points(clean, levels).set_index(["optimizer", "N"])
    assert pts.loc[("sgd", 2)].t == 20 and pts.loc[("sgd", 8)].t == 20 and pts.loc[("adam", 2)].t == 10
    with pytest.raises(ValueError, match="never reaches the level"):
        DC.comparable_points(clean, {"sgd": 0.05, "adam": 0.5})


def _errors(cases, optimizer="sgd", seeds=(0, 1, 2)):
    """Errors at comparable points: {(mechanism, place): {N: error or per-seed list}}."""
    rows = []
    for (mech, place), by_n in cases.items():
        for N, e in by_n.items():
            es = e if isinstance(e, list) else [e] * len(seeds)
            for s, v in zip(seeds, es):
                rows.append(dict(optimizer=optimizer, N=N, place=place, mechanism=mech, label=f"{mech} {place}", seed=s,
                                 t=10, loss=0.3, relative_gradient_error=v))
    return pd.DataFrame(rows)


def test_seed_flag_and_interval_flag():
    assert DC.seed_flag([5, 6, 7], 4) is True and DC.seed_flag([1, 2], 4) is False and DC.seed_flag([1, 6], 4) is None
    assert DC.seed_flag([], 4) is None
    assert DC.interval_flag(1.0, 1.1) is True  # [0.91, 1.1] inside 0.8–1.25
    assert DC.interval_flag(1.0, 1.3) is None  # the spread reaches past the band: not smaller than the effect
    assert DC.interval_flag(2.0, 1.3) is False  # [1.54, 2.6] wholly outside
    assert DC.interval_flag(1.4, 1.2) is None and DC.interval_flag(np.nan, 1.1) is None


def test_depth_growth_and_compounding_verdict_marks():
    geo = {("m", "forward"): {2: 1.0, 4: 4.0, 8: 64.0}}  # ×64 from N = 2 to 8, beyond ×4
    lin = {("m", "forward"): {2: 1.0, 4: 2.0, 8: 4.0}}  # exactly additive
    g = DC.depth_growth(_errors(geo))
    assert g.per_layer_factor.iloc[0] == pytest.approx(64 ** (1 / 6)) and g.compounds.iloc[0] == True  # noqa: E712
    mixed = {**geo, ("m", "backward"): {2: 1.0, 4: 1.0, 8: 1.0}}
    split = {**geo, ("m", "backward"): {2: 1.0, 4: 1.0, 8: [2.0, 8.0, 8.0]}}  # one seed ×2, two ×8: seeds disagree
    out = [DC.compounding_verdict(claim, DC.depth_growth(_errors(t)), "c").outcome for t in (geo, lin, mixed, split)]
    assert out == ["holds", "fails", "partial", "unresolved"]
    # every optimizer is judged: Adam failing where SGD compounds makes it partial
    both = pd.concat([_errors(geo), _errors(lin, optimizer="adam")], ignore_index=True)
    v = DC.compounding_verdict(claim, DC.depth_growth(both), "c")
    assert v.outcome == "partial" and "SGD:" in v.evidence and "Adam:" in v.evidence


def test_forward_sensitive_and_optimizer_verdicts_at_comparable_points():
    t = _errors({("m", "forward"): {2: 2.0, 4: 2.0, 8: 0.5}, ("m", "backward"): {2: 1.0, 4: 1.0, 8: 1.0}})
    assert DC.forward_sensitive_verdict(claim, t, "f").outcome == "partial"
    t = _errors({("m", "forward"): {2: 0.5, 4: 0.5, 8: 0.5}, ("m", "backward"): {2: 1.0, 4: 1.0, 8: 1.0}})
    assert DC.forward_sensitive_verdict(claim, t, "f").outcome == "fails"
    t = _errors({("m", "forward"): {2: 2.0, 4: [0.5, 2.0, 2.0]}, ("m", "backward"): {2: 1.0, 4: 1.0}})
    v = DC.forward_sensitive_verdict(claim, t, "f")
    assert v.outcome == "unresolved" and "seeds disagree" in v.evidence
    hb = _errors({("m", "forward"): {2: 0.5, 8: 3.0}, ("m", "backward"): {2: 1.0, 8: 1.0}}, optimizer="heavyball")
    assert DC.optimizer_verdict(claim, hb, "o", optimizers=("heavyball",)).outcome == "holds"  # the deepest chain only


def test_lemma_factors():
    lf = DC.lemma_factors([2, 4], 8, 1.0)
    assert np.allclose(lf.C_v, np.maximum(1.0, lf.C_grad ** lf.N))
    assert lf.eq21_factor.iloc[0] == pytest.approx(3 * lf.C_grad.iloc[0] ** 2)


def _runs(sgd, other, optimizer="adam", clean_sgd=(1.0, 1.0, 1.0), clean_other=(1.0, 1.0, 1.0), drift=1.0):
    """Runs tables: per optimizer and seed a clean run of stable norm clean_*[seed] and a forward run at
    N = 2 and N = 4 whose stable norm is the clean one × the floor (sgd or other, per N)."""
    rows = []
    for opt, floors, cl in (("sgd", sgd, clean_sgd), (optimizer, other, clean_other)):
        for s, c in enumerate(cl):
            for N, f in zip((2, 4), floors):
                base = dict(optimizer=opt, N=N, seed=s, diverged=False, final_loss=0.1, relative_gradient_error=0.0,
                            drift=drift, settled=0.8 <= drift <= 1.25)
                rows.append(dict(base, place="none", mechanism="none", label="clean", stable_grad_norm=c))
                rows.append(dict(base, place="forward", mechanism="m", label="m forward", stable_grad_norm=c * f))
    return pd.DataFrame(rows)


def test_optimizer_floor_table_ratio_spread_and_flag():
    f = DC.optimizer_floor_table(_runs([2.0, 4.0], [2.2, 8.0], clean_other=(1.0, 1.05, 1.1)), optimizers=("adam",))
    assert list(f.N) == [2, 4]
    assert f.ratio_to_base.tolist() == pytest.approx([1.1, 2.0])
    assert f.spread.tolist() == pytest.approx([1.1, 1.1])  # the larger clean seed spread of the two optimizers
    assert f.same_floor.tolist() == [True, False]  # [1.0, 1.21] inside 0.8–1.25; [1.82, 2.2] outside


def test_optimizer_floor_verdict_holds_partial_fails_and_undecided():
    def verdict(other, **kw):
        floors = DC.optimizer_floor_table(_runs([2.0, 4.0], other, **kw), optimizers=("adam",))
        return DC.optimizer_floor_verdict(claim, floors, "o", "adam")
    assert verdict([2.1, 3.6]).outcome == "holds"
    v = verdict([2.1, 1.0])  # ×1.05 and ×0.25
    assert v.outcome == "partial" and v.key_number == pytest.approx(0.25)
    assert verdict([4.0, 1.0]).outcome == "fails"
    # the clean runs differ 16× between seeds (the N = 8): the spread is not smaller than the effect
    v = verdict([2.1, 3.6], clean_sgd=(0.104, 0.05, 0.0066))
    assert v.outcome == "unresolved" and "spread ×15.8" in v.evidence and "undecided (spread)" in v.evidence
    # runs that have not settled (drift 0.5) decide nothing, however clear the ratio
    v = verdict([4.0, 1.0], drift=0.5)
    assert v.outcome == "unresolved" and "undecided (not settled)" in v.evidence


def test_outcome_of_flags_counts_decided_cases():
    from fbsgd.book.verdicts import outcome_of_flags

    assert outcome_of_flags([True, True]) == "holds"
    assert outcome_of_flags([True, None]) == "unresolved" and outcome_of_flags([None]) == "unresolved"
    assert outcome_of_flags([]) == "unresolved"
    assert outcome_of_flags([True, False, None]) == "partial"  # half of the decided cases
    assert outcome_of_flags([True, False, False, None]) == "fails"
    assert outcome_of_flags([False, None]) == "fails"


def test_stable_table_spread_drift_and_settled():
    st = DC.stable_table(_runs([2.0, 4.0], [2.0, 4.0], clean_sgd=(1.0, 2.0, 4.0), drift=1.3))
    clean = st[(st.place == "none") & (st.optimizer == "sgd")]
    assert clean.seed_spread.tolist() == pytest.approx([4.0, 4.0]) and not clean.settled.any()
    assert clean.drift_max.tolist() == pytest.approx([1.3, 1.3])


def test_deep_metric_interval_of_the_cost_model_is_the_chapters():
    from fbsgd.book import costs
    from fbsgd.studies.real_mechanisms import summary as MSM

    assert costs.DEEP_METRIC_POINTS == MSM.DEEP_METRIC_POINTS
    assert MSM.deep_design([], 4000, 0.1, 0.01, 0.9, 0.001, 1e-3)["metric_every"] == 4000 // MSM.DEEP_METRIC_POINTS
    assert MSM.deep_design([], 4000, 0.1, 0.01, 0.9, 0.001, 1e-3)["regularizer"] == "l2"
    assert MSM.deep_design([], 4000, 0.1, 0.01, 0.9, 0.001)["regularizer"] == "none"


def test_final_weights_are_the_weights_a_direct_train_run_ends_at():
    mech = P.Round("float8_e5m2")
    pairs = DC.deep_configs([2], [mech], ["heavyball"], [1], width=3, gain=1.0, n_data=10, data_seed=0, T=6, batch=2,
                            metric_every=2, lr=LR, places=("backward",))
    cfgs = [c for r, c in pairs if r.place == "backward"]
    net = Composite([O.Linear(3, 3), O.Tanh(3), O.Linear(3, 3), O.Tanh(3), O.Linear(3, 1), O.LogisticLoss()])
    run = train(PassGradient(net, P.Plan(backward={3: mech, 5: mech})), tanh_chain(2, 3, 1.0, 1)[1],
                HeavyBall(LR["heavyball"], LR["beta"]), 6, Dataset(*DC.classification_data(10, 3, 0)), batch_size=2, seed=1)
    np.testing.assert_allclose(DC.final_weights(cfgs)[0], run.w, rtol=1e-10, atol=1e-13)
