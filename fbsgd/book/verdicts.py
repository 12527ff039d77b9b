"""Verdicts as data: a claim, the rule that judged it, the numbers, and one of four outcomes.

A chapter declares the claims it promises to judge in ``fbsgd/book/claims/<chapter>.py``
(a list ``CLAIMS`` of :class:`Claim`: a stable id, the paper's reference, whose
claim it is, the words).  Its analysis functions return :class:`Verdict`
records; the chapter collects them in a :class:`Ledger`, which shows each on
the page (with an anchor the claims ledger links to) and writes them to
``<output_dir>/verdicts_<chapter>.csv``.  The claims-ledger page reads those
files; ``tests/test_notebooks.py`` checks that every promised claim was judged.

The four outcomes, each defined once (:data:`OUTCOMES`, shown by :func:`legend`):

========== ==== ====================================================================
holds       ✔   the measurement meets the claim's rule in every case the claim covers
fails       ✘   the measurement contradicts the claim's rule
partial     ◐   the rule is met in some of the cases the claim covers and not in others
unresolved  ?   the measurement cannot decide (an interval straddles the threshold, a tie)
========== ==== ====================================================================
"""
from __future__ import annotations

import html
import importlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd
from fbsgd.book.report import save_table

__all__ = ["OUTCOMES", "clause", "by_name", "SOURCES", "Claim", "Verdict", "Ledger", "outcome_of_cases", "legend", "promised",
           "load_results", "anchor"]


@dataclass(frozen=True)
class _Outcome:
    mark: str
    words: str
    colour: str
    meaning: str


OUTCOMES = {
    "holds": _Outcome("✔", "holds", "#1a7f37", "the measurement meets the claim's rule in every case the claim covers"),
    "fails": _Outcome("✘", "does not hold", "#cf222e", "the measurement contradicts the claim's rule"),
    "partial": _Outcome("◐", "holds in part", "#9a6700",
                        "the rule is met in some of the cases the claim covers and not in others"),
    "unresolved": _Outcome("?", "unresolved", "#57606a",
                           "the measurement cannot decide: an interval straddles the threshold, or the compared values tie"),
}
SOURCES = {"paper": "a claim of the paper", "book": "the book's own probe, beyond what the paper claims"}


@dataclass(frozen=True)
class Claim:
    """A claim a chapter promises to judge.

    ``id``: stable, unique in the book (``<chapter>.<name>``); ``ref``: where the
    paper makes it or what it is about (section, equation, figure); ``source``:
    "paper" or "book"; ``text``: the claim in words.
    """

    id: str
    chapter: str
    ref: str
    source: str
    text: str

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"Claim {self.id!r}: source must be one of {list(SOURCES)}, got {self.source!r}")
        if not self.id.startswith(f"{self.chapter}."):
            raise ValueError(f"Claim {self.id!r}: the id must start with its chapter, '{self.chapter}.'")


@dataclass(frozen=True)
class Verdict:
    """The judgement of one claim: its outcome, the rule and threshold that decided it,
    the evidence (numbers, in words), and its key number.  ``erratum``: when the
    paper's text, a constant or a condition does not hold as printed, what is off."""

    claim: Claim
    outcome: str
    rule: str
    evidence: str
    key_number: float | None = None
    key_label: str = ""
    erratum: str = ""

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"Verdict of {self.claim.id!r}: outcome must be one of {list(OUTCOMES)}, got {self.outcome!r}")
        if not self.rule.strip() or not self.evidence.strip():
            raise ValueError(f"Verdict of {self.claim.id!r}: give the rule and the evidence")
        if self.key_number is not None:
            object.__setattr__(self, "key_number", float(self.key_number))

    @property
    def mark(self) -> str:
        return OUTCOMES[self.outcome].mark

    def record(self) -> dict:
        """One flat row (the chapter's results and the claims ledger)."""
        return dict(claim_id=self.claim.id, chapter=self.claim.chapter, ref=self.claim.ref, source=self.claim.source,
                    claim=self.claim.text, outcome=self.outcome, mark=self.mark, rule=self.rule, evidence=self.evidence,
                    key_number=self.key_number, key_label=self.key_label, erratum=self.erratum)

    def __repr__(self) -> str:
        o = OUTCOMES[self.outcome]
        own = " [the book's own probe]" if self.claim.source == "book" else ""
        return f"{o.mark} {self.claim.text}{own} — {o.words}: {self.evidence} (rule: {self.rule})"

    def _repr_html_(self) -> str:
        o = OUTCOMES[self.outcome]
        own = ' <span style="font-size:85%;color:#57606a">[the book\'s own probe, beyond the paper]</span>' \
            if self.claim.source == "book" else ""
        key = (f'<br><b>Key number</b>: {html.escape(self.key_label)} = {_fmt(self.key_number)}'
               if self.key_number is not None else "")
        err = f'<br><b>Erratum</b>: {html.escape(self.erratum)}' if self.erratum else ""
        return (
            f'<div id="{anchor(self.claim.id)}" class="fbsgd-verdict" style="border-left:4px solid {o.colour};'
            f'padding:0.3em 0.8em;margin:0.5em 0">'
            f'<b style="color:{o.colour}">{o.mark} {html.escape(o.words.capitalize())}.</b> '
            f'<i>{html.escape(self.claim.text)}</i>{own} '
            f'<span style="font-size:85%;color:#57606a">({html.escape(self.claim.ref)})</span><br>'
            f'{html.escape(self.evidence)}<br><span style="font-size:90%"><b>Rule</b>: {html.escape(self.rule)}</span>'
            f'{key}{err}</div>'
        )


RECORD_COLUMNS = ["claim_id", "chapter", "ref", "source", "claim", "outcome", "mark", "rule", "evidence",
                  "key_number", "key_label", "erratum"]


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return str(x)
    return f"{x:.4g}"


