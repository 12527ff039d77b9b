"""fbsgd.studies.real_mechanisms.atlas on synthetic sweep tables: a recovered, a plateau and a diverged cell."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.real_mechanisms import atlas as A
from fbsgd.book.verdicts import Claim


def claim(name):
    return Claim(id=f"t.{name}", chapter="t", ref="-", source="book", text=name)


def table(cells):
    rows = [dict(figure="standard SGD", panel="baseline", gamma=0.1, stable_grad_norm=1.0, diverged=False)]
    for place, rate, norm, div in cells:
        rows.append(dict(figure=f"rate={rate:g}", panel=place, gamma=0.1, stable_grad_norm=norm, diverged=div))
    return pd.DataFrame(rows)


def test_expected_budget_and_boundary_rate():
    assert A.expected_budget(1e-7, 200_000, 2000) == pytest.approx(200_000 * (1 - (1 - 1e-7) ** 16_000))
    r = A.boundary_rate(200_000, 2000, 0.5)
    assert A.expected_budget(r, 200_000, 2000) == pytest.approx(200_000**0.5)
    assert A.budget_exponent("forward") == 0.5 and A.budget_exponent("backward") == 0.5


def test_classes():
    c = A.classify_cells(table([("forward", 1e-9, 1.2, False), ("forward", 1e-5, 3.0, False), ("forward", 1e-3, np.nan, True)]),
                         200_000, 2000)
    assert list(c.cls) == ["recovered", "plateau", "diverged"]
    assert list(c.within_bound) == [True, False, False]


def test_boundary_verdict():
    good = A.classify_cells(table([("forward", 1e-9, 1.2, False), ("forward", 1e-3, np.nan, True)]), 200_000, 2000)
    bad = A.classify_cells(table([("forward", 1e-9, 5.0, False)]), 200_000, 2000)
    none = A.classify_cells(table([("forward", 1e-3, 5.0, False)]), 200_000, 2000)
    assert [A.boundary_verdict(claim, c, "b").outcome for c in (good, bad, none)] == ["holds", "fails", "unresolved"]


def test_fragility_verdict():
    def cells(f_bad, b_bad):
        rows = [("forward", r, 5.0 if r >= f_bad else 1.0, False) for r in (1e-7, 1e-5, 1e-3)]
        rows += [("backward", r, 5.0 if r >= b_bad else 1.0, False) for r in (1e-7, 1e-5, 1e-3)]
        return A.classify_cells(table(rows), 200_000, 2000)
    assert A.fragility_verdict(claim, cells(1e-5, 1e-3), "f").outcome == "holds"
    assert A.fragility_verdict(claim, cells(1e-3, 1e-5), "f").outcome == "fails"
    assert A.fragility_verdict(claim, cells(1e-5, 1e-5), "f").outcome == "unresolved"


def test_boundary_verdict_key_number_counts_cells_inside_and_notes_unbounded_flips():
    c = A.classify_cells(table([("forward", 1e-9, 1.2, False), ("forward", 1e-10, 5.0, False),
                                ("forward", 1e-3, 1.2, False)]), 200_000, 2000)
    v = A.boundary_verdict(claim, c, "b")
    assert v.outcome == "fails" and v.key_number == pytest.approx(0.5)  # 1 of the 2 cells inside
    assert "inside the boundary" in v.key_label and "not a counterexample" in v.evidence
