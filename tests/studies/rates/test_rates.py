"""Rates, budgets and bounds of Sections 5–6 (fbsgd.studies.rates): power-law fits,
budget schedules, gradient-error moments and the right-hand sides of (34)/(38)."""
import math

import numpy as np
import pytest

from fbsgd.theory import error_bounds as B
from fbsgd import perturbations as P
from fbsgd.studies import rates as R
from fbsgd.passes import perturbed_passes
from fbsgd.problems import LogisticRegression
from fbsgd.engine.sweeps import RunConfig

# -------------------------------------------------------------------------------------------------
# power-law fits
# -------------------------------------------------------------------------------------------------

TS = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000]


def synthetic(p, n_seeds, noise, rng, A=2.0, Ts=TS):
    """y = A T^p · exp(noise·N(0,1)) independently per (T, seed)."""
    T, y, s = [], [], []
    for seed in range(n_seeds):
        for t in Ts:
            T.append(t)
            y.append(A * t**p * math.exp(noise * rng.standard_normal()))
            s.append(seed)
    return np.array(T), np.array(y), np.array(s)


@pytest.mark.parametrize("p", [-0.5, -1.0, -0.25, 0.0])
def test_fit_recovers_the_exponent_of_a_noisy_power_law(p, rng):
    T, y, s = synthetic(p, 6, 0.3, rng)
    fit = R.fit_power_law(T, y, s)
    assert fit.n_T == len(TS) and fit.n_seeds == 6 and fit.dof == 5
    assert abs(fit.exponent - p) < 0.15
    assert 0 < fit.se < 0.15
    assert fit.ci_low < fit.exponent < fit.ci_high


def test_fit_interval_covers_the_truth_at_about_the_nominal_rate():
    rng = np.random.default_rng(7)
    hits = 0
    n = 300
    for _ in range(n):
        T, y, s = synthetic(-0.5, 5, 0.4, rng)
        hits += R.fit_power_law(T, y, s).covers(-0.5)
    # nominal 95 %; the jackknife with a Student quantile should be close to it
    assert 0.88 <= hits / n <= 0.995


def test_exact_power_law_and_seed_level_offsets_give_the_exponent_with_no_spread():
    T = np.array(TS * 4)
    s = np.repeat(np.arange(4), len(TS))
    offset = np.array([1.0, 3.0, 0.5, 2.0])[s]  # a seed shifts every horizon alike
    fit = R.fit_power_law(T, offset * 5.0 * T**-0.75, s)
    assert fit.exponent == pytest.approx(-0.75, abs=1e-12)
    assert fit.se < 1e-10 and fit.misfit_se < 1e-10


def test_single_seed_falls_back_to_the_regression_error():
    rng = np.random.default_rng(3)
    T, y, _ = synthetic(-1.0, 1, 0.2, rng)
    fit = R.fit_power_law(T, y)
    assert fit.n_seeds == 1 and fit.dof == len(TS) - 2
    assert fit.se == pytest.approx(fit.misfit_se)
    assert fit.covers(-1.0)


def test_fit_ignores_diverged_runs_and_rejects_too_few_horizons():
    T = np.array([100, 1000, 10000, 100, 1000, 10000])
    y = np.array([1e-1, 1e-2, 1e-3, 1e-1, np.nan, 1e-3])
    s = np.array([0, 0, 0, 1, 1, 1])
    assert R.fit_power_law(T, y, s).exponent == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="2 horizons"):
        R.fit_power_law([100, 100], [1.0, 2.0])


def test_reference_exponents():
    assert R.reference_exponent(TS, "nonconvex") == -0.5
    a, b = math.log(1e3), math.log(1e6)
    two = R.reference_exponent([1_000, 1_000_000], "pl")
    assert two == pytest.approx((math.log(b) - b - math.log(a) + a) / (b - a))
    assert -1.0 < two < -0.85


