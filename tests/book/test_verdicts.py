"""Verdicts as records: outcomes, claims, the ledger of a chapter."""
import pytest

from fbsgd.book.verdicts import Verdict
from fbsgd.book import verdicts as V


def _claim(i="t.a", source="paper"):
    return V.Claim(i, "t", "Section 1", source, "a claim")


def test_four_outcomes_each_with_a_mark_and_a_meaning():
    assert set(V.OUTCOMES) == {"holds", "fails", "partial", "unresolved"}
    assert len({o.mark for o in V.OUTCOMES.values()}) == 4
    with pytest.raises(ValueError, match="outcome must be one of"):
        V.Verdict(_claim(), None, "r", "e")


@pytest.mark.parametrize("flags,expected", [([True, True], "holds"), ([False, False], "fails"),
                                            ([True, False], "partial"), ([], "unresolved"),
                                            ([True, True, False], "partial"), ([True, False, False], "fails"),
                                            ([True] * 3 + [False] * 16, "fails"), ([True] * 10 + [False] * 9, "partial")])
def test_outcome_of_cases_partial_needs_at_least_half(flags, expected):
    # the rule for "partial" is stated once: at least PARTIAL_SHARE (half) of the cases; fewer is a failure
    assert V.PARTIAL_SHARE == 0.5 and V.outcome_of_cases(flags) == expected
    assert "at least half" in V.OUTCOMES["partial"].meaning and "fewer than half" in V.OUTCOMES["fails"].meaning


def test_share_text():
    assert V.share_text([True, False, False, False]) == "1 of 4 cases (25%)" and V.share_text([]) == "no case"


def test_threshold_and_decider_are_recorded_and_fall_back_on_the_claim():
    c = V.Claim("t.a", "t", "Figure 4", "paper", "a claim", section="Section 7", decided_by="fig-t-4",
                threshold="slope < 0.1")
    v = V.Verdict(c, "holds", "rule", "evidence", 0.05, "slope")
    rec = v.record()
    assert rec["threshold"] == "slope < 0.1" and rec["decided_by"] == "fig-t-4" and rec["section"] == "Section 7"
    assert list(rec) == V.RECORD_COLUMNS
    own = V.Verdict(c, "fails", "rule", "evidence", 0.3, "slope", threshold="slope < 0.2", decided_by="fig-t-5")
    assert own.threshold == "slope < 0.2" and own.decided_by == "fig-t-5"
    html = own._repr_html_()
    assert "<b>Threshold</b>: slope &lt; 0.2" in html and 'href="#fig-t-5"' in html and "the figure that decides it" in html
    assert V.decider_kind("fig-a") == "figure" and V.decider_kind("tab-a") == "table" and V.decider_kind("sec-a") == "section"
    bare = V.Verdict(_claim(), "holds", "rule", "evidence")
    assert bare.threshold == "" and bare.decided_by == "" and bare.record()["section"] == "Beyond the paper"


def test_a_related_works_claim_is_marked_as_such():
    v = V.Verdict(V.Claim("t.r", "t", "Gao et al.", "related", "x"), "holds", "r", "e")
    assert "related work" in v._repr_html_() and "related work" in repr(v) and v.claim.part == "Related work"


def test_a_verdict_needs_rule_and_evidence_and_renders_its_anchor():
    with pytest.raises(ValueError, match="give the rule and the evidence"):
        V.Verdict(_claim(), "holds", "", "x")
    v = V.Verdict(_claim(source="book"), "partial", "slope < 0.1", "slopes 0.05, 0.2", 0.2, "largest slope")
    html = v._repr_html_()
    assert 'id="claim-t-a"' in html and "◐" in html and "book's own probe" in html and "slope &lt; 0.1" in html
    assert v.record()["mark"] == "◐" and v.record()["key_number"] == 0.2


def test_claim_ids_carry_their_chapter_and_sources_are_checked():
    with pytest.raises(ValueError, match="must start with its chapter"):
        V.Claim("other.a", "t", "-", "paper", "x")
    with pytest.raises(ValueError, match="source must be one of"):
        V.Claim("t.a", "t", "-", "mine", "x")


def test_promised_claims_are_unique_and_belong_to_their_chapter():
    from fbsgd.book import claims

    for chapter in claims.chapters():
        ids = [c.id for c in V.promised(chapter)]
        assert ids and len(ids) == len(set(ids))
    with pytest.raises(ValueError, match="no claims are declared"):
        V.promised("no_such_chapter")


def test_ledger_refuses_undeclared_claims_and_writes_a_table(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "promised", lambda chapter: [_claim("t.a"), _claim("t.b")])
    led = V.Ledger("t")
    led.add(Verdict(led.claim("a"), "holds", "rule", "evidence", 1.5, "x"))
    with pytest.raises(KeyError, match="not declared"):
        led.add(Verdict(led.claim("zzz"), "holds", "rule", "evidence"))
    assert led.missing() == ["t.b"]
    path = led.save(tmp_path)
    back = V.load_results(tmp_path)
    assert path.name == "verdicts_t.csv" and list(back.claim_id) == ["t.a"] and back.key_number.iloc[0] == 1.5
    assert back.erratum.iloc[0] == "" and back.threshold.iloc[0] == "" and list(back.columns) == V.RECORD_COLUMNS


