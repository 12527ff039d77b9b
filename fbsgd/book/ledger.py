"""The claims ledger and the errata: every verdict of the book in one table.

Each chapter writes its verdicts to ``<output_dir>/verdicts_<chapter>.csv``
(:meth:`fbsgd.book.verdicts.Ledger.save`).  The back-matter pages read them all:
:func:`ledger_table` groups them by the part of the paper each claim declares
(:attr:`fbsgd.book.verdicts.Claim.part`, never parsed from the reference),
:func:`section_counts` and :func:`source_counts` count the four outcomes per section and per
source (the paper, the related works, the book's own probes), :func:`html_table` shows each
verdict with its key number, its threshold and links to the verdict and to the figure or table
that decides it (:func:`page_labels`, checked by :func:`links_verdict`), :func:`errata_table`
keeps the paper's claims that did not hold as printed and :func:`omissions_table` the
omissions, misprints and inconsistencies that change no verdict, and :func:`completeness`
judges whether every promised claim was judged.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd

from fbsgd.book import claims as _claims
from fbsgd.book.report import number
from fbsgd.book.verdicts import (OUTCOMES, RECORD_COLUMNS, SECTIONS, SOURCES, Claim, Verdict, anchor, contradictions, decider_kind,
                                 promised)

__all__ = ["SECTION_TITLES", "SECTION_ORDER", "SOURCE_NAMES", "ledger_table", "mark_counts", "section_counts",
           "source_counts", "counts_html", "errata_table", "omissions_table", "completeness", "link", "decider_link",
           "html_table", "toc_chapters", "toc_numbers", "page_labels", "book_labels", "unlinked", "links_verdict", "facts_table", "consistency_verdict",
           "count_sentence"]

SECTION_TITLES = SECTIONS  # the parts of the ledger, in order, with their titles
SECTION_ORDER = list(SECTIONS)
SOURCE_NAMES = {"paper": "the paper", "related": "related work", "book": "the book's own probes"}


def _declared_part(claim_id: str, chapter: str, source: str) -> str:
    """The part a claim declares (for a results table written before claims declared one)."""
    try:
        for c in promised(chapter):
            if c.id == claim_id:
                return c.part
    except ValueError:
        pass
    return "Related work" if source == "related" else "Beyond the paper"


def toc_chapters(toc_path) -> list[str]:
    """The chapter names (file stems) in the order of the book's table of contents."""
    import yaml  # deferred: yaml is needed only by the back-matter pages that read the table of contents

    toc = yaml.safe_load(open(toc_path))
    out = []
    for part in toc.get("parts", []):
        out += [c["file"].split("/")[-1] for c in part.get("chapters", [])]
    return out


def toc_numbers(toc_path) -> dict:
    """Chapter stem → (its chapter number, its source path relative to the book's root), for the
    numbered chapters of the table of contents (numbering runs on across parts, as Sphinx numbers them)."""
    import yaml  # deferred: yaml is needed only by the back-matter pages that read the table of contents

    toc = yaml.safe_load(open(toc_path))
    default = toc.get("defaults", {}).get("numbered", False)
    out, k = {}, 0
    for part in toc.get("parts", []):
        if not part.get("numbered", default):
            continue
        for c in part.get("chapters", []):
            k += 1
            out[c["file"].split("/")[-1]] = (k, c["file"])
    return out


_FENCE = re.compile(r"^(`{3,}|:{3,})\s*(\{([\w:-]+)\})?\s*(\S*)")


def _heading_id(text: str) -> str:
    """The id Sphinx gives a heading (docutils' ``make_id`` of its text, math and markup stripped)."""
    from docutils.nodes import make_id  # deferred: docutils comes with Sphinx; only the ledger page needs it

    plain = re.sub(r"\$([^$]*)\$", r"\1", text)
    plain = re.sub(r"[`*_]|\{[\w:-]+\}", "", plain)
    return make_id(plain)


