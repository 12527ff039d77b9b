"""The claims ledger and errata on synthetic verdict tables."""
import pandas as pd
import pytest

from fbsgd.book import ledger as L
from fbsgd.book import verdicts as V


def _rows(specs):
    out = []
    for cid, chapter, section, outcome, source, erratum in specs:
        c = V.Claim(cid, chapter, "ref", source, f"claim {cid}", section=section, decided_by="fig-x")
        out.append(V.Verdict(c, outcome, "rule", "evidence", 1.0, "x", erratum, threshold="< 2").record())
    return pd.DataFrame(out)


def test_the_part_of_a_claim_is_declared_never_parsed():
    # the reference names Section 6 and Appendix A, the declared section decides
    c = V.Claim("a.x", "a", "Remark 3's asymmetry; momentum appears only in Appendix A.3", "book", "x", section="Section 7")
    assert c.part == "Section 7"
    assert V.Claim("a.y", "a", "Section 6.2, Table 1", "book", "y").part == "Beyond the paper"
    assert V.Claim("a.z", "a", "Section 2", "related", "z").part == "Related work"
    with pytest.raises(ValueError, match="section must be one of"):
        V.Claim("a.w", "a", "-", "paper", "w", section="Section 6.1")
    assert L.SECTION_ORDER == list(V.SECTIONS) and L.SECTION_ORDER[-2:] == ["Related work", "Beyond the paper"]


def test_every_declared_claim_of_the_edited_chapters_has_a_section_and_a_decider():
    from fbsgd.book import claims

    for chapter in claims.chapters():
        if chapter in ("ledger", "errata"):  # back matter: none
            continue
        for c in V.promised(chapter):
            assert c.section in V.SECTIONS and c.decided_by, c.id
            if c.source == "related" or chapter in ("forward_gradients", "sgd_derivatives"):
                assert c.part == "Related work", c.id


def test_the_related_works_are_not_the_papers_claims():
    from fbsgd.book import claims

    for chapter in ("forward_gradients", "sgd_derivatives"):
        assert {c.source for c in V.promised(chapter)} == {"related", "book"}
    assert all(c.source != "related" for ch in claims.chapters() if ch not in ("forward_gradients", "sgd_derivatives")
               for c in V.promised(ch))


def test_ledger_orders_by_declared_section_then_chapter_and_counts_marks():
    t = _rows([("b.x", "b", "Section 7", "holds", "paper", ""), ("a.y", "a", "Appendix A", "fails", "book", "the condition"),
               ("c.z", "c", "Section 4", "partial", "paper", ""), ("a.w", "a", "Section 4", "unresolved", "paper", ""),
               ("d.v", "d", "Related work", "fails", "related", ""), ("d.u", "d", "", "holds", "book", "")])
    led = L.ledger_table(t, ["c", "a", "b", "d"])
    assert list(led.claim_id) == ["c.z", "a.w", "b.x", "a.y", "d.v", "d.u"]
    assert list(led.section) == ["Section 4", "Section 4", "Section 7", "Appendix A", "Related work", "Beyond the paper"]
    counts = L.mark_counts(led).set_index("outcome")
    assert counts.loc["holds", "claims"] == 2 and counts.loc["does not hold", "book"] == 1 and counts.claims.sum() == 6
    assert counts.loc["does not hold", "related"] == 1 and counts.loc["does not hold", "paper"] == 0
    by_section = L.section_counts(led).set_index("part")
    assert list(by_section.index) == ["Section 4", "Section 7", "Appendix A", "Related work", "Beyond the paper", "all"]
    assert by_section.loc["Section 4", "◐"] == 1 and by_section.loc["Section 4", "?"] == 1
    assert by_section.loc["all", "claims"] == 6 and by_section.loc["all", "✘"] == 2
    by_source = L.source_counts(led).set_index("whose claim")
    assert by_source.loc["the paper", "claims"] == 3 and by_source.loc["related work", "✘"] == 1
    assert by_source.loc["the book's own probes", "claims"] == 2
    assert "6 claims: 3 of the paper, 1 of the related works" in L.count_sentence(led)
    assert 'href="../chapters/a.html#claim-a-y"' in L.link(led.iloc[3])


def test_a_results_table_without_sections_takes_the_declared_ones():
    from fbsgd.book.claims import counterexamples

    c = counterexamples.CLAIMS[0]
    t = pd.DataFrame([V.Verdict(c, "holds", "r", "e", 1.0, "k").record()]).drop(columns=["section"])
    assert L.ledger_table(t, []).section.iloc[0] == "Appendix A"


def test_errata_are_the_papers_claims_that_did_not_hold_and_omissions_come_apart():
    t = _rows([("a.fail", "a", "Section 4", "fails", "paper", ""),            # did not hold, no erratum text: listed
               ("a.part", "a", "Section 4", "partial", "paper", "off by 2"),  # holds in part, says what is off: listed
               ("a.half", "a", "Section 4", "partial", "paper", ""),          # holds in part, nothing printed is off
               ("a.ok", "a", "Section 4", "holds", "paper", "factor 2 dropped"),  # a misprint whose bound holds: omission
               ("a.book", "a", "Section 7", "fails", "book", "regularizer not given"),  # the book's probe: omission
               ("a.rel", "a", "Related work", "fails", "related", "")])       # a related work's claim: not an erratum
    led = L.ledger_table(t, ["a"])
    assert list(L.errata_table(led).claim_id) == ["a.fail", "a.part"]
    assert "✔" not in set(L.errata_table(led).mark)
    assert list(L.omissions_table(led).claim_id) == ["a.ok", "a.book"]