def test_compare_exponents_and_threshold():
    base = R.PowerLaw(-0.5, 0.01, -0.53, -0.47, 1.0, 0.0, 6, 5, 4)
    same = R.PowerLaw(-0.48, 0.01, -0.51, -0.45, 1.0, 0.0, 6, 5, 4)
    slow = R.PowerLaw(-0.1, 0.01, -0.13, -0.07, 1.0, 0.0, 6, 5, 4)
    noisy = R.PowerLaw(-0.4, 0.2, -1.0, 0.2, 1.0, 0.0, 6, 5, 4)
    assert R.compare_exponents(same, base, tol=0.1)["status"] == "kept"
    assert R.compare_exponents(slow, base, tol=0.1)["status"] == "lost"
    assert R.compare_exponents(noisy, base, tol=0.1)["status"] == "unresolved"
    # against a known exponent only the fit's own error counts, with one-sided Student bounds
    r = R.compare_exponents(same, -0.5, tol=0.1)
    t = 2.131847  # Student t, 95 % one-sided, 4 degrees of freedom
    assert r["excess"] == pytest.approx(0.02) and r["excess_se"] == pytest.approx(0.01)
    assert r["excess_high"] == pytest.approx(0.02 + t * 0.01, rel=1e-5)
    r = R.compare_exponents(R.PowerLaw(-0.45, 0.03, 0, 0, 1.0, 0.0, 6, 5, 4), -0.5, tol=0.1)
    assert r["status"] == "unresolved" and r["excess_high"] > 0.1 > r["excess"]
    th = R.budget_threshold([1.0, 0.0, 0.5, 0.75], ["lost", "kept", "kept", "unresolved"])
    assert th == dict(kept_up_to=0.5, lost_from=1.0)
    th = R.budget_threshold([0.0, 0.5], ["unresolved", "kept"])
    assert math.isnan(th["kept_up_to"]) and math.isnan(th["lost_from"])


def test_matches_uses_the_band_then_the_interval():
    fit = R.PowerLaw(-0.47, 0.02, -0.51, -0.43, 1.0, 0.0, 6, 5, 4)
    assert R.matches(fit, -0.5, 0.05) is True
    assert R.matches(fit, -0.56, 0.05) is None
    assert R.matches(fit, -1.0, 0.05) is False


def _statuses(geometry, pas, mean, pairs):
    return [dict(geometry=geometry, **{"pass": pas}, mean=mean, a=a, status=s) for a, s in pairs]


def test_table1_comparison_words():
    import pandas as pd
    rows = (_statuses("nonconvex", "forward", "zero", [(0, "kept"), (0.5, "kept"), (0.75, "kept"), (1.0, "lost")])
            + _statuses("nonconvex", "backward", "zero", [(0, "kept"), (0.5, "kept"), (1.0, "kept")])
            + _statuses("pl", "forward", "zero", [(0, "kept"), (0.5, "lost"), (1.0, "lost")])
            + _statuses("pl", "backward", "nonzero", [(0, "lost"), (0.5, "lost")])
            + _statuses("nonconvex", "backward", "nonzero", [(0, "kept"), (0.5, "unresolved"), (1.0, "lost")]))
    out = R.table1_comparison(pd.DataFrame(rows)).set_index(["geometry", "pass", "mean"])
    r = out.loc[("nonconvex", "forward", "zero")]
    assert r.holds is True and r.kept_up_to == 0.75 and r.lost_from == 1.0 and "conservative" in r.agreement
    assert out.loc[("nonconvex", "backward", "zero")].agreement == "agrees"
    r = out.loc[("pl", "forward", "zero")]
    assert r.holds is True and "next exponent" in r.agreement and r.paper_a == 0.0 and r.averaging_a == 0.5
    assert out.loc[("pl", "backward", "nonzero")].holds is False
    assert out.loc[("nonconvex", "backward", "nonzero")].holds is None
    one = R.table1_comparison(pd.DataFrame(_statuses("pl", "backward", "nonzero", [(0, "kept"), (0.5, "unresolved"), (1.0, "lost")])))
    assert bool(one.holds.iloc[0]) and "cannot tell" in one.agreement.iloc[0]