def page_labels(source: str, chapter_number: int) -> dict:
    """The link targets of one chapter's page (its notebook or MyST text ``source``) and how the book
    numbers them: a figure's ``:name:`` → "Figure 3.2", a target ``(label)=`` or a heading's id →
    "Section 3.4".  Figures and level-2 headings are counted in page order, as Sphinx numbers them."""
    if source.lstrip().startswith("{"):
        nb = json.loads(source)
        text = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    else:
        text = source
    out, figures, sections, pending, fence, options = {}, 0, [0, 0], [], None, None
    for line in text.splitlines():
        if fence is not None:
            if options is not None:
                m = re.match(r"^:name:\s*(\S+)", line)
                if m:
                    out[m.group(1)] = f"Figure {chapter_number}.{figures}"
                if not line.startswith(":"):
                    options = None
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            continue
        m = _FENCE.match(line)
        if m:
            fence = m.group(1)
            if m.group(3) in ("glue:figure", "figure"):
                figures += 1
                options = True
            continue
        m = re.match(r"^\(([^)\s]+)\)=\s*$", line)
        if m:
            pending.append(m.group(1))
            continue
        m = re.match(r"^(#{1,6})\s+(.*\S)\s*$", line)
        if m:
            level = len(m.group(1))
            if level == 1:
                number_text = f"Chapter {chapter_number}"
            elif level == 2:
                sections = [sections[0] + 1, 0]
                number_text = f"Section {chapter_number}.{sections[0]}"
            else:
                sections[1] += 1
                number_text = f"Section {chapter_number}.{sections[0]}.{sections[1]}"
            for label in pending + [_heading_id(m.group(2))]:
                out.setdefault(label, number_text)
            pending = []
    return out


def book_labels(toc_path) -> dict:
    """(chapter, label) → how the book prints it, for every numbered chapter of the table of contents."""
    root = Path(toc_path).parent
    out = {}
    for chapter, (k, file) in toc_numbers(toc_path).items():
        for ext in (".ipynb", ".md"):
            path = root / f"{file}{ext}"
            if path.exists():
                out.update({(chapter, label): text for label, text in page_labels(path.read_text(), k).items()})
                break
    return out


def ledger_table(results: pd.DataFrame, chapter_order: list[str]) -> pd.DataFrame:
    """Every verdict, grouped by the part of the paper its claim declares (then chapter order, then
    the order judged)."""
    t = results.reindex(columns=RECORD_COLUMNS).copy()
    declared = t.section.astype(object).where(t.section.notna(), "").astype(str)
    t["section"] = [s if s in SECTIONS else _declared_part(i, c, src)
                    for s, i, c, src in zip(declared, t.claim_id, t.chapter, t.source)]
    t["section_rank"] = t.section.map({s: i for i, s in enumerate(SECTION_ORDER)})
    t["chapter_rank"] = t.chapter.map({c: i for i, c in enumerate(chapter_order)}).fillna(len(chapter_order))
    t["order"] = range(len(t))
    t = t.sort_values(["section_rank", "chapter_rank", "order"]).drop(columns=["section_rank", "chapter_rank", "order"])
    return t.reset_index(drop=True)


def mark_counts(table: pd.DataFrame) -> pd.DataFrame:
    """How many claims have each outcome, overall and for each source."""
    rows = []
    for outcome, o in OUTCOMES.items():
        sel = table[table.outcome == outcome]
        rows.append(dict(mark=o.mark, outcome=o.words, claims=len(sel),
                         **{src: int((sel.source == src).sum()) for src in SOURCES}))
    return pd.DataFrame(rows)


def _counts(table: pd.DataFrame, by: str, order: list, names: dict, first: str) -> pd.DataFrame:
    rows = []
    for key in order:
        sel = table[table[by] == key]
        if not len(sel):
            continue
        rows.append({first: names.get(key, key), **{o.mark: int((sel.outcome == k).sum()) for k, o in OUTCOMES.items()},
                     "claims": len(sel)})
    total = {first: "all", **{o.mark: int((table.outcome == k).sum()) for k, o in OUTCOMES.items()}, "claims": len(table)}
    return pd.DataFrame(rows + [total], columns=[first, *[o.mark for o in OUTCOMES.values()], "claims"])


def section_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per part of the paper (in the paper's order, then the related works, then the book's own probes):
    how many claims have each outcome; a last row for all."""
    return _counts(table, "section", SECTION_ORDER, {}, "part")


def source_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per source (the paper, related work, the book's own probes): how many claims have each outcome."""
    return _counts(table, "source", list(SOURCES), SOURCE_NAMES, "whose claim")


