"""The claims ledger and the errata: every verdict of the book in one table.

Each chapter writes its verdicts to ``<output_dir>/verdicts_<chapter>.csv``
(:meth:`fbsgd.book.verdicts.Ledger.save`).  The back-matter pages read them all:
:func:`ledger_table` orders them by the paper's sections, :func:`mark_counts`
counts the four outcomes, :func:`errata_table` keeps the places where the
paper's text, a constant or a condition did not hold as printed, and
:func:`completeness` judges whether every promised claim was judged.
"""
from __future__ import annotations

import html
import re

import pandas as pd

from fbsgd.book import claims as _claims
from fbsgd.book.report import number
from fbsgd.book.verdicts import OUTCOMES, RECORD_COLUMNS, Claim, Verdict, anchor, promised

__all__ = ["section_of", "SECTION_TITLES", "ledger_table", "mark_counts", "errata_table", "completeness", "link", "html_table",
           "toc_chapters", "SECTION_ORDER"]

# the paper's order: sections first, then the appendix, then related work and the book's own topics
SECTION_TITLES = {"Section 1": "Section 1 — introduction and set-up", "Section 2": "Section 2 — related works",
                  "Section 3": "Section 3 — preliminaries", "Section 4": "Section 4 — error propagation",
                  "Section 5": "Section 5 — convergence rates", "Section 6": "Section 6 — perturbation budgets",
                  "Section 7": "Section 7 — experiments", "Section 8": "Section 8 — open questions",
                  "Appendix A": "Appendix A — counterexamples", "Related work": "Claims about the related works",
                  "Book": "The book's own claims"}
SECTION_ORDER = ["Section 1", "Section 2", "Section 3", "Section 4", "Section 5", "Section 6", "Section 7",
                 "Section 8", "Appendix A", "Related work", "Book"]


RELATED_WORKS = r"Gao et al|Iutzeler|Baydin"  # claims about another work than the paper
RELATED_CHAPTERS = ("forward_gradients", "sgd_derivatives")  # the book's reading of the related works

# where the paper's numbered items sit: (pattern, {number: section}); a number not listed falls through
_ITEMS = (
    (r"Theorems?\s+(\d)", {1: "Section 4", 2: "Section 4", 3: "Section 5", 4: "Section 5", 5: "Section 5"}),
    (r"Lemmas?\s+(\d)", {1: "Section 4", 2: "Section 4"}),
    (r"Corollar(?:y|ies)\s+(\d)", {1: "Section 6", 2: "Section 6", 3: "Section 6", 4: "Section 6"}),
    (r"Remarks?\s+(\d)", {1: "Section 5", 2: "Section 5", 3: "Section 6", 4: "Section 6", 5: "Section 6"}),
    (r"Table\s+(1)\b", {1: "Section 6"}),
    (r"Figures?\s+(\d)", {1: "Section 1", 2: "Section 6", 3: "Section 7", 4: "Section 7", 5: "Section 7",
                            6: "Section 7", 7: "Section 7", 8: "Section 7", 9: "Appendix A"}),
    (r"eqs?\.\s*\((\d+)\)", {**{n: "Section 1" for n in range(1, 7)}, **{n: "Section 4" for n in range(13, 34)},
                              **{n: "Section 5" for n in range(34, 40)}, **{n: "Section 6" for n in range(40, 51)}}),
)


def _part_section(part: str) -> str | None:
    """The section one clause of a reference names, if it names one."""
    if re.search(RELATED_WORKS, part):
        return "Related work"
    m = re.search(r"Section\s+(\d+)", part)
    if m:
        return f"Section {m.group(1)}"
    if re.search(r"Appendix\s+A|\bA\.\d", part):
        return "Appendix A"
    for pattern, where in _ITEMS:
        m = re.search(pattern, part)
        if m and int(m.group(1)) in where:
            return where[int(m.group(1))]
    return None


def section_of(ref: str, chapter: str | None = None) -> str:
    """The part of the paper a claim's reference belongs to, from the first clause that names one:
    "Section 7.2.1, Figure 4" → "Section 7", "Theorem 2, eq. (23)" → "Section 4",
    "Gao et al. (2022), Section 2" → "Related work" (a claim about another work).  A reference
    that names none is "Related work" in the chapters on the related works, else "Book"."""
    for part in re.split(r"[;,]", str(ref)):
        found = _part_section(part)
        if found:
            return found
    if chapter in RELATED_CHAPTERS or re.search(r"related|forward gradient|derivative", str(ref), re.I):
        return "Related work"
    return "Book"