def test_clause_picks_the_words_of_the_outcome_and_formats_the_key_number():
    c = V.Claim("ch.x", "ch", "Section 4", "paper", "a claim")
    made = {o: V.Verdict(c, o, "rule", "evidence", -0.5, "slope") for o in V.OUTCOMES}
    assert V.clause(made["holds"], "rises ({k:.2f})", "falls") == "rises (−0.50)"
    assert V.clause(made["fails"], "rises", "falls ({k:.1f})") == "falls (−0.5)"
    assert V.clause(made["partial"], "rises", "falls") == "rises in some of its cases only"
    assert V.clause(made["unresolved"], "it rises", "falls") == "whether it rises is not decided by these runs"
    assert V.clause(None, "it rises", "falls") == "whether it rises was not judged"
    from types import SimpleNamespace

    assert V.by_name(SimpleNamespace(verdicts=[made["holds"]])) == {"x": made["holds"]}


def test_a_fact_names_question_mechanism_place_and_setting_and_is_checked():
    f = V.fact("floor", "float8_e4m3fn stochastic", "forward", "Section 7 logistic regression")
    assert f == "floor | float8_e4m3fn stochastic | forward | Section 7 logistic regression"
    with pytest.raises(ValueError, match="question must be one of"):
        V.fact("ceiling", "m", "forward", "s")
    with pytest.raises(ValueError, match="non-empty"):
        V.fact("floor", "", "forward", "s")
    with pytest.raises(ValueError, match="free of"):
        V.fact("floor", "a | b", "forward", "s")
    with pytest.raises(ValueError, match="finds must map facts"):
        V.Verdict(_claim(), "holds", "r", "e", finds={"not a fact": True})
    with pytest.raises(ValueError, match="finds must map facts"):
        V.Verdict(_claim(), "holds", "r", "e", finds={f: "yes"})


def test_finds_round_trip_through_the_record():
    f1 = V.fact("floor", "a", "forward", "s")
    f2 = V.fact("floor", "b", "backward", "s")
    v = V.Verdict(_claim(), "holds", "r", "e", finds={f2: False, f1: True})
    cell = v.record()["finds"]
    assert cell == f"{f1} = yes; {f2} = no"
    assert V.parse_finds(cell) == {f1: True, f2: False}
    assert V.parse_finds("") == {} and V.parse_finds(float("nan")) == {}
    with pytest.raises(ValueError, match="not a fact"):
        V.parse_finds("floor | a | forward | s = maybe")


def test_contradictions_lists_facts_found_twice_and_whether_they_agree():
    import pandas as pd

    f, g, h = (V.fact("floor", m, "forward", "s") for m in ("a", "b", "c"))
    rows = [V.Verdict(V.Claim("x.one", "x", "r", "book", "t"), "holds", "r", "e", finds={f: True, g: True}).record(),
            V.Verdict(V.Claim("y.two", "y", "r", "book", "t"), "fails", "r", "e", finds={f: False, g: True, h: True}).record(),
            V.Verdict(V.Claim("y.three", "y", "r", "book", "t"), "holds", "r", "e").record()]
    t = V.contradictions(pd.DataFrame(rows))
    assert set(t.fact) == {f, g}  # h is found once: nothing to compare
    assert not t[t.fact == f].agree.any() and t[t.fact == g].agree.all()
    assert V.contradictions(pd.DataFrame(rows).drop(columns="finds")).empty  # results written before finds existed


def test_findings_box_counts_every_outcome_and_lists_each_verdict_with_its_key_number():
    from fbsgd.book.claims.correctors import CLAIMS
    vs = [Verdict(CLAIMS[0], "holds", rule="r", evidence="e", key_number=0.25, key_label="share of *cases*"),
          Verdict(CLAIMS[1], "fails", rule="r", evidence="e", key_number=3.0, key_label="ratio"),
          Verdict(CLAIMS[2], "fails", rule="r", evidence="e"),
          Verdict(CLAIMS[3], "unresolved", rule="r", evidence="e", key_number=float("nan"), key_label="x")]
    text = V.findings_md(vs)
    head, _, *lines = text.split("\n")
    assert head == "**4 claims judged here:** 1 ✔ holds, 2 ✘ does not hold, 1 ? unresolved."
    assert len(lines) == 4 and [ln[2] for ln in lines] == ["✔", "✘", "✘", "?"]
    assert lines[0].endswith("— share of \\*cases\\*: 0.25") and lines[1].endswith("— ratio: 3")
    assert "—" not in lines[2]  # no key number, none shown
    assert CLAIMS[0].text.split()[0] in lines[0] and "(the book's own probe)" in lines[0]
    assert V.findings_md([]) == "No claim is judged here."
    assert V.md_escape("a_b*c`$[x]") == "a\\_b\\*c\\`\\$\\[x\\]"
