"""The setting chapter's verdicts on synthetic depth tables whose answer is known."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.setting import verdicts as A
from fbsgd.book.verdicts import Claim

CLAIM = Claim(id="setting.x", chapter="setting", ref="test", source="book", text="test claim")


def _table(kind, factors, depths=range(2, 8), gap=0.0):
    rows = []
    for s, f in factors.items():
        for N in depths:
            value = 1e-3 * f ** (N - 2)
            rows.append(dict(depth=N, scale=s, kind=kind, accumulative=value * (1 + gap), additive=1e-3, closed_form=value))
    return pd.DataFrame(rows)


def test_growth_factor_is_the_geometric_rate():
    f = A.growth_factors(_table("orthogonal", {0.8: 0.8, 1.5: 1.5}))
    assert f.factor.tolist() == pytest.approx([0.8, 1.5], rel=1e-12)
    assert (f.deviation_from_s < 1e-12).all()


def test_orthogonal_growth_holds_partial_fails():
    exact = A.growth_factors(_table("orthogonal", {0.8: 0.8, 1.2: 1.2}))
    assert A.judge_orthogonal_growth(CLAIM, exact, 1e-3).outcome == "holds"
    half = A.growth_factors(_table("orthogonal", {0.8: 0.8, 1.2: 1.1}))
    assert A.judge_orthogonal_growth(CLAIM, half, 1e-3).outcome == "partial"
    none = A.growth_factors(_table("orthogonal", {0.8: 0.7, 1.2: 1.1}))
    assert A.judge_orthogonal_growth(CLAIM, none, 1e-3).outcome == "fails"


def test_gaussian_factor_words_follow_the_numbers():
    shrinking = A.judge_gaussian_factor(CLAIM, A.growth_factors(_table("gaussian", {1.0: 0.5, 1.5: 0.7})))
    assert shrinking.outcome == "holds" and "shrinks" in shrinking.evidence and "grows" not in shrinking.evidence
    growing = A.judge_gaussian_factor(CLAIM, A.growth_factors(_table("gaussian", {1.5: 1.2, 2.0: 1.6})))
    assert growing.outcome == "holds" and "grows" in growing.evidence
    mixed = A.judge_gaussian_factor(CLAIM, A.growth_factors(_table("gaussian", {1.0: 0.9, 1.5: 1.6})))
    assert mixed.outcome == "partial"
    assert A.judge_gaussian_factor(CLAIM, A.growth_factors(_table("gaussian", {1.0: 1.1}))).outcome == "fails"


def test_closed_form_gap():
    assert A.judge_closed_form(CLAIM, _table("orthogonal", {1.0: 1.0})).outcome == "holds"
    off = A.judge_closed_form(CLAIM, _table("orthogonal", {1.0: 1.0}, gap=1e-6))
    assert off.outcome == "fails" and off.key_number == pytest.approx(1e-6)