def counts_html(counts: pd.DataFrame) -> str:
    """A count table as HTML, the "all" row in bold."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in counts.columns)
    rows = "".join("<tr>" + "".join((f"<td><b>{html.escape(str(v))}</b></td>" if r.iloc[0] == "all"
                                     else f"<td>{html.escape(str(v))}</td>") for v in r) + "</tr>"
                   for _, r in counts.iterrows())
    return f'<table class="fbsgd-counts"><tr>{head}</tr>{rows}</table>'


def count_sentence(table: pd.DataFrame) -> str:
    """The ledger's opening sentence: how many claims, whose, and how they came out."""
    n = len(table)
    if not n:
        return "No chapter has written its verdicts yet."
    by = {k: int((table.source == k).sum()) for k in SOURCES}
    marks = ", ".join(f"{int((table.outcome == k).sum())} {_PLURAL[k]} ({o.mark})" for k, o in OUTCOMES.items())
    return (f"This build judged {n} claims: {by['paper']} of the paper, {by['related']} of the related works it "
            f"reproduces and {by['book']} of the book's own probes. Of all {n}: {marks}.")


_PLURAL = {"holds": "hold", "fails": "do not hold", "partial": "hold in part", "unresolved": "are unresolved"}

CHAPTERS_URL = "../chapters/"  # from the back-matter pages (summary/) to the chapters


def _get(row):
    return row.get if hasattr(row, "get") else lambda k, d=None: getattr(row, k, d)


def link(row, prefix: str = CHAPTERS_URL, text: str | None = None) -> str:
    """HTML link from a back-matter page to the place where a claim is judged (its text: the claim's, or ``text``)."""
    get = _get(row)
    words = html.escape(str(get("claim")) if text is None else text)
    return f'<a href="{prefix}{get("chapter")}.html#{anchor(get("claim_id"))}">{words}</a>'


def decider_link(row, labels: dict | None = None, prefix: str = CHAPTERS_URL) -> str:
    """HTML link to the figure or table that decides a verdict ("—" when it names none), its text the
    number the book prints ("Figure 3.2", from ``labels``, see :func:`book_labels`) or else the kind."""
    get = _get(row)
    label = str(get("decided_by", "") or "")
    if not label or label == "nan":
        return "—"
    text = (labels or {}).get((get("chapter"), label)) or decider_kind(label)
    return f'<a href="{prefix}{get("chapter")}.html#{html.escape(label)}">{html.escape(text)}</a>'


def _key(row) -> str:
    """The key number of a verdict with its label, "—" when the verdict has none."""
    label = "" if pd.isna(row.key_label) else str(row.key_label).strip()
    if pd.isna(row.key_number) or not label:
        return "—"
    return f"{html.escape(label)} {number(row.key_number, 4)}"


def _threshold(row) -> str:
    value = getattr(row, "threshold", "")
    return "—" if pd.isna(value) or not str(value).strip() else html.escape(str(value))


_TAG = {"book": " <i>(book)</i>", "related": " <i>(related work)</i>"}


def html_table(table: pd.DataFrame, labels: dict | None = None) -> str:
    """One part of the ledger as an HTML table: mark, claim (linked to its verdict) with its reference,
    key number, threshold, and the figure or table that decides it (linked)."""
    rows = "".join(
        f'<tr><td style="font-size:120%">{r.mark}</td><td>{link(r)}{_TAG.get(r.source, "")}'
        f'<br><span style="font-size:85%;color:#57606a">{html.escape(str(r.ref))}</span></td>'
        f'<td>{_key(r)}</td><td>{_threshold(r)}</td><td>{decider_link(r, labels)}</td></tr>'
        for r in table.itertuples())
    return (f'<table class="fbsgd-ledger"><tr><th></th><th>claim</th><th>key number</th><th>threshold</th>'
            f"<th>decided by</th></tr>{rows}</table>")