_NB = {"cells": [
    {"cell_type": "markdown", "source": ["(chap-t)=\n", "# Title $\\delta$\n", "\n", "## First part\n"]},
    {"cell_type": "code", "source": ["# not a heading\n"]},
    {"cell_type": "markdown", "source": ["```{glue:figure} fig-one\n", ":name: fig-one\n", "\n", "## not a heading\n", "```\n",
                                         "\n", "(sec-two)=\n", "## Second: the table\n", "\n",
                                         "```{glue:figure} fig-two\n", ":name: fig-two\n", "```\n", "### Deeper\n"]}]}


def test_page_labels_number_figures_and_sections_as_the_book_does():
    import json

    labels = L.page_labels(json.dumps(_NB), 3)
    assert labels["fig-one"] == "Figure 3.1" and labels["fig-two"] == "Figure 3.2"
    assert labels["sec-two"] == "Section 3.2" and labels["first-part"] == "Section 3.1"
    assert labels["second-the-table"] == "Section 3.2" and labels["deeper"] == "Section 3.2.1"
    assert labels["chap-t"] == "Chapter 3" and "not-a-heading" not in labels


def test_book_labels_read_the_table_of_contents(tmp_path):
    import json

    (tmp_path / "ch").mkdir()
    (tmp_path / "ch" / "a.ipynb").write_text(json.dumps(_NB))
    (tmp_path / "ch" / "b.md").write_text("# B\n\n## Only part\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: ch/intro\ndefaults:\n  numbered: true\nparts:\n"
                                       "  - caption: one\n    chapters:\n      - file: ch/a\n"
                                       "  - caption: two\n    chapters:\n      - file: ch/b\n"
                                       "  - caption: back\n    numbered: false\n    chapters:\n      - file: ch/c\n")
    labels = L.book_labels(tmp_path / "_toc.yml")
    assert labels[("a", "fig-two")] == "Figure 1.2" and labels[("b", "only-part")] == "Section 2.1"
    assert not any(ch == "c" for ch, _ in labels)


def test_every_row_links_to_what_decides_it_and_the_check_fails_when_one_does_not():
    labels = {("a", "fig-x"): "Figure 1.1", ("b", "fig-x"): "Figure 2.1"}
    t = L.ledger_table(_rows([("a.x", "a", "Section 4", "holds", "paper", ""), ("b.y", "b", "Section 7", "fails", "paper", "")]),
                       ["a", "b"])
    claim = V.Claim("ledger.linked", "ledger", "-", "book", "linked")
    assert L.links_verdict(t, labels, claim).outcome == "holds" and L.unlinked(t, labels).empty
    page = L.html_table(t, labels)
    assert page.count('href="../chapters/a.html#fig-x">Figure 1.1</a>') == 1 and "&lt; 2" in page
    missing = t.copy()
    missing.loc[1, "decided_by"] = ""  # a verdict that names no figure or table
    v = L.links_verdict(missing, labels, claim)
    assert v.outcome == "fails" and v.key_number == 1 and "b" in v.evidence
    wrong = t.copy()
    wrong.loc[0, "decided_by"] = "fig-nowhere"  # a label that is not on the chapter's page
    assert list(L.unlinked(wrong, labels).claim_id) == ["a.x"]
    assert L.links_verdict(wrong, labels, claim).outcome == "fails"
    assert L.decider_link(missing.iloc[1], labels) == "—"


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
    t["key_number"], t["key_label"], t["threshold"] = float("nan"), "", ""
    assert L.html_table(t).count("<td>—</td>") == 2


def _found(cid, chapter, finds):
    return V.Verdict(V.Claim(cid, chapter, "r", "book", "t"), "holds", "r", "e", finds=finds).record()


@pytest.mark.parametrize("second,outcome", [(False, "fails"), (True, "holds"), (None, "unresolved")])
def test_consistency_fails_on_a_fact_two_chapters_find_differently(second, outcome):
    f = V.fact("floor", "float8_e4m3fn stochastic", "forward", "Section 7 logistic regression")
    rows = [_found("real_mechanisms.a", "real_mechanisms", {f: True}),
            _found("correctors.b", "correctors", {} if second is None else {f: second})]
    claim = V.Claim("ledger.consistent", "ledger", "r", "book", "t")
    v = L.consistency_verdict(pd.DataFrame(rows), claim)
    assert v.outcome == outcome
    facts = L.facts_table(pd.DataFrame(rows))
    assert len(facts) == (0 if second is None else 1)
    if outcome == "fails":
        assert v.key_number == 1 and "(correctors.b, real_mechanisms.a: no, yes)" in v.evidence
