"""fbsgd.studies.real_mechanisms.atlas on synthetic sweep tables: recovered, plateau and diverged cells,
and cells whose seeds do not agree often enough to be decided ("?")."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.real_mechanisms import atlas as A
from fbsgd.book.verdicts import Claim


def claim(name):
    return Claim(id=f"t.{name}", chapter="t", ref="-", source="book", text=name)


def table(cells, seeds=A.ATLAS_MIN_SEEDS):
    """Every cell (place, rate, norm, diverged) with ``seeds`` identical seeds, or per-seed lists of norms
    and diverged flags; standard SGD's stable norm is 1 at every seed."""
    rows = [dict(figure="standard SGD", panel="baseline", gamma=0.1, seed=s, stable_grad_norm=1.0, diverged=False)
            for s in range(seeds)]
    for place, rate, norm, div in cells:
        norms = norm if isinstance(norm, list) else [norm] * seeds
        divs = div if isinstance(div, list) else [div] * len(norms)
        for s, (n, d) in enumerate(zip(norms, divs)):
            rows.append(dict(figure=f"rate={rate:g}", panel=place, gamma=0.1, seed=s, stable_grad_norm=n, diverged=d))
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
    assert list(c.agree) == [A.ATLAS_MIN_SEEDS] * 3


def test_a_cell_with_too_few_agreeing_seeds_is_undecided():
    """Four seeds: one diverging seed no longer decides the mark; 2 against 2 is undecided; 3 of 4 decide."""
    cells = [("forward", 1e-9, [1.0, 1.1, 1.2, np.nan], [False, False, False, True]),  # 3 recovered, 1 diverged
             ("forward", 1e-8, [1.0, 1.1, np.nan, np.nan], [False, False, True, True]),  # 2 against 2
             ("forward", 1e-7, [1.0, 3.0, 4.0, np.nan], [False, False, False, True])]  # 1, 2, 1: no class has 3
    c = A.classify_cells(table(cells, seeds=4), 200_000, 2000)
    assert list(c.cls) == ["recovered", A.UNDECIDED, A.UNDECIDED]
    assert list(c.agree) == [3, 2, 2]
    assert c.seed_classes.iloc[0] == "recovered, recovered, recovered, diverged"
    assert A.classify_cells(table(cells, seeds=4), 200_000, 2000, min_seeds=2).cls.iloc[1] in ("recovered", "diverged")
    with pytest.raises(ValueError, match="min_seeds must be an integer >= 1"):
        A.classify_cells(table(cells, seeds=4), 200_000, 2000, min_seeds=0)


def test_boundary_verdict():
    good = A.classify_cells(table([("forward", 1e-9, 1.2, False), ("forward", 1e-3, np.nan, True)]), 200_000, 2000)
    bad = A.classify_cells(table([("forward", 1e-9, 5.0, False)]), 200_000, 2000)
    none = A.classify_cells(table([("forward", 1e-3, 5.0, False)]), 200_000, 2000)
    assert [A.boundary_verdict(claim, c, "b").outcome for c in (good, bad, none)] == ["holds", "fails", "unresolved"]


def test_boundary_verdict_counts_only_decided_cells():
    # inside the boundary: one decided recovered cell and one undecided (2 of 4 diverge)
    c = A.classify_cells(table([("forward", 1e-9, 1.0, False),
                                ("forward", 1e-10, [1.0, 1.0, np.nan, np.nan], [False, False, True, True])], seeds=4),
                         200_000, 2000)
    v = A.boundary_verdict(claim, c, "b")
    assert v.outcome == "holds" and "1 of 1 decided cells recovered, 1 undecided" in v.evidence
    # only undecided cells inside: unresolved
    c = A.classify_cells(table([("forward", 1e-10, [1.0, 1.0, np.nan, np.nan], [False, False, True, True])], seeds=4),
                         200_000, 2000)
    assert A.boundary_verdict(claim, c, "b").outcome == "unresolved"


def test_fragility_verdict():
    def cells(f_bad, b_bad):
        rows = [("forward", r, 5.0 if r >= f_bad else 1.0, False) for r in (1e-7, 1e-5, 1e-3)]
        rows += [("backward", r, 5.0 if r >= b_bad else 1.0, False) for r in (1e-7, 1e-5, 1e-3)]
        return A.classify_cells(table(rows), 200_000, 2000)
    assert A.fragility_verdict(claim, cells(1e-5, 1e-3), "f").outcome == "holds"
    assert A.fragility_verdict(claim, cells(1e-3, 1e-5), "f").outcome == "fails"
    assert A.fragility_verdict(claim, cells(1e-5, 1e-5), "f").outcome == "unresolved"


def test_fragility_verdict_leaves_out_a_step_size_an_undecided_cell_could_reorder():
    """Forward fails from 1e-5 (decided), backward from 1e-3; an undecided backward cell at 1e-7 could be a
    backward failure below 1e-5: that γ is undecided, and with no other γ the verdict is unresolved."""
    split = ([1.0, 1.0, 5.0, 5.0], [False] * 4)
    rows = [("forward", 1e-7, 1.0, False), ("forward", 1e-5, 5.0, False), ("forward", 1e-3, 5.0, False),
            ("backward", 1e-7, *split), ("backward", 1e-5, 1.0, False), ("backward", 1e-3, 5.0, False)]
    c = A.classify_cells(table(rows, seeds=4), 200_000, 2000)
    v = A.fragility_verdict(claim, c, "f")
    assert v.outcome == "unresolved" and "undecided" in v.evidence and "backward 1e-07–0.001" in v.evidence
    # the same undecided cell above the forward failure cannot reorder them: decided, forward lower
    rows[3] = ("backward", 1e-3, *split)
    rows[5] = ("backward", 1e-7, 1.0, False)
    c = A.classify_cells(table(rows, seeds=4), 200_000, 2000)
    assert A.fragility_verdict(claim, c, "f").outcome == "holds"


def test_boundary_verdict_key_number_counts_cells_inside_and_notes_unbounded_flips():
    c = A.classify_cells(table([("forward", 1e-9, 1.2, False), ("forward", 1e-10, 5.0, False),
                                ("forward", 1e-3, 1.2, False)]), 200_000, 2000)
    v = A.boundary_verdict(claim, c, "b")
    assert v.outcome == "fails" and v.key_number == pytest.approx(0.5)  # 1 of the 2 cells inside
    assert "inside the boundary" in v.key_label and "not a counterexample" in v.evidence


def test_boundary_verdict_counts_only_cells_in_table1s_step_size_regime():
    """Table 1 assumes γ = c/√T: a cell at a larger step size is not counted, and the evidence says so."""
    rows = table([("forward", 1e-9, 1.2, False), ("forward", 1e-10, 5.0, False)])
    big = rows.assign(gamma=1.0)
    c = A.classify_cells(pd.concat([rows.assign(gamma=0.01), big]), 200_000, 2000)
    gmax = A.table1_gamma_max(200_000)
    assert gmax == pytest.approx(10 / np.sqrt(200_000))
    v_all, v_regime = A.boundary_verdict(claim, c, "b"), A.boundary_verdict(claim, c, "b", gmax)
    assert "outside Table 1's step-size regime" in v_regime.evidence and "2 cells" in v_regime.evidence
    assert v_regime.key_number == pytest.approx(0.5) and v_all.key_number == pytest.approx(0.5)
    only_big = A.classify_cells(big, 200_000, 2000)
    assert A.boundary_verdict(claim, only_big, "b", gmax).outcome == "unresolved"