# -------------------------------------------------------------------------------------------------
# schedules and budgets
# -------------------------------------------------------------------------------------------------


def test_step_size_schedules():
    assert R.gamma_nonconvex(10_000, 10.0) == pytest.approx(0.1)
    assert R.gamma_pl(1_000, 3.0) == pytest.approx(3 * math.log(1000) / 1000)
    # c = 3/μ makes the contraction factor of (38) at most 1/T
    mu, T = 0.37, 50_000
    g = R.gamma_pl(T, 3 / mu)
    assert (1 - mu * g / 3) ** T <= 1 / T


def test_horizons_are_log_spaced_and_include_the_ends():
    assert R.horizons(1_000, 1_000_000, 2) == [1_000, 3_200, 10_000, 32_000, 100_000, 320_000, 1_000_000]
    assert R.horizons(1_000, 10_000, 1) == [1_000, 10_000]


@pytest.mark.parametrize("T,a,Q", [(1000, 0.0, 1), (1000, 1.0, 1000), (1000, 1 / 3, 10), (10_000, 0.5, 100),
                                   (1000, 0.5, 32), (3_000, 0.75, 406)])  # 3000^0.75 = 405.4
def test_budget_count(T, a, Q):
    assert R.budget_count(T, a) == Q


# every a at T = 1,000 and 3,200; at T = 10,007 (a horizon that no Δ divides) the a whose schedule keeps Q small:
# the reference predicate (Schedule.active) tests membership in the list of steps, T·Q operations, and a = 0.9, 1
# at T = 10,007 (about 10^8) would only repeat the paths of a = 0.9, 1 at T = 3,200 and of T = 10,007 at a <= 0.625
SPREAD = [(a, T) for a in (0.0, 0.25, 0.5, 0.625, 0.9, 1.0) for T in (1_000, 3_200, 10_007) if not (T == 10_007 and a >= 0.9)]


@pytest.mark.parametrize("a,T", SPREAD)
def test_spread_budgets_act_exactly_Q_times_over_the_whole_horizon(T, a):
    fields = R.spread_fields(T, a)
    Q, dt = fields["budget"], fields["interval"]
    assert dt == max(1, round(T ** (1 - a)))
    assert 0.5 * T**a <= Q <= 1.5 * T**a + 1  # Q ≈ T^a up to the rounding of Δ
    for kind in ("forward", "backward"):
        cfg = RunConfig(T=T, perturbation=kind, sigma_f=1.0, sigma_b=1.0, **fields)
        plan = cfg.plan()
        p = plan.forward[1] if kind == "forward" else plan.backward[2]
        acting = [t for t in range(T) if p.active(t)]  # the core object's own predicate
        assert len(acting) == Q
        assert acting == list(range(0, T, dt))  # evenly spaced from t = 0 ...
        assert T - acting[-1] <= dt  # ... up to the end of the horizon
        np.testing.assert_array_equal(R.active_steps(cfg), acting)