def toc_chapters(toc_path) -> list[str]:
    """The chapter names (file stems) in the order of the book's table of contents."""
    import yaml

    toc = yaml.safe_load(open(toc_path))
    out = []
    for part in toc.get("parts", []):
        out += [c["file"].split("/")[-1] for c in part.get("chapters", [])]
    return out


def html_table(table: pd.DataFrame) -> str:
    """One section of the ledger as an HTML table: mark, claim (linked), whose claim, key number."""
    rows = "".join(
        f'<tr><td style="font-size:120%">{r.mark}</td><td>{link(r)}'
        f'{" <i>(book)</i>" if r.source == "book" else ""}</td><td>{html.escape(str(r.ref))}</td>'
        f'<td>{_key(r)}</td></tr>'
        for r in table.itertuples())
    return (f'<table class="fbsgd-ledger"><tr><th></th><th>claim</th><th>reference</th><th>key number</th></tr>'
            f"{rows}</table>")


def _key(row) -> str:
    """The key number of a verdict with its label, "—" when the verdict has none."""
    if pd.isna(row.key_number) or not str(row.key_label if not pd.isna(row.key_label) else "").strip():
        return "—"
    return f"{html.escape(str(row.key_label))} {number(row.key_number, 4)}"


CHAPTERS_URL = "../chapters/"  # from the back-matter pages (summary/) to the chapters


def link(row, prefix: str = CHAPTERS_URL) -> str:
    """HTML link from a back-matter page to the place where a claim is judged."""
    get = row.get if hasattr(row, "get") else lambda k: getattr(row, k)
    return f'<a href="{prefix}{get("chapter")}.html#{anchor(get("claim_id"))}">{html.escape(str(get("claim")))}</a>'


def ledger_table(results: pd.DataFrame, chapter_order: list[str]) -> pd.DataFrame:
    """Every verdict, grouped by the paper's sections (then chapter order, then the order judged)."""
    t = results.reindex(columns=RECORD_COLUMNS).copy()
    t["section"] = [section_of(r, c) for r, c in zip(t.ref, t.chapter)]
    t["section_rank"] = t.section.map({s: i for i, s in enumerate(SECTION_ORDER)})
    t["chapter_rank"] = t.chapter.map({c: i for i, c in enumerate(chapter_order)}).fillna(len(chapter_order))
    t["order"] = range(len(t))
    t = t.sort_values(["section_rank", "chapter_rank", "order"]).drop(columns=["section_rank", "chapter_rank", "order"])
    return t.reset_index(drop=True)


def mark_counts(table: pd.DataFrame) -> pd.DataFrame:
    """How many claims have each outcome, overall and for the paper's claims and the book's own."""
    rows = []
    for outcome, o in OUTCOMES.items():
        sel = table[table.outcome == outcome]
        rows.append(dict(mark=o.mark, outcome=o.words, claims=len(sel), paper=int((sel.source == "paper").sum()),
                         book=int((sel.source == "book").sum())))
    return pd.DataFrame(rows)


def errata_table(table: pd.DataFrame) -> pd.DataFrame:
    """The verdicts that record an erratum of the paper."""
    t = table[table.erratum.fillna("").astype(str).str.strip() != ""]
    return t.reset_index(drop=True)


def completeness(results: pd.DataFrame, claim: Claim) -> Verdict:
    """Whether the results hold a verdict for every promised claim of every chapter
    (the back-matter pages, which judge only this, excepted)."""
    promised_ids = {c.id: c.chapter for ch in _claims.chapters() if ch not in ("ledger", "errata") for c in promised(ch)}
    judged = set(results.claim_id) if len(results) else set()
    missing = sorted(set(promised_ids) - judged)
    chapters_missing = sorted({promised_ids[m] for m in missing})
    outcome = "holds" if not missing else "fails"
    evidence = (f"{len(promised_ids) - len(missing)} of {len(promised_ids)} promised claims judged"
                + (f"; missing from the chapters {', '.join(chapters_missing)} (run them first, with the same output_dir)"
                   if missing else ""))
    return Verdict(claim, outcome, "every id declared in fbsgd/book/claims/<chapter>.py appears in verdicts_<chapter>.csv",
                   evidence, len(missing), "claims not judged")
