"""The Appendix A verdicts on synthetic tables (and on the closed forms) whose outcome is known."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.counterexamples import verdicts as CV
from fbsgd.studies.counterexamples import study as C
from fbsgd.book.verdicts import Claim

CLAIM = Claim(id="counterexamples.x", chapter="counterexamples", ref="test", source="book", text="test claim")


def _a1(mc_offset=0.0, sizes=(0.05, 0.1, 0.2, 0.4, 1.0)):
    rows = []
    for law, f in (("two-point", C.two_point_slope_bias), ("uniform", C.uniform_slope_bias)):
        for a in sizes:
            exact = float(f(a))
            rows.append(dict(law=law, a=a, closed_form=exact, monte_carlo=exact + mc_offset, standard_error=1e-4))
    t = pd.DataFrame(rows)
    t["abs_error"] = (t.monte_carlo - t.closed_form).abs()
    return t


def test_a1_bias_and_its_quadratic_order():
    assert CV.a1_bias(CLAIM, _a1()).outcome == "holds"
    assert CV.a1_bias(CLAIM, _a1(mc_offset=1e-2)).outcome in ("partial", "fails")
    assert CV.a1_quadratic(CLAIM, _a1()).outcome == "holds"
    assert CV.a1_quadratic(CLAIM, _a1(sizes=(0.2, 3.0))).outcome == "unresolved"
    linear = _a1()
    linear.loc[linear.law == "uniform", "monte_carlo"] = -linear.a[linear.law == "uniform"] / 10  # |bias| ∝ a
    assert CV.a1_quadratic(CLAIM, linear).outcome == "partial"


def test_a2_paper_range_and_wider_range():
    a2, _ = C.a2_table(3.0, 1.0, [0.1, 0.3, 0.75, 1.0, 1.05], 200)
    assert CV.a2_limit(CLAIM, a2, 3.0, 1.0).outcome == "holds"
    assert CV.a2_wider_range(CLAIM, a2, 3.0, 1.0).outcome == "holds"
    only_small, _ = C.a2_table(3.0, 1.0, [0.1, 0.3], 200)
    assert CV.a2_wider_range(CLAIM, only_small, 3.0, 1.0).outcome == "unresolved"
    broken = a2.copy()
    broken.loc[broken.gamma == 0.3, "distance_to_minus_delta"] = 1.0  # a run that did not approach −δ
    assert CV.a2_limit(CLAIM, broken, 3.0, 1.0).outcome == "partial"


def _runs(plain_radius, plain_unc, mom_unc="converges", top1="diverges"):
    return pd.DataFrame([dict(setting="plain", gamma=0.1, beta=0.0, radius_uncompressed=plain_radius, final_uncompressed=1.0,
                              uncompressed=plain_unc, final_top1=1e9, top1=top1),
                         dict(setting="momentum", gamma=0.05, beta=0.9, radius_uncompressed=0.95, final_uncompressed=1e-9,
                              uncompressed=mom_unc, final_top1=1e9, top1="diverges")])


def test_a3_verdicts():
    bad = CV.a3_plain_uncompressed(CLAIM, _runs(48.0, "diverges"), 1e-6)
    assert bad.outcome == "fails" and "48.0" in bad.erratum and "2/490" in bad.erratum
    good = CV.a3_plain_uncompressed(CLAIM, _runs(0.5, "converges"), 1e-6)
    assert good.outcome == "holds" and not good.erratum
    assert CV.a3_plain_uncompressed(CLAIM, _runs(0.5, "diverges"), 1e-6).outcome == "unresolved"
    assert CV.a3_top1_fails(CLAIM, _runs(48.0, "diverges")).outcome == "holds"
    assert CV.a3_top1_fails(CLAIM, _runs(48.0, "diverges", top1="converges")).outcome == "partial"
    assert CV.a3_momentum_contrast(CLAIM, _runs(48.0, "diverges"), 1e-6).outcome == "holds"
    assert CV.a3_momentum_contrast(CLAIM, _runs(48.0, "diverges", mom_unc="diverges"), 1e-6).outcome == "partial"


def test_a3_scan_rule():
    scan = pd.DataFrame(dict(setting=["m"] * 4, gamma=[0.01, 0.02, 0.03, 0.04],
                             uncompressed=["converges", "converges", "converges", "diverges"],
                             top1=["converges", "diverges", "converges", "diverges"]))
    v = CV.a3_step_size_scan(CLAIM, scan)
    # Top-1 diverges at 1 of the 3 stable step sizes: the claim fails in most of its cases, so it does not hold
    assert v.outcome == "fails" and "do not form an interval" in v.evidence and "1 of 3 cases (33%)" in v.evidence
    assert v.key_number == pytest.approx(1 / 3) and v.threshold.startswith("1 (every case)")
    scan.loc[0, "top1"] = "diverges"  # 2 of 3: at least half, in part
    assert CV.a3_step_size_scan(CLAIM, scan).outcome == "partial"
    scan["top1"] = "diverges"
    assert CV.a3_step_size_scan(CLAIM, scan).outcome == "holds"
    scan["top1"] = "converges"
    assert CV.a3_step_size_scan(CLAIM, scan).outcome == "fails"


def test_worked_step_matches_the_appendix():
    v = CV.a3_worked_step(CLAIM, C.worked_first_step(2.0), 2.0)
    assert v.outcome == "holds" and v.key_number == 0.0 and v.threshold


def test_every_appendix_a_verdict_has_a_key_number():
    assert CV.a3_top1_fails(CLAIM, _runs(48.0, "diverges")).key_number == 2
    assert CV.a3_top1_fails(CLAIM, _runs(48.0, "diverges", top1="converges")).key_number == 1
    a2, _ = C.a2_table(3.0, 1.0, [0.1, 0.75, 1.05], 200)
    wider = CV.a2_wider_range(CLAIM, a2, 3.0, 1.0)
    assert wider.key_number == 0 and wider.threshold == "0 runs"
    assert CV.a1_quadratic(CLAIM, _a1(sizes=(0.2, 3.0))).key_number == 2


def test_evidence_prints_values_not_reprs():
    worked = CV.a3_worked_step(CLAIM, C.worked_first_step(2.0), 2.0).evidence
    assert "y₁ = (\u22124, 8)" in worked and "u₁ = (20, 20)" in worked and "[" not in worked
    t = _a1()
    ev = CV.a1_bias(CLAIM, t).evidence
    assert f"at {len(t)} of {len(t)} pairs" in ev
    top = float(C.two_point_slope_bias(1.0)) + 0.25  # σ′(1) for the largest a of the table
    assert f"to {top:.3g} (two-point law)" in ev