def anchor(claim_id: str) -> str:
    """The HTML id of a verdict on its page."""
    return "claim-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in claim_id)


def outcome_of_cases(flags: Iterable[bool]) -> str:
    """For a claim about every case of a set: holds if all cases meet the rule, fails if
    none does, partial otherwise (an empty set is unresolved)."""
    flags = [bool(f) for f in flags]
    if not flags:
        return "unresolved"
    if all(flags):
        return "holds"
    return "partial" if any(flags) else "fails"


def promised(chapter: str) -> list[Claim]:
    """The claims chapter ``chapter`` promises to judge (``fbsgd/book/claims/<chapter>.py``)."""
    try:
        module = importlib.import_module(f"fbsgd.book.claims.{chapter}")
    except ModuleNotFoundError as exc:
        raise ValueError(f"no claims are declared for chapter {chapter!r} (fbsgd/book/claims/{chapter}.py)") from exc
    claims = list(module.CLAIMS)
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"chapter {chapter!r} declares a claim id twice")
    bad = [c.id for c in claims if c.chapter != chapter]
    if bad:
        raise ValueError(f"claims {bad} are declared in fbsgd/book/claims/{chapter}.py but belong to another chapter")
    return claims


@dataclass
class Ledger:
    """The verdicts of one chapter, in the order they were judged."""

    chapter: str
    verdicts: list = field(default_factory=list)

    def __post_init__(self):
        self.claims = {c.id: c for c in promised(self.chapter)}

    def claim(self, name: str) -> Claim:
        """The promised claim ``<chapter>.<name>`` (or its full id)."""
        cid = name if name.startswith(f"{self.chapter}.") else f"{self.chapter}.{name}"
        if cid not in self.claims:
            raise KeyError(f"claim {cid!r} is not declared in fbsgd/book/claims/{self.chapter}.py; "
                           f"declared: {sorted(self.claims)}")
        return self.claims[cid]

    def add(self, v: Verdict) -> Verdict:
        if v.claim.id not in self.claims:
            raise KeyError(f"claim {v.claim.id!r} is not declared for chapter {self.chapter!r}")
        self.verdicts = [w for w in self.verdicts if w.claim.id != v.claim.id] + [v]
        return v

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([v.record() for v in self.verdicts], columns=RECORD_COLUMNS)

    def missing(self) -> list[str]:
        judged = {v.claim.id for v in self.verdicts}
        return [cid for cid in self.claims if cid not in judged]

    def save(self, output_dir: str | os.PathLike) -> Path:
        """Write ``verdicts_<chapter>.csv`` (atomically) and return its path."""

        return save_table(self.table(), output_dir, f"verdicts_{self.chapter}")

    def summary(self):
        """A small table of this chapter's verdicts: mark, claim, key number (for the end of a chapter)."""
        from IPython.display import HTML

        rows = "".join(
            f'<tr><td>{v.mark}</td><td><a href="#{anchor(v.claim.id)}">{html.escape(v.claim.text)}</a>'
            f'{" <i>(book)</i>" if v.claim.source == "book" else ""}</td>'
            f'<td>{html.escape(v.key_label)} {_fmt(v.key_number) if v.key_number is not None else ""}</td></tr>'
            for v in self.verdicts)
        return HTML(f'<table class="fbsgd-summary"><tr><th></th><th>claim</th><th>key number</th></tr>{rows}</table>')


def legend():
    """The four outcomes, defined once; shown on every page that judges claims."""
    from IPython.display import HTML

    items = "".join(f'<span style="margin-right:1.2em"><b style="color:{o.colour}">{o.mark} {o.words}</b>: '
                    f'{html.escape(o.meaning)}</span> ' for o in OUTCOMES.values())
    return HTML(f'<div class="fbsgd-legend" style="font-size:88%;border:1px solid #d0d7de;padding:0.4em 0.8em;'
                f'margin:0.5em 0">{items}<br><i>[the book\'s own probe]</i> marks a claim the paper does not make.</div>')


def load_results(results_dir: str | os.PathLike) -> pd.DataFrame:
    """Every chapter's ``verdicts_*.csv`` in ``results_dir``, concatenated."""
    files = sorted(Path(results_dir).glob("verdicts_*.csv"))
    if not files:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    return pd.concat([pd.read_csv(f, keep_default_na=False, na_values={"key_number": [""]}) for f in files],
                     ignore_index=True)


# -- words for an outcome, for prose computed from verdicts ---------------------------------------

def clause(v: Verdict | None, yes: str, no: str, partial: str | None = None, unresolved: str | None = None) -> str:
    """The words that fit a verdict's outcome: ``yes`` (holds), ``no`` (fails), ``partial`` (default:
    ``yes`` + " in some of its cases only") or ``unresolved`` (default: "whether ``yes`` is not decided
    by these runs").  ``{k}`` in a text is the verdict's key number (formatted by the text)."""
    if v is None:
        return f"whether {yes} was not judged"
    text = {"holds": yes, "fails": no, "partial": partial or f"{yes} in some of its cases only",
            "unresolved": unresolved or f"whether {yes} is not decided by these runs"}[v.outcome]
    k = _Signed(v.key_number if v.key_number is not None else float("nan"))
    return text.format(k=k)


class _Signed(float):
    """A float whose formatted text uses the true minus sign."""

    def __format__(self, spec):
        return format(float(self), spec).replace("-", "−")


def by_name(ledger: "Ledger") -> dict:
    """A chapter's verdicts by claim name (the id without its ``<chapter>.`` prefix)."""
    return {v.claim.id.split(".", 1)[1]: v for v in ledger.verdicts}
