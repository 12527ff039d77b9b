"""The claims ledger and errata on synthetic verdict tables."""
import pandas as pd
import pytest

from fbsgd.book import ledger as L
from fbsgd.book import verdicts as V


def _rows(specs):
    out = []
    for cid, chapter, ref, outcome, source, erratum in specs:
        c = V.Claim(cid, chapter, ref, source, f"claim {cid}")
        out.append(V.Verdict(c, outcome, "rule", "evidence", 1.0, "x", erratum).record())
    return pd.DataFrame(out)


@pytest.mark.parametrize("ref,section", [("Section 7.2.1, Figure 4", "Section 7"), ("Appendix A.3, Figure 9", "Appendix A"),
                                         ("A.2, eq. (55)", "Appendix A"), ("related work: forward gradients", "Related work"),
                                         ("the book's claims ledger", "Book"), ("Section 4, Lemma 1", "Section 4"),
                                         ("Gao et al. (2022), Section 2; Baydin et al. (2022)", "Related work"),
                                         ("Theorem 2, eqs. (23), (33)", "Section 4"), ("Theorems 4–5", "Section 5"),
                                         ("Kong et al., Corollary 1 (PL): bias", "Section 6"),
                                         ("Figure 6; fbsgd.theory.small_step_limits", "Section 7"), ("beyond the paper (Adam)", "Book")])
def test_section_of(ref, section):
    assert L.section_of(ref) == section


def test_a_reference_without_a_section_goes_by_its_chapter():
    assert L.section_of("implicit function theorem", "sgd_derivatives") == "Related work"
    assert L.section_of("implicit function theorem", "setting") == "Book"
    assert set(L.SECTION_ORDER) == set(L.SECTION_TITLES)


def test_ledger_orders_by_section_then_chapter_and_counts_marks():
    t = _rows([("b.x", "b", "Section 7.2.1", "holds", "paper", ""), ("a.y", "a", "Appendix A.2", "fails", "book", "the condition"),
               ("c.z", "c", "Section 4, Lemma 1", "partial", "paper", ""), ("a.w", "a", "Section 4, eq. (21)", "unresolved", "paper", "")])
    led = L.ledger_table(t, ["c", "a", "b"])
    assert list(led.claim_id) == ["c.z", "a.w", "b.x", "a.y"]
    counts = L.mark_counts(led).set_index("outcome")
    assert counts.loc["holds", "claims"] == 1 and counts.loc["does not hold", "book"] == 1 and counts.claims.sum() == 4
    assert list(L.errata_table(led).claim_id) == ["a.y"]
    assert 'href="../chapters/a.html#claim-a-y"' in L.link(led.iloc[3])


def test_completeness_fails_when_a_chapter_is_missing(monkeypatch):
    from fbsgd.book import claims

    monkeypatch.setattr(claims, "chapters", lambda: ["p", "q", "ledger"])
    monkeypatch.setattr(L, "promised", lambda ch: [V.Claim(f"{ch}.{i}", ch, "Section 1", "paper", "c") for i in range(2)])
    claim = V.Claim("ledger.complete", "ledger", "-", "book", "complete")
    full = _rows([(f"{ch}.{i}", ch, "Section 1", "holds", "paper", "") for ch in "pq" for i in range(2)])
    assert L.completeness(full, claim).outcome == "holds"
    part = full[full.chapter == "p"]
    v = L.completeness(part, claim)
    assert v.outcome == "fails" and "q" in v.evidence and v.key_number == 2
    assert L.completeness(pd.DataFrame(columns=V.RECORD_COLUMNS), claim).outcome == "fails"


def test_tables_page_lists_every_csv_with_its_size(tmp_path):
    from fbsgd.book import downloads as Tb

    pd.DataFrame({"a": [1, 2, 3]}).to_csv(tmp_path / "one.csv", index=False)
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "two.csv", index=False)
    t = Tb.listing(tmp_path)
    assert list(t.table) == ["one.csv", "two.csv"] and list(t.rows) == [3, 1] and list(t["columns"]) == [1, 2]
    page = Tb.html_listing(t, tmp_path)
    assert page.count('download="') == 2 and " B</td>" in page


@pytest.mark.parametrize("n, text", [(0, "0 B"), (300, "300 B"), (1024, "1 KiB"), (5 * 2**20, "5.0 MiB")])
def test_sizes_never_print_as_zero_kib(n, text):
    from fbsgd.book import downloads as Tb

    assert Tb.size(n) == text


def test_a_verdict_without_a_key_number_prints_a_dash():
    t = _rows([("a.x", "a", "Section 4", "holds", "paper", "")])
    t["key_number"], t["key_label"] = float("nan"), ""
    assert "<td>—</td>" in L.html_table(t)
