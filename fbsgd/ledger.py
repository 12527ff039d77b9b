"""The claims ledger and the errata: every verdict of the book in one table.

Each chapter writes its verdicts to ``<output_dir>/verdicts_<chapter>.csv``
(:meth:`fbsgd.verdicts.Ledger.save`).  The back-matter pages read them all:
:func:`ledger_table` orders them by the paper's sections, :func:`mark_counts`
counts the four outcomes, :func:`errata_table` keeps the places where the
paper's text, a constant or a condition did not hold as printed, and
:func:`completeness` judges whether every promised claim was judged.
"""
from __future__ import annotations

import html
import re

import pandas as pd

from . import claims as _claims
from .verdicts import OUTCOMES, RECORD_COLUMNS, Claim, Verdict, anchor, promised

__all__ = ["section_of", "ledger_table", "mark_counts", "errata_table", "completeness", "link", "html_table",
           "toc_chapters", "SECTION_ORDER"]

# the paper's order: sections first, then the appendix, then related work and the book's own topics
SECTION_ORDER = ["Section 1", "Section 2", "Section 3", "Section 4", "Section 5", "Section 6", "Section 7",
                 "Section 8", "Appendix A", "Related work", "Book"]


def section_of(ref: str) -> str:
    """The paper's part a reference belongs to: "Section 7.2.1, Figure 4" → "Section 7"."""
    m = re.search(r"Section\s+(\d+)", ref)
    if m:
        return f"Section {m.group(1)}"
    if re.search(r"Appendix\s+A|\bA\.\d", ref):
        return "Appendix A"
    if re.search(r"related|forward gradient|derivative", ref, re.I):
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
        f'<td>{html.escape(str(r.key_label))} {"" if pd.isna(r.key_number) else f"{r.key_number:.4g}"}</td></tr>'
        for r in table.itertuples())
    return (f'<table class="fbsgd-ledger"><tr><th></th><th>claim</th><th>paper reference</th><th>key number</th></tr>'
            f"{rows}</table>")


CHAPTERS_URL = "../chapters/"  # from the back-matter pages (summary/) to the chapters


def link(row, prefix: str = CHAPTERS_URL) -> str:
    """HTML link from a back-matter page to the place where a claim is judged."""
    get = row.get if hasattr(row, "get") else lambda k: getattr(row, k)
    return f'<a href="{prefix}{get("chapter")}.html#{anchor(get("claim_id"))}">{html.escape(str(get("claim")))}</a>'


def ledger_table(results: pd.DataFrame, chapter_order: list[str]) -> pd.DataFrame:
    """Every verdict, grouped by the paper's sections (then chapter order, then the order judged)."""
    t = results.reindex(columns=RECORD_COLUMNS).copy()
    t["section"] = t.ref.map(section_of)
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
    return Verdict(claim, outcome, "every id declared in fbsgd/claims/<chapter>.py appears in verdicts_<chapter>.csv",
                   evidence, len(missing), "claims not judged")
