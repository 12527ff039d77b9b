"""The correctors chapter's fits, classification and verdicts on synthetic tables whose answer is known."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.correctors import verdicts as CA
from fbsgd.book.claims.correctors import CLAIMS

CLAIM = {c.id.split(".", 1)[1]: c for c in CLAIMS}.__getitem__
GAMMAS = [0.01, 0.03, 0.1, 0.3]


def _scan(spec, mechanisms=None):
    """spec: (part, place, perturbation, corrector) -> S(γ) function; two seeds with ±1 % noise;
    ``mechanisms``: (part, place, perturbation, corrector) -> the label of a plain mechanism (default "")."""
    rows = []
    for (part, place, pert, corr), f in spec.items():
        for g in GAMMAS:
            for seed, eps in ((0, 1.01), (1, 0.99)):
                v = f(g)
                rows.append(dict(part=part, place=place, perturbation=pert, corrector=corr,
                                 mechanism=(mechanisms or {}).get((part, place, pert, corr), ""), gamma=g, seed=seed,
                                 stable_grad_norm=v * eps if np.isfinite(v) else np.nan, diverged=not np.isfinite(v)))
    return pd.DataFrame(rows)


SGD = lambda g: 0.01 * g**0.5
FLOOR = lambda g: 0.05 + 0.0 * g


def _table(backward_ef, forward_ef=FLOOR):
    spec = {("baseline", "none", "none", "none"): SGD,
            ("compression", "forward", "Top-K", "plain"): FLOOR,
            ("compression", "forward", "Top-K", "error feedback"): forward_ef,
            ("compression", "backward", "Top-K", "plain"): FLOOR,
            ("compression", "backward", "Top-K", "error feedback"): backward_ef,
            ("compression", "backward", "Rand-K", "plain"): SGD,
            ("compression", "backward", "Rand-K", "error feedback"): lambda g: np.nan}
    return CA.summary(CA.stable_slopes(_scan(spec)))


def test_slopes_recover_known_power_laws():
    s = CA.stable_slopes(_scan({("baseline", "none", "none", "none"): SGD,
                                ("compression", "forward", "Top-K", "plain"): FLOOR}))
    assert s.slope.iloc[0] == pytest.approx(0.5, abs=1e-9) and abs(s.slope.iloc[1]) < 1e-9
    assert s.floor.iloc[1] == pytest.approx(0.05, rel=1e-3)  # geometric mean of 1.01 and 0.99 × 0.05


@pytest.mark.parametrize("slope, ratio, over, floor, div, want", [
    (0.5, 0.1, 1.0, True, False, "restores the rate"),
    (0.0, 0.1, 1.2, True, False, "restores the rate"),  # on SGD's level already
    (0.5, 1.0, 1.0, False, False, "no floor to remove"),
    (0.0, 0.3, 5.0, True, False, "lowers the floor"),
    (0.0, 1.0, 5.0, True, False, "no effect"),
    (0.0, 3.0, 5.0, True, False, "raises the floor"),
    (0.5, 1.0, 1.0, True, True, "diverges"),
    (0.0, 0.5, 1.8, True, False, CA.BETWEEN),  # flat, settled, 1.5–2× SGD's: neither restored nor a floor
    (0.1, 1.0, 5.0, None, False, "no effect"),
])
def test_classify(slope, ratio, over, floor, div, want):
    assert CA.classify(slope, ratio, over, floor, div) == want


def test_floors_are_found_by_the_shared_rule():
    from fbsgd.studies.section7 import verdicts as S7

    assert CA.floor_found is S7.floor_found and CA.is_settled is S7.is_settled
    assert CA.floor_found(0.0, 5.0) is True and CA.floor_found(0.5, 5.0) is False and CA.floor_found(0.0, 1.5) is False
    assert CA.floor_found(0.0, 1.8) is None  # flat between RECOVERY_FACTOR and FLOOR_OVER_SGD: undecided


def test_corrector_verdict_holds_fails_and_ignores_cases_without_a_floor():
    t = _table(backward_ef=SGD)
    v = CA.corrector_verdict(CLAIM, "ef_backward", t, "backward", "error feedback")
    # Top-K's floor restored, but Rand-K, which converged without a floor when plain, diverges: a failed case
    assert v.outcome == "partial" and v.key_number == 0.5 and "makes diverge what converged" in v.evidence
    spec = {("baseline", "none", "none", "none"): SGD, ("compression", "backward", "Top-K", "plain"): FLOOR,
            ("compression", "backward", "Top-K", "error feedback"): SGD,
            ("compression", "backward", "Rand-K", "plain"): SGD, ("compression", "backward", "Rand-K", "error feedback"): SGD}
    v = CA.corrector_verdict(CLAIM, "ef_backward", CA.summary(CA.stable_slopes(_scan(spec))), "backward", "error feedback")
    assert v.outcome == "holds" and v.key_number == 1.0 and "Not counted" in v.evidence and "Rand-K" in v.evidence
    v = CA.corrector_verdict(CLAIM, "ef_forward", t, "forward", "error feedback")
    assert v.outcome == "fails" and "no effect" in v.evidence
    t = _table(backward_ef=lambda g: 0.02 + 0 * g)  # lowers the floor but keeps it
    v = CA.corrector_verdict(CLAIM, "ef_backward", t, "backward", "error feedback")
    assert v.outcome == "fails" and "lowers the floor" in v.evidence


def test_corrector_verdict_partial_over_both_places():
    t = _table(backward_ef=SGD, forward_ef=FLOOR)
    v = CA.corrector_verdict(CLAIM, "stochastic_rounding", t, None, "error feedback")
    assert v.outcome == "partial"


def test_corrector_verdict_without_cases_is_unresolved():
    spec = {("baseline", "none", "none", "none"): SGD, ("compression", "backward", "Rand-K", "plain"): SGD,
            ("compression", "backward", "Rand-K", "delta"): SGD}
    t = CA.summary(CA.stable_slopes(_scan(spec)))
    assert CA.corrector_verdict(CLAIM, "delta_backward", t, "backward", "delta").outcome == "unresolved"


def test_prediction_verdict():
    spec = {("baseline", "none", "none", "none"): SGD, ("debias", "forward", "u", "plain"): FLOOR}
    sl = CA.stable_slopes(_scan(spec))
    ok = CA.summary(sl, predicted={("forward", "u", "plain"): 0.05})
    assert CA.prediction_verdict(CLAIM, "uncorrected_floor_predicted", ok).outcome == "holds"
    off = CA.summary(sl, predicted={("forward", "u", "plain"): 0.01})
    assert CA.prediction_verdict(CLAIM, "uncorrected_floor_predicted", off).outcome == "fails"


def test_rate_exponents_recover_t_to_the_minus_half():
    rows = [dict(part="baseline", place="none", perturbation="none", corrector="none", T=T, seed=s,
                 mean_sq_grad_norm=3.0 * T**-0.5 * (1 + 0.01 * s)) for T in (1000, 3000, 10000) for s in (0, 1)]
    r = CA.rate_exponents(pd.DataFrame(rows))
    assert r.rate_exponent.iloc[0] == pytest.approx(-0.5, abs=1e-3)


def test_a3_verdict_holds_partial_fails():
    def scan(fates):
        return pd.DataFrame([dict(setting=s, gamma=g, stable_uncompressed=True, variant=v, fate=f)
                             for (s, g), f in fates.items() for v in ("uncompressed", "Top-1 + delta")
                             ] + [dict(setting="plain", gamma=1.0, stable_uncompressed=False, variant="Top-1 + delta",
                                       fate="diverges")])
    conv = {("plain", 0.001): "converges", ("momentum", 0.01): "converges"}
    assert CA.a3_verdict(CLAIM, "a3_delta", scan(conv), "Top-1 + delta").outcome == "holds"
    mixed = {("plain", 0.001): "converges", ("momentum", 0.01): "diverges"}
    assert CA.a3_verdict(CLAIM, "a3_delta", scan(mixed), "Top-1 + delta").outcome == "partial"
    bad = {("plain", 0.001): "diverges", ("momentum", 0.01): "undecided"}
    assert CA.a3_verdict(CLAIM, "a3_delta", scan(bad), "Top-1 + delta").outcome == "fails"


def test_expected_message_limit_matches_the_closed_form_and_vanishes_when_exact():
    from fbsgd.correctors import UniformDebias
    from fbsgd.studies.correctors.study import problem
    from fbsgd.theory.small_step_limits import small_step_limit
    from fbsgd.perturbations import Plan, zero_mean_uniform

    pr = problem()
    noise = zero_mean_uniform(2.0, pr.d)
    ref = small_step_limit(pr, Plan(forward={1: noise}))["plateau"]
    assert CA.expected_message_limit(pr, noise.high)["plateau"] == pytest.approx(ref, rel=1e-6)
    fix = UniformDebias.for_noise(noise)
    assert CA.expected_message_limit(pr, noise.high, lambda v: fix.apply(v, 0, 0))["plateau"] < 1e-9


# -- settling: a flat curve of runs that have not settled is undecided ------------------------------

def test_drift_ratio_is_one_when_settled_and_below_one_while_falling():
    assert CA.drift_ratio(np.full(400, 0.3)) == pytest.approx(1.0)
    falling = np.exp(-np.arange(400) / 100.0)  # quarters [200, 300) and [300, 400): ratio e^{-1}
    want = np.mean(falling[300:]) / np.mean(falling[200:300])
    assert CA.drift_ratio(falling) == pytest.approx(want) and want == pytest.approx(np.exp(-1.0), rel=1e-9)


def test_is_settled_uses_the_agreement_band():
    assert CA.is_settled([1.0, 0.9, 1.2]) and not CA.is_settled([1.0, 0.5]) and not CA.is_settled([np.nan])


@pytest.mark.parametrize("flags, want", [
    ([True, True], "holds"), ([False, False], "fails"), ([True, False], "partial"), ([True, False, None], "partial"),
    ([True, None], "unresolved"), ([False, None], "unresolved"), ([None], "unresolved"), ([], "unresolved"),
])
def test_outcome_of_flags(flags, want):
    assert CA.outcome_of_flags(flags) == want


def test_unsettled_flat_curves_are_undecided():
    assert CA.floor_found(0.0, 5.0, settled=False) is None and CA.floor_found(0.5, 5.0, settled=False) is False
    assert CA.classify(0.0, 1.0, 5.0, True, False, settled=False) == CA.UNSETTLED
    assert CA.classify(0.5, 0.1, 1.0, True, False, settled=False) == "restores the rate"  # rising already


def _scan_with_drift(spec, drift):
    """As _scan, with a drift column: ``drift[setting]`` at the smallest γ (default 1: settled)."""
    s = _scan(spec)
    key = list(zip(s.part, s.place, s.perturbation, s.corrector))
    s["drift"] = [drift.get(k, 1.0) if g == min(GAMMAS) else 1.0 for k, g in zip(key, s.gamma)]
    return s


def test_corrector_verdict_unresolved_when_the_corrected_or_the_plain_run_has_not_settled():
    ef = ("compression", "backward", "Top-K", "error feedback")
    spec = {("baseline", "none", "none", "none"): SGD, ("compression", "backward", "Top-K", "plain"): FLOOR, ef: FLOOR}
    t = CA.summary(CA.stable_slopes(_scan_with_drift(spec, {ef: 0.5})))
    v = CA.corrector_verdict(CLAIM, "ef_backward", t, "backward", "error feedback")
    assert v.outcome == "unresolved" and CA.UNSETTLED in v.evidence and "not settled" in v.evidence
    t = CA.summary(CA.stable_slopes(_scan_with_drift(spec, {})))  # settled: the same flat curve fails
    assert CA.corrector_verdict(CLAIM, "ef_backward", t, "backward", "error feedback").outcome == "fails"
    spec[ef] = SGD
    t = CA.summary(CA.stable_slopes(_scan_with_drift(spec, {("compression", "backward", "Top-K", "plain"): 0.5})))
    v = CA.corrector_verdict(CLAIM, "ef_backward", t, "backward", "error feedback")
    assert v.outcome == "unresolved" and "plain not settled" in v.evidence
    t = CA.summary(CA.stable_slopes(_scan_with_drift(spec, {("baseline", "none", "none", "none"): 0.5})))
    spec[ef] = FLOOR  # standard SGD not settled: a flat corrected curve cannot be judged
    t = CA.summary(CA.stable_slopes(_scan_with_drift(spec, {("baseline", "none", "none", "none"): 0.5})))
    assert CA.corrector_verdict(CLAIM, "ef_backward", t, "backward", "error feedback").outcome == "unresolved"


def test_corrector_verdict_partial_survives_an_undecided_case():
    spec = {("baseline", "none", "none", "none"): SGD,
            ("compression", "backward", "Top-K", "plain"): FLOOR, ("compression", "backward", "Top-K", "delta"): SGD,
            ("compression", "backward", "fp8", "plain"): FLOOR, ("compression", "backward", "fp8", "delta"): FLOOR,
            ("compression", "backward", "Rand-K", "plain"): FLOOR, ("compression", "backward", "Rand-K", "delta"): FLOOR}
    t = CA.summary(CA.stable_slopes(_scan_with_drift(spec, {("compression", "backward", "Rand-K", "delta"): 0.5})))
    v = CA.corrector_verdict(CLAIM, "delta_backward", t, "backward", "delta")
    assert v.outcome == "partial"


def test_prediction_verdict_unresolved_when_not_settled():
    spec = {("baseline", "none", "none", "none"): SGD, ("debias", "forward", "u", "plain"): FLOOR}
    sl = CA.stable_slopes(_scan_with_drift(spec, {("debias", "forward", "u", "plain"): 0.5}))
    t = CA.summary(sl, predicted={("forward", "u", "plain"): 0.05})
    assert CA.prediction_verdict(CLAIM, "uncorrected_floor_predicted", t).outcome == "unresolved"


def test_debias_verdict_reports_the_predicted_residual_against_sgd():
    spec = {("baseline", "none", "none", "none"): SGD, ("debias", "forward", "u", "plain"): FLOOR,
            ("debias", "forward", "u", "second-order"): SGD}
    sgd_min = SGD(min(GAMMAS))
    t = CA.summary(CA.stable_slopes(_scan(spec)), predicted={("forward", "u", "plain"): 0.05,
                                                             ("forward", "u", "second-order"): 0.25 * sgd_min})
    v = CA.debias_verdict(CLAIM, "debias_second_order", t, "second-order")
    assert v.outcome == "holds" and "= 0.25 × standard SGD's S(γ_min)" in v.evidence
    spec[("debias", "forward", "u", "second-order")] = lambda g: 0.01 + 0 * g  # keeps a floor, lowered 5×
    t = CA.summary(CA.stable_slopes(_scan(spec)))
    assert CA.debias_verdict(CLAIM, "debias_second_order", t, "second-order").outcome == "fails"


def test_rule_text_is_complete_and_uses_math_symbols():
    v = CA.corrector_verdict(CLAIM, "ef_backward", _table(backward_ef=SGD), "backward", "error feedback")
    assert "<=" not in v.rule and "≤" in v.rule
    assert "its plain floor is;" not in v.rule and "plain floor is undecided" in v.rule and "floor_found" in v.rule


def test_diverged_cases_print_diverges_not_nan():
    t = _table(backward_ef=lambda g: np.nan)  # error feedback diverges on backward Top-K
    v = CA.corrector_verdict(CLAIM, "ef_backward", t, "backward", "error feedback")
    assert v.outcome == "fails" and "Top-K (backward): diverges" in v.evidence
    assert "nan" not in v.evidence.lower()


# -- the facts found about plain mechanisms, and the three undecided or negative outcomes ------------------

FP8 = "float8_e4m3fn"
MECH = {("compression", "forward", FP8, "plain"): "float8_e4m3fn nearest",
        ("compression", "forward", FP8, "stochastic rounding"): "float8_e4m3fn stochastic",
        ("compression", "backward", FP8, "plain"): "float8_e4m3fn nearest",
        ("compression", "backward", FP8, "stochastic rounding"): "float8_e4m3fn stochastic"}


def _rounding_table(fwd_plain, fwd_sr, bwd_plain, bwd_sr, drift=None):
    spec = {("baseline", "none", "none", "none"): SGD,
            ("compression", "forward", FP8, "plain"): fwd_plain, ("compression", "forward", FP8, "stochastic rounding"): fwd_sr,
            ("compression", "backward", FP8, "plain"): bwd_plain, ("compression", "backward", FP8, "stochastic rounding"): bwd_sr}
    s = _scan(spec, MECH)
    key = list(zip(s.part, s.place, s.perturbation, s.corrector))
    s["drift"] = [(drift or {}).get(k, 1.0) if g == min(GAMMAS) else 1.0 for k, g in zip(key, s.gamma)]
    return CA.summary(CA.stable_slopes(s))


def _fact(label, place):
    from fbsgd.book.verdicts import fact
    from fbsgd.studies.section7.verdicts import SETTING_S7

    return fact("floor", label, place, SETTING_S7)


def test_stochastic_rounding_keeping_the_forward_floor_fails_and_records_every_floor_it_found():
    """Forward: nearest and stochastic both leave a floor (the real-mechanisms chapter's float8 forward finding);
    backward: neither does (zero-mean rounding of the backward message) — ✘, with the four facts."""
    t = _rounding_table(FLOOR, lambda g: 0.02 + 0 * g, SGD, SGD)
    v = CA.corrector_verdict(CLAIM, "stochastic_rounding", t, None, "stochastic rounding")
    assert v.outcome == "fails" and v.mark == "✘" and "lowers the floor" in v.evidence
    assert v.finds == {_fact("float8_e4m3fn nearest", "forward"): True, _fact("float8_e4m3fn stochastic", "forward"): True,
                       _fact("float8_e4m3fn nearest", "backward"): False,
                       _fact("float8_e4m3fn stochastic", "backward"): False}
    assert "Floors found (plain mechanisms): " in v.evidence and "float8_e4m3fn nearest (backward) no" in v.evidence
    assert v.key_number == pytest.approx(0.0, abs=1e-9)  # the flat stochastic forward curve


def test_stochastic_rounding_restoring_one_place_only_is_partial():
    t = _rounding_table(FLOOR, lambda g: 0.03 + 0 * g, FLOOR, SGD)
    v = CA.corrector_verdict(CLAIM, "stochastic_rounding", t, None, "stochastic rounding")
    assert v.outcome == "partial" and v.mark == "◐"


def test_an_unsettled_plain_floor_is_undecided_and_finds_nothing_about_it():
    t = _rounding_table(FLOOR, SGD, SGD, SGD, drift={("compression", "forward", FP8, "plain"): 0.6})
    v = CA.corrector_verdict(CLAIM, "stochastic_rounding", t, None, "stochastic rounding")
    assert v.outcome == "unresolved" and v.mark == "?" and "plain not settled" in v.evidence
    assert _fact("float8_e4m3fn nearest", "forward") not in v.finds  # undecided: no fact
    assert v.finds[_fact("float8_e4m3fn stochastic", "forward")] is False  # rising: no floor, settled or not


def test_a_corrected_curve_between_the_thresholds_is_undecided():
    t = _rounding_table(FLOOR, lambda g: 0.018 * SGD(min(GAMMAS)) / 0.01 + 0 * g, SGD, SGD)  # flat at 1.8× SGD's
    row = t[(t.place == "forward") & (t.corrector == "stochastic rounding")].iloc[0]
    assert row.effect == CA.BETWEEN and row.has_floor is None
    v = CA.corrector_verdict(CLAIM, "stochastic_rounding", t, None, "stochastic rounding")
    assert v.outcome == "unresolved" and _fact("float8_e4m3fn stochastic", "forward") not in v.finds


def test_two_chapters_finding_the_float8_floor_alike_agree_and_differently_contradict():
    from fbsgd.book.verdicts import contradictions

    t = _rounding_table(FLOOR, lambda g: 0.03 + 0 * g, SGD, SGD)
    ours = CA.corrector_verdict(CLAIM, "stochastic_rounding", t, None, "stochastic rounding").record()
    for theirs, agree in ((True, True), (False, False)):
        rec = dict(ours, claim_id="real_mechanisms.x", chapter="real_mechanisms",
                   finds=f"{_fact('float8_e4m3fn stochastic', 'forward')} = {'yes' if theirs else 'no'}")
        c = contradictions(pd.DataFrame([ours, rec]))
        row = c[c.fact == _fact("float8_e4m3fn stochastic", "forward")]
        assert len(row) == 2 and bool(row.agree.all()) is agree


@pytest.mark.parametrize("x, want", [(630.4, "630×"), (6304.0, "6,300×"), (1.0012, "1×"), (0.01234, "0.0123×"),
                                     (np.nan, "—"), (np.inf, "—")])
def test_factor_prints_plain_numbers(x, want):
    assert CA.factor(x) == want


def test_relative_text_says_unchanged_inside_the_band():
    assert CA.relative_text(1.001, "the plain one").startswith("unchanged from the plain one")
    assert CA.relative_text(0.2, "the plain one") == "0.2× the plain one"
    assert CA.num(np.nan) == "—" and CA.num(-0.5, ".2f") == "−0.50"


def test_effect_sentence_groups_perturbations_by_what_the_corrector_does():
    t = _table(backward_ef=SGD)
    text = CA.effect_sentence(t, "backward", "error feedback")
    assert text == ("restores the error-free small-step behaviour with Top-K; diverges with Rand-K")
    assert CA.effect_sentence(t, "forward", "error feedback") == "leaves the floor where it was with Top-K"
    assert CA.effect_sentence(t, "forward", "delta") == "—"


def test_prose_answers_follow_the_outcomes_and_floor_words_follow_the_numbers():
    t = _table(backward_ef=SGD)
    out = CA.prose(t, {"ef_forward": "fails", "ef_backward": "holds", "x": "partial", "y": "unresolved"})
    assert (out["answer-ef_forward"], out["answer-ef_backward"], out["answer-x"]) == ("no", "yes", "in part")
    assert out["answer-y"] == "not decided by these runs"
    assert out["topk-fwd-plain"] == "a floor 50× standard SGD's stable norm"  # 0.05 against 0.01·√0.01
    assert CA.floor_text(0.9) == "a stable norm 0.9× standard SGD's, no floor above it"
    assert "cannot show" in CA.residual_text(0.3) and "could show" in CA.residual_text(3.0)
    assert CA.names_text(["a"]) == "a" and CA.names_text(["a", "b", "c"]) == "a, b and c"
    assert CA.count_text(1, "seed") == "one seed" and CA.count_text(2, "seed") == "2 seeds"


def test_a3_sentence_counts_stable_step_sizes_and_names_the_failures():
    rows = []
    for setting, gam, stable, fates in [("plain", 0.001, True, ("converges", "converges")),
                                        ("plain", 0.02, False, ("diverges", "diverges")),
                                        ("momentum", 0.001, True, ("converges", "converges")),
                                        ("momentum", 0.01, True, ("converges", "diverges"))]:
        for variant, f in zip(("Top-1", "Top-1 + delta"), fates):
            rows.append(dict(setting=setting, gamma=gam, stable_uncompressed=stable, variant=variant, fate=f))
    text = CA.a3_sentence(pd.DataFrame(rows), "Top-1 + delta")
    assert text == ("without momentum, 1 of 1; with momentum, 1 of 2 "
                    "(not at γ ∈ {0.01}, where plain Top-1 converges)")


# -- summary_values: every glued number and sentence of the chapter --------------------------------

def _rates(exponents):
    """Rate-scan rows with (1/T) Σ ‖∇f‖² = 2 T^p exactly, p = ``exponents[setting]``."""
    return pd.DataFrame([dict(part=part, place=place, perturbation=pert, corrector=corr, T=T, seed=s,
                              mean_sq_grad_norm=2.0 * T**p)
                         for (part, place, pert, corr), p in exponents.items()
                         for T in (1000, 3000, 10000) for s in (0, 1)])


def _summary_inputs():
    """A summary table with every row summary_values reads, a ledger table, an A.3 scan and Figure 9's radii."""
    from fbsgd.book.verdicts import Ledger, Verdict

    uni = "uniform σ_f = 2"
    delta_bwd = ("compression", "backward", "Top-K", "delta")
    spec = {("baseline", "none", "none", "none"): SGD,
            ("compression", "forward", "Top-K", "plain"): FLOOR,
            ("compression", "forward", "Top-K", "error feedback"): FLOOR,  # no effect: ratio 1
            ("compression", "forward", "Top-K", "delta"): SGD,  # restores
            ("compression", "backward", "Top-K", "plain"): FLOOR,
            ("compression", "backward", "Top-K", "error feedback"): SGD,
            delta_bwd: FLOOR,  # flat but not settled (drift 0.5): the one unsettled effect
            ("debias", "forward", uni, "plain"): FLOOR,
            ("debias", "forward", uni, "second-order"): SGD,
            ("debias", "forward", uni, "exact"): SGD,
            ("compression", "backward", "float8_e4m3fn", "plain"): FLOOR,
            ("compression", "backward", "float8_e4m3fn", "stochastic rounding"): SGD}
    rates = _rates({k: p for k, p in zip(spec, (-0.5, -0.05, -0.1, -0.4, 0.1, -0.5, 0.0, 0.0, -0.5, -0.5, 0.2, -0.5))})
    sgd_min = SGD(min(GAMMAS)) * np.sqrt(1.01 * 0.99)  # geometric mean of the two seeds
    predicted = {("forward", uni, "plain"): 0.05, ("forward", uni, "second-order"): 0.25 * sgd_min,
                 ("forward", uni, "exact"): 0.0}
    table = CA.summary(CA.stable_slopes(_scan_with_drift(spec, {delta_bwd: 0.5})), rates, predicted)
    ledger = Ledger("correctors")
    for name, outcome, key in [("ef_forward", "fails", 0.01234), ("delta_forward", "holds", 0.4),
                               ("ef_backward", "holds", 0.5), ("delta_backward", "unresolved", None),
                               ("stochastic_rounding", "partial", 0.3), ("a3_error_feedback", "partial", 0.5),
                               ("a3_delta", "holds", 1.0), ("uncorrected_floor_predicted", "holds", 1.234567),
                               ("debias_second_order", "holds", 0.5), ("debias_exact", "holds", 0.5)]:
        ledger.add(Verdict(ledger.claim(name), outcome, rule="r", evidence="e", key_number=key, key_label="k"))
    a3 = pd.DataFrame([dict(setting=s, gamma=g, stable_uncompressed=st, variant=v, fate=f)
                       for s, g, st, fates in [("plain", 0.001, True, ("converges", "converges", "converges")),
                                               ("plain", 0.02, False, ("diverges", "diverges", "diverges")),
                                               ("momentum", 0.001, True, ("diverges", "diverges", "converges"))]
                       for v, f in zip(("Top-1", "Top-1 + error feedback", "Top-1 + delta"), fates)])
    fig9 = pd.DataFrame([dict(setting="plain", gamma=0.0039, radius=1.0123, stable=False),
                         dict(setting="momentum", gamma=0.002, radius=0.98765, stable=True)]).set_index("setting")
    return ledger.table(), table, a3, fig9


def test_summary_values_follow_from_the_inputs():
    verdicts, table, a3, fig9 = _summary_inputs()
    out = CA.summary_values(verdicts, table, a3, fig9, 10_000, [0, 1], [0.1, 0.3, 1.0])
    assert out["co-sgd-rate"] == "−0.50"  # baseline rate runs: 2 T^−0.5
    assert out["co-topk-fwd-ef-rate"] == "−0.1" and out["co-topk-fwd-delta-rate"] == "−0.4"
    assert out["co-unsettled"] == 1  # only backward Top-K with delta has a flat, unsettled curve
    assert out["co-topk-fwd-plain-over"] == "50×"  # 0.05 against 0.01·√0.01 (per-seed noise cancels)
    assert out["co-topk-fwd-plain"] == "a floor 50× standard SGD's stable norm"
    assert out["co-topk-fwd-ef-ratio"] == "unchanged from the plain one (ratio 1)"
    assert out["co-topk-fwd-delta-over"] == "1×"
    assert out["co-second-order-ratio"] == "0.02×" and out["co-exact-over"] == "1×"
    assert out["co-plain-uniform-over"] == "50×"
    assert out["co-second-order-residual"].startswith("0.25× standard SGD's norm") and "cannot show" in \
        out["co-second-order-residual"]
    assert out["co-fig9-plain-where"] == "outside" and out["co-fig9-momentum-where"] == "inside"
    assert out["co-fig9-plain-gamma"] == "0.0039" and out["co-fig9-plain-radius"] == "1.01"
    assert out["co-fig9-momentum-radius"] == "0.988"
    assert out["co-T"] == "10,000" and out["co-seeds"] == "2 seeds" and out["co-n-gammas"] == 3
    assert CA.summary_values(verdicts, table, a3, fig9, 600, [0], [0.1, 0.3])["co-seeds"] == "one seed"
    assert out["co-slope-window"] == CA.SLOPE_WINDOW
    assert out["co-ef_forward"] == "fails" and out["co-ef_forward-key"] == "0.0123"
    assert out["co-delta_backward"] == "unresolved" and out["co-delta_backward-key"] == "—"
    assert out["co-uncorrected_floor_predicted-key"] == "1.235"  # four digits for this one
    assert (out["co-answer-ef_forward"], out["co-answer-delta_forward"]) == ("no", "yes")
    assert out["co-answer-delta_backward"] == "not decided by these runs"
    assert out["co-eff-forward-ef"] == "leaves the floor where it was with Top-K"
    assert out["co-eff-forward-delta"] == "restores the error-free small-step behaviour with Top-K"
    assert out["co-eff-backward-delta"].startswith("has a flat curve that has not settled")
    assert out["co-a3-ef"] == ("without momentum, 1 of 1; with momentum, 0 of 1 "
                               "(not at γ ∈ {0.001}, where plain Top-1 diverges)")
    assert out["co-a3-delta"] == "without momentum, 1 of 1; with momentum, 1 of 1"
    assert out["co-plain-rates"] == "forward Top-K −0.05, backward Top-K 0.1, backward float8_e4m3fn 0.2"
    assert out["co-sgd-settled"] == "at γ = 0.01 standard SGD's runs have settled"


def test_summary_values_provide_every_glue_key_of_the_chapter():
    import re
    from pathlib import Path

    import nbformat

    nb = nbformat.read(Path(__file__).parents[3] / "chapters" / "correctors.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    used = set(re.findall(r"\{glue(?::text)?\}`(co-[^`]+)`", text))
    assert len(used) > 40  # the pattern finds the chapter's keys
    out = CA.summary_values(*_summary_inputs(), 600, [0], [0.1, 0.3])
    assert not used - set(out), used - set(out)


# -- the chapter's verdict calls and displayed tables ---------------------------------------------

def _a3_with_all_variants():
    """An A.3 scan with every variant of corrector_runs.A3_VARIANTS and the uncompressed spectral radius."""
    return pd.DataFrame([dict(setting=s, gamma=g, radius_uncompressed=r, stable_uncompressed=r < 1, variant=v, fate=f)
                         for s, g, r, fates in [("plain", 0.001, 0.9, ("converges", "converges", "diverges", "converges")),
                                                ("plain", 0.02, 1.5, ("diverges",) * 4),
                                                ("momentum", 0.001, 0.8, ("converges",) * 4)]
                         for v, f in zip(("uncompressed", "Top-1", "Top-1 + error feedback", "Top-1 + delta"), fates)])


def test_compression_verdicts_in_the_chapters_order_with_their_outcomes():
    _, table, _, _ = _summary_inputs()
    vs = CA.compression_verdicts(CLAIM, table)
    assert [v.claim.id.split(".")[1] for v in vs] == ["ef_forward", "ef_backward", "delta_forward", "delta_backward",
                                                      "stochastic_rounding"]
    # forward EF leaves the Top-K floor, backward EF and forward delta restore it, backward delta has not settled,
    # and stochastic rounding restores the float8 floor on the backward message
    assert [v.outcome for v in vs] == ["fails", "holds", "holds", "unresolved", "holds"]
    assert "uniform" not in vs[0].evidence  # the de-biasing rows are not compression cases


def test_a3_and_debias_verdicts_in_the_chapters_order():
    vs = CA.a3_verdicts(CLAIM, _a3_with_all_variants())
    assert [v.claim.id.split(".")[1] for v in vs] == ["a3_error_feedback", "a3_delta"]
    assert [v.outcome for v in vs] == ["partial", "holds"] and vs[0].key_number == pytest.approx(0.5)
    _, table, _, _ = _summary_inputs()
    vs = CA.debias_verdicts(CLAIM, table)
    assert [v.claim.id.split(".")[1] for v in vs] == ["uncorrected_floor_predicted", "debias_second_order",
                                                      "debias_exact"]
    assert [v.outcome for v in vs] == ["holds", "holds", "holds"]
    assert vs[0].key_number == pytest.approx(np.sqrt(1.01 * 0.99), rel=1e-9)  # measured 0.05 × seed noise / 0.05


def test_a3_fates_one_row_per_step_size_and_one_column_per_variant():
    fates = CA.a3_fates(_a3_with_all_variants())
    assert len(fates) == 3 and list(fates.setting) == ["momentum", "plain", "plain"]
    row = fates[(fates.setting == "plain") & (fates.gamma == 0.001)].iloc[0]
    assert (row["Top-1 + error feedback"], row["Top-1 + delta"], row.radius_uncompressed) == ("diverges", "converges",
                                                                                              0.9)
    shown = CA.a3_fate_table(_a3_with_all_variants())
    assert list(shown.data.columns) == ["setting", "γ", "spectral radius (uncompressed)", "uncompressed", "Top-1",
                                        "Top-1 + EF", "Top-1 + delta"]
    assert shown.caption == "Appendix A.3 with correctors: fate of ‖w₁‖ per step size"


def test_debias_and_summary_tables_show_the_chapters_columns():
    _, table, _, _ = _summary_inputs()
    d = CA.debias_table(table).data
    assert list(d.columns) == ["perturbation", "corrector", "S(γ_min)", "predicted γ → 0 floor", "S(γ_min) / SGD's",
                               "slope", "effect"]
    assert list(d.corrector) == ["none", "plain", "second-order", "exact"]  # standard SGD and the de-biasing rows
    shown = CA.summary_shown(table)
    assert shown.message.iloc[0] == "standard SGD" and list(shown.message.iloc[1:3]) == ["forward Top-K"] * 2
    assert list(shown.message[shown.part == "debias"]) == ["forward uniform σ_f = 2"] * 3
    s = CA.summary_table(table)
    assert list(s.data.columns) == ["message", "corrector", "S(γ_min) / SGD's", "/ plain", "slope", "rate exponent p",
                                    "effect"] and len(s.data) == len(table)
    assert set(CA.SUMMARY_COLUMNS) <= set(table.columns) and len(CA.SUMMARY_COLUMNS) == 15


def _prediction_tables(pred_meas, sgd=(1.0e-4, 1.2e-4), settled=True, has_floor=False, diverged=False):
    """A summary table and a scan with one compression case (predicted, measured) and standard SGD's seeds."""
    pred, meas = pred_meas
    table = pd.DataFrame([dict(part="compression", place="forward", perturbation="Top-K", corrector="error feedback",
                               predicted_floor=pred, floor=meas, settled=settled, has_floor=has_floor)])
    rows = [dict(part="baseline", place="none", perturbation="none", corrector="none", gamma=0.003, seed=k,
                 stable_grad_norm=v, diverged=False) for k, v in enumerate(sgd)]
    rows += [dict(part="compression", place="forward", perturbation="Top-K", corrector="error feedback", gamma=0.003,
                  seed=k, stable_grad_norm=np.nan if diverged else meas, diverged=diverged) for k in range(3)]
    return table, pd.DataFrame(rows)


def _claim(name):
    return next(c for c in CLAIMS if c.id == f"correctors.{name}")


@pytest.mark.parametrize("pred_meas, kw, want", [
    ((0.08, 0.081), {}, "holds"),  # visible and inside the band
    ((0.08, 0.04), {}, "fails"),  # visible, measured half the prediction
    ((float("inf"), np.nan), dict(diverged=True), "holds"),  # predicted divergence, every run diverged
    ((float("inf"), 0.001), {}, "fails"),  # predicted divergence, the runs converged
    ((1e-15, 1.1e-4), {}, "holds"),  # below SGD's range, no floor measured
    ((1e-15, 5e-3), dict(has_floor=True), "fails"),  # below SGD's range, but a floor measured
    ((0.08, 0.081), dict(settled=False), "unresolved"),  # not settled: undecided
])
def test_compression_prediction_verdict(pred_meas, kw, want):
    table, scan = _prediction_tables(pred_meas, **kw)
    cases = CA.compression_prediction_cases(table, scan)
    assert cases.sgd_low.iloc[0] == 1.0e-4 and cases.sgd_high.iloc[0] == 1.2e-4
    v = CA.compression_prediction_verdict(_claim, "compression_predicted", cases)
    assert v.outcome == want
    assert ("ratio" in v.evidence) == (np.isfinite(pred_meas[0]) and pred_meas[0] > 1.2e-4)


def test_compression_prediction_verdict_partial_when_cases_disagree():
    t1, s1 = _prediction_tables((0.08, 0.081))
    t2, s2 = _prediction_tables((0.08, 0.02))
    t2["perturbation"] = "Rand-K"
    s2.loc[s2.part == "compression", "perturbation"] = "Rand-K"
    cases = CA.compression_prediction_cases(pd.concat([t1, t2]), pd.concat([s1, s2[s2.part != "baseline"]]))
    v = CA.compression_prediction_verdict(_claim, "compression_predicted", cases)
    assert v.outcome == "partial" and v.key_number == 0.5