@pytest.mark.parametrize("T,Q", [(1_000, 1), (1_000, 7), (1_000, 1000), (10_007, 99)])
def test_exact_budget_fields_match_the_core_budget(T, Q):
    cfg = RunConfig(T=T, perturbation="backward", sigma_b=1.0, **R.budget_fields(Q, T))
    acting = [t for t in range(T) if cfg.plan().backward[2].active(t)]
    assert len(acting) == Q
    assert set(acting) == set(P.budget(Q, T, P.zero_mean_uniform(1.0, 10)).steps)
    single = RunConfig(T=T, perturbation="forward", sigma_f=1.0, **R.budget_fields(1, T, start=T // 2))
    assert list(R.active_steps(single)) == [T // 2]


def test_the_exact_budget_can_stop_early_and_the_spread_one_does_not():
    T, Q = 1_000, 600  # ⌊T/Q⌋ = 1: the exact schedule perturbs t = 0..599 only
    exact = R.active_steps(RunConfig(T=T, perturbation="forward", sigma_f=1.0, **R.budget_fields(Q, T)))
    assert exact[-1] == 599
    spread = R.active_steps(RunConfig(T=T, perturbation="forward", sigma_f=1.0, **R.spread_fields(T, math.log(Q) / math.log(T))))
    assert spread[-1] >= T - 2


def test_active_steps_of_frequent_and_interval_configs():
    assert R.active_steps(RunConfig(T=50)).size == 0
    np.testing.assert_array_equal(R.active_steps(RunConfig(T=50, perturbation="forward", sigma_f=1.0)), np.arange(50))
    np.testing.assert_array_equal(R.active_steps(RunConfig(T=50, perturbation="backward", sigma_b=1.0, interval=7)),
                                  np.arange(0, 50, 7))
    np.testing.assert_array_equal(R.active_steps(RunConfig(T=50, perturbation="backward", sigma_b=1.0, start=5, interval=10)),
                                  [5, 15, 25, 35, 45])


def test_budget_fields_reject_impossible_budgets():
    with pytest.raises(ValueError):
        R.budget_fields(0, 100)
    with pytest.raises(ValueError):
        R.budget_fields(101, 100)
    with pytest.raises(ValueError):
        R.budget_count(100, 1.5)


def test_decaying_size_and_horizon_configs():
    assert R.decaying_size(8.0, 1_000, 1_000, 0.125) == 8.0
    assert R.decaying_size(8.0, 256_000, 1_000, 0.125) == pytest.approx(8.0 / 2)
    assert R.decaying_size(1.0, 10**6, 10**3, 0.0, log_power=1) == pytest.approx(2.0)
    cs = R.horizon_configs("pl", [1_000, 10_000], [0, 1], c=8.0, rho=0.1, perturbation="forward",
                           size=lambda T: dict(sigma_f=R.decaying_size(4.0, T, 1_000, 0.25)), mode="shared")
    assert len(cs) == 4 and {c.regularizer for c in cs} == {"l2"} and {c.metric_every for c in cs} == {R.PL_METRIC_EVERY}
    c = next(c for c in cs if c.T == 10_000)
    assert c.gamma == pytest.approx(8.0 * math.log(10_000) / 10_000)
    assert c.sigma_f == pytest.approx(4.0 * 10**-0.25) and c.mode == "shared"
    cb = R.horizon_configs("nonconvex", [1_000], [0], c=10.0, rho=0.001, budget_exponent=0.5,
                           perturbation="backward", sigma_b=2.0)[0]
    assert (cb.budget, cb.interval, cb.gamma) == (32, 32, pytest.approx(10 / math.sqrt(1000)))  # Δ = round(√1000)
    assert cb.metric_every == 1  # at T = 1000, γ = 0.32: the non-convex average needs every iterate
    big = R.horizon_configs("nonconvex", [100_000], [0], c=10.0, rho=0.001)[0]
    assert big.metric_every == int(0.25 / big.gamma) == 7
    assert R.horizon_configs("nonconvex", [1_000], [0], c=10.0, rho=0.001, metric_every=5)[0].metric_every == 5


def test_adaptive_metric_sampling_estimates_the_full_average():
    """The sampled (1/T)Σ‖∇ℓ(w_t)‖² of the engine agrees with the every-iterate average within a few per cent."""
    import dataclasses
    from fbsgd.engine.sweeps import run_sweep
    base = R.horizon_configs("nonconvex", [20_000], [0], c=10.0, rho=0.001, T=20_000)[0]
    assert base.metric_every == 3
    full = dataclasses.replace(base, metric_every=1)
    ten = dataclasses.replace(base, metric_every=30)
    r = run_sweep([base, full, ten], cache_dir=False, progress=False, n_jobs=1).table.mean_sq_grad_norm.to_numpy()
    assert abs(r[0] / r[1] - 1) < 0.03
    assert r[2] / r[1] > 1.05  # sparse sampling does overstate it: the check can fail


# -------------------------------------------------------------------------------------------------
# constants and gradient-error moments
# -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    return LogisticRegression.generate(d=3, M=40, rho=0.1, regularizer="l2", data_seed=1)


def test_estimated_constants_of_the_l2_problem():
    p = LogisticRegression.generate(d=10, M=2000, rho=0.1, regularizer="l2", data_seed=0)
    K = R.estimate_constants(p, noise_std=1e-3)
    A = p.signed_features
    # at w = 0 every σ'(z) = 1/4: the Hessian is AᵀA/(4M) + 2ρI, the largest anywhere
    assert K.L == pytest.approx(np.linalg.eigvalsh(A.T @ A / (4 * p.M))[-1] + 0.2, rel=1e-12)
    assert 0.2 < K.mu < K.L
    assert K.sigma2 == pytest.approx(10 * 1e-6)
    assert K.delta0 == pytest.approx(math.log(2) - p.loss(p.minimize()))
    assert K.step_limit() == pytest.approx(1 / (3 * K.L))


def test_backward_moments_by_hand(small):
    p = small
    a = p.signed_features
    w = np.array([0.3, -0.2, 0.5])
    h = 0.7
    mse, b2 = R.gradient_error_moments(p, w, backward=(-h, h), per_sample=True)
    assert b2 == pytest.approx(0.0, abs=1e-30)
    assert mse == pytest.approx((a * a).sum() * (h * h / 3) / p.M**2)
    mse, b2 = R.gradient_error_moments(p, w, backward=(-h, h), per_sample=False)
    abar = a.mean(axis=0)
    assert mse == pytest.approx(h * h / 3 * abar @ abar) and b2 == pytest.approx(0.0, abs=1e-30)
    mse, b2 = R.gradient_error_moments(p, w, backward=(0.0, h), per_sample=False)
    assert b2 == pytest.approx((h / 2) ** 2 * abar @ abar)
    assert mse == pytest.approx(h * h / 3 * abar @ abar)
    assert R.gradient_error_moments(p, w) == (0.0, 0.0)


@pytest.mark.parametrize("mode", ["per_sample", "shared"])
@pytest.mark.parametrize("case", [dict(perturbation="forward", sigma_f=6.0),
                                  dict(perturbation="forward", sigma_f=4.0, mean="nonzero"),
                                  dict(perturbation="both", sigma_f=5.0, sigma_b=3.0, mean="nonzero")])
def test_moments_match_monte_carlo_through_the_core_passes(small, mode, case):
    """Exact moments against passes of fbsgd.passes.perturbed_passes with the configuration's own plan."""
    p = small
    cfg = RunConfig(d=3, M=40, rho=0.1, regularizer="l2", data_seed=1, mode=mode, **case)
    w = np.array([0.4, -0.3, 0.8])
    clean = perturbed_passes(p.net, p.data, w)[0].gradient()
    plan, state = cfg.plan(), cfg.plan().init(5)
    n = 6000
    errs = np.empty((n, 3))
    for k in range(n):
        out, state = perturbed_passes(p.net, p.data, w, plan, state)
        errs[k] = out.gradient() - clean
    sq = (errs**2).sum(axis=1)
    fwd, bwd, per_sample = R.uniform_ranges(cfg)
    mse, b2 = R.gradient_error_moments(p, w, fwd, bwd, per_sample)
    assert abs(sq.mean() - mse) < 5 * sq.std() / math.sqrt(n)
    m = errs.mean(axis=0)
    se = errs.std(axis=0) / math.sqrt(n)
    assert abs(math.sqrt(m @ m) - math.sqrt(b2)) < 5 * math.sqrt(se @ se) + 1e-12


# -------------------------------------------------------------------------------------------------
# right-hand sides of (34) and (38)
# -------------------------------------------------------------------------------------------------

KH = R.ProblemConstants(L=2.0, mu=0.5, sigma2=0.1, delta0=3.0, f_star=0.0, w_star=np.zeros(1))


def test_rhs_34_by_hand():
    r = R.rhs_nonconvex(0.1, 100, KH, steps=np.array([0, 10, 20]), mse=4.0, bias_sq=1.0)
    assert r["optimization"] == pytest.approx(6 * 3 / (0.1 * 100))
    assert r["sampling"] == pytest.approx(6 * 2 * 0.1 * 0.1)
    assert r["error_variance"] == pytest.approx(6 * 2 * 0.1 * 3 * 4 / 100)
    assert r["error_bias"] == pytest.approx(3 * 3 * 1 / 100)
    assert r["total"] == pytest.approx(1.8 + 0.12 + 0.144 + 0.09)
    assert r["valid"] and not R.rhs_nonconvex(0.2, 100, KH)["valid"]
    assert R.rhs_nonconvex(0.1, 100, KH)["error_bias"] == 0.0


def test_rhs_38_by_hand():
    q = 1 - 0.5 * 0.1 / 3
    r = R.rhs_pl(0.1, 100, KH, steps=np.array([0, 10, 20]), mse=4.0, bias_sq=1.0)
    W = q**100 + q**90 + q**80
    assert r["optimization"] == pytest.approx(q**100 * 3)
    assert r["sampling"] == pytest.approx(3 * 2 * 0.1 * 0.1 / 0.5)
    assert r["error_variance"] == pytest.approx(2 * 0.01 * W * 4)
    assert r["error_bias"] == pytest.approx(0.05 * W)
    # every step perturbed: the weights sum to the geometric series q (1 − q^T)/(1 − q)
    full = R.rhs_pl(0.1, 100, KH, steps=np.arange(100), bias_sq=1.0)
    assert full["error_bias"] == pytest.approx(0.05 * q * (1 - q**100) / (1 - q))


def test_logistic_chain_constants_by_hand():
    h = np.array([[1.0], [-3.0]])
    y = np.array([1.0, -1.0])
    p = LogisticRegression(h, y, np.zeros(1), 0.0, LogisticRegression.generate(d=1, M=1).regularizer)
    K = R.logistic_chain_constants(p, np.array([[2.0]]))
    j1 = math.sqrt(4 + 36)  # ‖(w, hᵀw)‖ at h = −3
    assert K.C_grad == pytest.approx(j1)
    assert K.L_f == pytest.approx(j1)
    assert K.C_hess == pytest.approx(math.sqrt(10))
    assert K.L_grad == pytest.approx(math.sqrt(10))
    # softplus on z = −a w ∈ {−2, −6}: |σ''| peaks inside [−6, −2]? no: at z = −ln(2+√3) ≈ −1.32, outside; so at z = −2
    s = 1 / (1 + math.exp(2.0))
    assert K.L_hess == pytest.approx(s * (1 - s) * abs(1 - 2 * s), rel=1e-6)


def test_assumption3_moments_bound_the_exact_ones(small):
    p = small
    pts = R.path(np.zeros(3), p.minimize(), 5)
    for case in (dict(perturbation="forward", sigma_f=3.0), dict(perturbation="backward", sigma_b=3.0, mean="nonzero")):
        cfg = RunConfig(d=3, M=40, rho=0.1, regularizer="l2", data_seed=1, **case)
        fwd, bwd, _ = R.uniform_ranges(cfg)
        K3 = R.logistic_chain_constants(p, pts, fwd or (0.0, 0.0))
        mse_b, bias_b = R.assumption3_moments(cfg, K3)
        mse, b2 = R.region_moments(p, cfg, pts)
        assert mse <= mse_b and b2 <= bias_b
    # backward only, zero mean: (13) reduces to C^e_{ε₂} E ε² with C^e_{ε₂} = 3 C²_∇f for N = 2
    cfg = RunConfig(d=3, M=40, rho=0.1, regularizer="l2", data_seed=1, perturbation="backward", sigma_b=3.0)
    K3 = R.logistic_chain_constants(p, pts)
    lo, hi = R.uniform_ranges(cfg)[1]
    mse_b, bias_b = R.assumption3_moments(cfg, K3)
    assert mse_b == pytest.approx(3 * K3.C_grad**2 * hi * hi / 3)
    assert bias_b == 0.0
    assert B.c_e_eps(2, 2, K3) == pytest.approx(3 * K3.C_grad**2)


# -------------------------------------------------------------------------------------------------
# schedules and supports are read off the core objects (fbsgd.perturbations' protocol)
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [dict(), dict(interval=7), dict(start=5, interval=10), dict(start=3, interval=4, budget=5),
                                    dict(interval=3, budget=4), dict(start=45, interval=3)])
def test_active_steps_are_the_schedule_of_the_placed_perturbation(fields):
    cfg = RunConfig(T=50, perturbation="both", sigma_f=0.5, sigma_b=1.0, **fields)
    for p in (cfg.plan().forward[1], cfg.plan().backward[2]):
        acting = [t for t in range(cfg.T) if p.active(t)]
        np.testing.assert_array_equal(R.active_steps(cfg), acting)
        assert R.active_steps(cfg).dtype == np.int64 and len(acting) == p.schedule.count(cfg.T)


def test_uniform_ranges_are_the_supports_of_the_laws():
    cfg = RunConfig(perturbation="both", mean="nonzero", sigma_f=0.5, sigma_b=0.7, interval=3, mode="shared")
    hf, hb = 0.5 / math.sqrt(cfg.d), 0.7 / math.sqrt(cfg.d)
    assert R.uniform_ranges(cfg) == ((0.0, hf), (0.0, hb), False)
    assert R.uniform_ranges(RunConfig(perturbation="backward", sigma_b=0.7)) == (None, (-hb, hb), True)


def test_uniform_ranges_refuse_a_law_that_is_not_uniform():
    class Config:  # any object with plan() and mode will do
        mode = "per_sample"

        def plan(self):
            return P.Plan(forward={1: P.every(2, P.GaussianNoise(1.0))})

    with pytest.raises(NotImplementedError, match="moments are implemented for uniform perturbations, got Every"):
        R.uniform_ranges(Config())


def test_estimates_show_two_significant_digits_of_their_error():
    from fbsgd.studies.rates.statistics import format_estimate

    assert format_estimate(-0.49712, 0.00031) == "-0.49712 ± 0.00031"
    assert format_estimate(-0.404, 0.023) == "-0.404 ± 0.023"
    assert format_estimate(-1.03, 0.69) == "-1.030 ± 0.690"
    fit = R.PowerLaw(-0.4971, 0.00002, -0.49713, -0.49707, 1.0, 0.0, 6, 8, 7)
    assert str(fit) == "-0.497100 ± 0.000020" and fit.interval_text() == "-0.497130 … -0.497070"


def test_rates_reexports_the_five_modules():
    from fbsgd.theory import logistic_closed_forms as logistic_forms
    from fbsgd.studies.rates import schedules as rate_design
    from fbsgd.studies.rates import statistics as rate_statistics
    from fbsgd.studies.rates import table1
    from fbsgd.theory import rate_bounds as theorem_bounds

    for mod in (rate_design, rate_statistics, table1, theorem_bounds, logistic_forms):
        for name in mod.__all__:
            assert getattr(R, name) is getattr(mod, name)