def unlinked(table: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """The rows whose ``decided_by`` is empty or names no figure, table or section on their chapter's
    page (``labels``: :func:`book_labels`)."""
    ok = [bool(str(d or "").strip()) and str(d) != "nan" and (c, str(d)) in labels
          for c, d in zip(table.chapter, table.decided_by)]
    return table[[not x for x in ok]]


def links_verdict(table: pd.DataFrame, labels: dict, claim: Claim) -> Verdict:
    """Whether every row of the ledger links to a figure or table (or the section holding it) that
    exists on its chapter's page."""
    bad = unlinked(table, labels)
    chapters = sorted(set(bad.chapter))
    return Verdict(claim, "holds" if not len(bad) and len(table) else "fails",
                   "every verdict names the figure or table that decides it, and that label exists on its chapter's page",
                   (f"all {len(table)} rows link to the figure or table that decides them" if not len(bad) else
                    f"{len(table) - len(bad)} of {len(table)} rows link to the figure or table that decides them; "
                    f"{len(bad)} do not, in the chapters {', '.join(c.replace('_', ' ') for c in chapters)}"),
                   len(bad), "rows without a link to what decides them", threshold="0 rows without a link")


def facts_table(results: pd.DataFrame) -> pd.DataFrame:
    """Every fact about a mechanism that two or more verdicts found (:func:`fbsgd.book.verdicts.contradictions`),
    one row per fact: the fact, the verdicts that found it (claim ids), what each found ("yes"/"no" in
    the same order) and whether they agree."""
    t = contradictions(results)
    rows = [dict(fact=f, verdicts=", ".join(g.claim_id), found=", ".join("yes" if v else "no" for v in g.found),
                 agree=bool(g.agree.iloc[0])) for f, g in t.groupby("fact", sort=True)]
    return pd.DataFrame(rows, columns=["fact", "verdicts", "found", "agree"])


def consistency_verdict(results: pd.DataFrame, claim: Claim) -> Verdict:
    """No two verdicts find the same fact differently: holds when at least one fact is found by two or
    more verdicts and every such fact is found alike; fails when one is found differently; unresolved when
    no fact is found twice (nothing to compare)."""
    facts = facts_table(results)
    rule = ("every fact about a mechanism (e.g. whether float8 stochastic rounding of the forward message leaves a floor "
            "on Section 7's problem) that two or more verdicts record is recorded alike by all of them; unresolved "
            "when no fact is recorded by two verdicts")
    if not len(facts):
        return Verdict(claim, "unresolved", rule, "no fact about a mechanism was recorded by two verdicts in this build",
                       0, "facts found differently", threshold="0 facts found differently")
    bad = facts[~facts.agree]
    n = len(facts)
    ev = (f"{n} fact{'s are' if n != 1 else ' is'} recorded by two or more verdicts; "
          + ((f"all {n} alike" if n != 1 else "alike") if not len(bad) else
             f"{len(bad)} differently: " + "; ".join(f"{r.fact} ({r.verdicts}: {r.found})" for r in bad.itertuples())))
    return Verdict(claim, "fails" if len(bad) else "holds", rule, ev, len(bad), "facts found differently",
                   threshold="0 facts found differently")


def errata_table(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims that did not hold as printed: verdicts of claims of the paper that do not hold
    (✘), and those that hold in part (◐) and record what is off (``erratum``)."""
    err = table.erratum.fillna("").astype(str).str.strip() != ""
    t = table[(table.source == "paper") & ((table.outcome == "fails") | ((table.outcome == "partial") & err))]
    return t.reset_index(drop=True)


def omissions_table(table: pd.DataFrame) -> pd.DataFrame:
    """What the paper leaves out or prints inconsistently without a claim failing: verdicts that record
    an erratum but are not in :func:`errata_table` (a misprinted constant whose bound still holds, a
    choice the paper does not state, two printed values that disagree)."""
    err = table.erratum.fillna("").astype(str).str.strip() != ""
    listed = set(errata_table(table).claim_id)
    return table[err & ~table.claim_id.isin(listed)].reset_index(drop=True)


def completeness(results: pd.DataFrame, claim: Claim) -> Verdict:
    """Whether the results hold a verdict for every promised claim of every chapter
    (the back-matter pages, which judge only this, excepted)."""
    promised_ids = {c.id: c.chapter for ch in _claims.chapters() if ch not in ("ledger", "errata") for c in promised(ch)}
    judged = set(results.claim_id) if len(results) else set()
    missing = sorted(set(promised_ids) - judged)
    chapters_missing = sorted({promised_ids[m] for m in missing})
    outcome = "holds" if not missing else "fails"
    evidence = (f"{len(promised_ids) - len(missing)} of the {len(promised_ids)} claims the chapters promise to judge "
                "were judged in this build"
                + (f"; the chapters {', '.join(c.replace('_', ' ') for c in chapters_missing)} have not written their "
                   "verdicts (run them first, "
                   "into the same folder of results)" if missing else ""))
    return Verdict(claim, outcome, "every claim a chapter declares has a verdict written by that chapter",
                   evidence, len(missing), "claims not judged", threshold="0 claims not judged")
