"""Verdicts as data: a claim, the rule that judged it, the numbers, and one of four outcomes.

A chapter declares the claims it promises to judge in ``fbsgd/book/claims/<chapter>.py``
(a list ``CLAIMS`` of :class:`Claim`: a stable id, the paper's reference, the part of the
paper it belongs to, whose claim it is, the words, and the figure or table that decides it).
Its analysis functions return :class:`Verdict` records, each with its key number and the
threshold that number is judged against; the chapter collects them in a :class:`Ledger`,
which shows each on the page (with an anchor the claims ledger links to) and writes them to
``<output_dir>/verdicts_<chapter>.csv``.  The claims-ledger page reads those files;
``tests/test_notebooks.py`` checks that every promised claim was judged.

The four outcomes, each defined once (:data:`OUTCOMES`, shown by :func:`legend`):

========== ==== ====================================================================
holds       ✔   the measurement meets the claim's rule in every case the claim covers
fails       ✘   the measurement contradicts the claim's rule, or meets it in fewer than half of its cases
partial     ◐   the rule is met in at least half of the cases the claim covers, not in all
unresolved  ?   the measurement cannot decide (an interval straddles the threshold, too few runs)
========== ==== ====================================================================

The rule for "partial" is stated once, here: :data:`PARTIAL_SHARE` (one half) of the cases
must meet the rule; a claim that fails in most of its cases does not hold
(:func:`outcome_of_cases`).  A precise tie is decided as a tie: where a claim says one quantity
exceeds another, values closer than the rule's stated tolerance contradict it; a tie only on a
coarse grid (both on the same grid point) cannot decide, and is unresolved.
"""
from __future__ import annotations

import html
import importlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from fbsgd.book.report import save_table

__all__ = ["OUTCOMES", "clause", "by_name", "SOURCES", "SECTIONS", "PARTIAL_SHARE", "Claim", "Verdict", "Ledger",
           "outcome_of_cases", "outcome_of_flags", "share_text", "legend", "promised", "load_results", "anchor", "RECORD_COLUMNS",
           "decider_kind", "md_escape", "findings_md", "fact", "QUESTIONS", "format_finds", "parse_finds", "contradictions"]


@dataclass(frozen=True)
class _Outcome:
    mark: str
    words: str
    colour: str
    meaning: str


OUTCOMES = {
    "holds": _Outcome("✔", "holds", "#1a7f37", "the measurement meets the claim's rule in every case the claim covers"),
    "fails": _Outcome("✘", "does not hold", "#cf222e",
                      "the measurement contradicts the claim's rule, or meets it in fewer than half of the cases the claim covers"),
    "partial": _Outcome("◐", "holds in part", "#9a6700",
                        "the rule is met in at least half of the cases the claim covers, but not in all"),
    "unresolved": _Outcome("?", "unresolved", "#57606a",
                           "the measurement cannot decide: an interval straddles the threshold, or there are too few runs"),
}
PARTIAL_SHARE = 0.5  # a claim about several cases is "partial" when at least this share of them meets its rule
SOURCES = {"paper": "a claim of the paper",
           "related": "a claim of a related work (forward gradients, derivatives of SGD), not of the paper",
           "book": "the book's own probe, beyond what the paper claims"}
# the parts a claim can belong to, in the ledger's order: the paper's sections, then the related works,
# then the book's own probes that concern no part of the paper
SECTIONS = {"Section 1": "Section 1 — introduction and set-up", "Section 2": "Section 2 — related works",
            "Section 3": "Section 3 — preliminaries", "Section 4": "Section 4 — error propagation",
            "Section 5": "Section 5 — convergence rates", "Section 6": "Section 6 — perturbation budgets",
            "Section 7": "Section 7 — experiments", "Section 8": "Section 8 — open questions",
            "Appendix A": "Appendix A — counterexamples",
            "Related work": "The related works (forward gradients, derivatives of SGD): their claims, not the paper's",
            "Beyond the paper": "Beyond the paper: the book's own probes"}


@dataclass(frozen=True)
class Claim:
    """A claim a chapter promises to judge.

    ``id``: stable, unique in the book (``<chapter>.<name>``); ``ref``: where the
    paper makes it or what it is about (section, equation, figure); ``source``:
    "paper", "related" (a claim of a related work) or "book"; ``text``: the claim in words;
    ``section``: the part of the paper it belongs to (a key of :data:`SECTIONS`; declared, never
    parsed from ``ref``; empty: :attr:`part` falls back on the source); ``decided_by``: the label,
    on the chapter's page, of the figure or table (or the section holding the table) that
    decides it; ``threshold``: the threshold in words, for a verdict whose function states none.
    """

    id: str
    chapter: str
    ref: str
    source: str
    text: str
    section: str = ""
    decided_by: str = ""
    threshold: str = ""

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"Claim {self.id!r}: source must be one of {list(SOURCES)}, got {self.source!r}")
        if not self.id.startswith(f"{self.chapter}."):
            raise ValueError(f"Claim {self.id!r}: the id must start with its chapter, '{self.chapter}.'")
        if self.section and self.section not in SECTIONS:
            raise ValueError(f"Claim {self.id!r}: section must be one of {list(SECTIONS)} (or empty), got {self.section!r}")

    @property
    def part(self) -> str:
        """The part of the ledger the claim is listed under: its declared section, else "Related work"
        for a related work's claim and "Beyond the paper" for any other."""
        if self.section:
            return self.section
        return "Related work" if self.source == "related" else "Beyond the paper"


FACT_SEP = " | "
QUESTIONS = {"floor": "leaves a floor at small step sizes (stable norm at the smallest γ above RECOVERY_FACTOR × "
                      "standard SGD's, not decreasing)"}


def fact(question: str, mechanism: str, place: str, setting: str) -> str:
    """A fact two chapters can both find: ``question`` (a key of :data:`QUESTIONS`) about ``mechanism``
    (its label, e.g. "float8_e4m3fn stochastic") at ``place`` ("forward" / "backward") in ``setting``
    (the problem, e.g. "Section 7 logistic regression")."""
    if question not in QUESTIONS:
        raise ValueError(f"fact: question must be one of {list(QUESTIONS)}, got {question!r}")
    parts = [str(x).strip() for x in (question, mechanism, place, setting)]
    if any(not p or FACT_SEP.strip() in p for p in parts):
        raise ValueError(f"fact: every part must be non-empty and free of {FACT_SEP.strip()!r}, got {parts}")
    return FACT_SEP.join(parts)


def format_finds(finds: dict) -> str:
    """``finds`` as one table cell: "fact = yes; fact = no" (sorted)."""
    return "; ".join(f"{k} = {'yes' if v else 'no'}" for k, v in sorted(finds.items()))


def parse_finds(cell) -> dict:
    """The inverse of :func:`format_finds` (an empty or missing cell: no facts)."""
    if not isinstance(cell, str) or not cell.strip():
        return {}
    out = {}
    for part in cell.split("; "):
        k, _, v = part.rpartition(" = ")
        if v not in ("yes", "no") or k.count(FACT_SEP) != 3:
            raise ValueError(f"parse_finds: not a fact = yes/no pair: {part!r}")
        out[k] = v == "yes"
    return out


def contradictions(results: pd.DataFrame) -> pd.DataFrame:
    """Every fact found by two or more verdicts (the ``finds`` column of verdict records, e.g. the
    claims ledger's table), one row per (fact, verdict): ``fact``, ``claim_id``, ``chapter``, ``found``
    (True/False), ``agree`` (every verdict finding the fact found the same).  A fact found only once
    is not listed.  The book contradicts itself where ``agree`` is False."""
    rows = []
    col = results["finds"] if "finds" in results else pd.Series([""] * len(results), index=results.index)
    for r, cell in zip(results.itertuples(), col):
        for k, v in parse_finds(cell).items():
            rows.append(dict(fact=k, claim_id=r.claim_id, chapter=r.chapter, found=v))
    t = pd.DataFrame(rows, columns=["fact", "claim_id", "chapter", "found"])
    if not len(t):
        return t.assign(agree=pd.Series(dtype=bool))
    n = t.groupby("fact").claim_id.transform("nunique")
    t = t[n >= 2]
    agree = t.groupby("fact").found.transform(lambda s: s.nunique() == 1)
    return t.assign(agree=agree.astype(bool)).sort_values(["fact", "chapter", "claim_id"]).reset_index(drop=True)


@dataclass(frozen=True)
class Verdict:
    """The judgement of one claim: its outcome, the rule that decided it, the evidence (numbers,
    in words), its key number (the number that decided the outcome) and ``threshold``, the
    threshold(s) that number is judged against, in words with numbers ("slope < 0.1", "ratio
    within 0.8–1.25"; default: the claim's).  ``decided_by``: the label of the figure or table
    on the chapter's page that decides it (default: the claim's).  ``erratum``: when the paper's
    text, a constant or a condition does not hold as printed, what is off.

    ``finds``: what the verdict's numbers found about a mechanism, as facts another chapter may also
    find: ``{fact: True/False}``, a fact being a string made by :func:`fact` (e.g.
    ``fact("floor", "float8_e4m3fn stochastic", "forward", "Section 7 logistic regression")``).
    Two verdicts of the book that find the same fact with opposite values contradict each other
    (:func:`contradictions`); the claims ledger lists every shared fact and the tests refuse a
    contradiction."""

    claim: Claim
    outcome: str
    rule: str
    evidence: str
    key_number: float | None = None
    key_label: str = ""
    erratum: str = ""
    threshold: str = ""
    decided_by: str = ""
    finds: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"Verdict of {self.claim.id!r}: outcome must be one of {list(OUTCOMES)}, got {self.outcome!r}")
        if not self.rule.strip() or not self.evidence.strip():
            raise ValueError(f"Verdict of {self.claim.id!r}: give the rule and the evidence")
        if self.key_number is not None:
            object.__setattr__(self, "key_number", float(self.key_number))
        if not self.threshold.strip():
            object.__setattr__(self, "threshold", self.claim.threshold)
        if not self.decided_by.strip():
            object.__setattr__(self, "decided_by", self.claim.decided_by)
        for k, v in self.finds.items():
            if not isinstance(k, str) or k.count(FACT_SEP) != 3 or not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"Verdict of {self.claim.id!r}: finds must map facts made by fact(question, mechanism, "
                                 f"place, setting) to True or False, got {k!r}: {v!r}")
        object.__setattr__(self, "finds", {k: bool(v) for k, v in sorted(self.finds.items())})

    @property
    def mark(self) -> str:
        return OUTCOMES[self.outcome].mark

    def record(self) -> dict:
        """One flat row (the chapter's results and the claims ledger)."""
        return dict(claim_id=self.claim.id, chapter=self.claim.chapter, ref=self.claim.ref, section=self.claim.part,
                    source=self.claim.source, claim=self.claim.text, outcome=self.outcome, mark=self.mark, rule=self.rule,
                    evidence=self.evidence, key_number=self.key_number, key_label=self.key_label,
                    threshold=self.threshold, decided_by=self.decided_by, erratum=self.erratum,
                    finds=format_finds(self.finds))

    def __repr__(self) -> str:
        o = OUTCOMES[self.outcome]
        own = _OWN_TEXT.get(self.claim.source, "")
        return f"{o.mark} {self.claim.text}{own} — {o.words}: {self.evidence} (rule: {self.rule})"

    def _repr_html_(self) -> str:
        o = OUTCOMES[self.outcome]
        own = (f' <span style="font-size:85%;color:#57606a">{html.escape(_OWN_TEXT[self.claim.source].strip(), quote=False)}</span>'
               if self.claim.source in _OWN_TEXT else "")
        key = (f'<br><b>Key number</b>: {html.escape(self.key_label)} = {_fmt(self.key_number)}'
               if self.key_number is not None else "")
        if self.threshold:
            key += f'<br><b>Threshold</b>: {html.escape(self.threshold)}'
        if self.decided_by:
            key += f' (<a href="#{html.escape(self.decided_by)}">the {decider_kind(self.decided_by)} that decides it</a>)'
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


RECORD_COLUMNS = ["claim_id", "chapter", "ref", "section", "source", "claim", "outcome", "mark", "rule", "evidence",
                  "key_number", "key_label", "threshold", "decided_by", "erratum", "finds"]
_OWN_TEXT = {"book": " [the book's own probe, beyond the paper]", "related": " [a claim of a related work, not of the paper]"}


def decider_kind(label: str) -> str:
    """What a ``decided_by`` label names, by the book's label prefixes: "figure" (``fig-``), "table"
    (``tab-``), else "section" (a section's label, or the id of its heading, that holds the table)."""
    return {"fig": "figure", "tab": "table"}.get(str(label).split("-", 1)[0], "section")


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return str(x)
    return f"{x:.4g}"


def anchor(claim_id: str) -> str:
    """The HTML id of a verdict on its page."""
    return "claim-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in claim_id)


def outcome_of_cases(flags: Iterable[bool]) -> str:
    """For a claim about every case of a set: holds if all cases meet the rule; partial if at least
    :data:`PARTIAL_SHARE` of them (one half) do; fails if fewer do, so a claim that fails in most of
    its cases does not hold (an empty set is unresolved)."""
    flags = [bool(f) for f in flags]
    if not flags:
        return "unresolved"
    if all(flags):
        return "holds"
    return "partial" if sum(flags) >= PARTIAL_SHARE * len(flags) else "fails"


def outcome_of_flags(flags) -> str:
    """For a claim about every case of a set whose cases may be undecided: each flag True (the case
    meets the rule), False (it does not) or None (undecided: the measurement cannot tell, e.g. runs not
    settled or a seed spread as large as the effect).  A decided case that fails counts at once: the
    outcome is :func:`outcome_of_cases` of the decided cases (partial or fails); otherwise unresolved if
    any case is undecided (or there is none), holds if every case meets the rule."""
    flags = [None if f is None else bool(f) for f in flags]
    decided = [f for f in flags if f is not None]
    if decided and not all(decided):
        return outcome_of_cases(decided)
    if not flags or len(decided) < len(flags):
        return "unresolved"
    return "holds"


def share_text(flags: Iterable[bool]) -> str:
    """"3 of 19 cases (16 %)": how many cases meet the rule, for a verdict's evidence."""
    flags = [bool(f) for f in flags]
    n = len(flags)
    return f"{sum(flags)} of {n} cases ({sum(flags) / n:.0%})" if n else "no case"



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

    def findings(self):
        """:func:`findings_md` of this chapter's verdicts as an IPython Markdown object: each chapter glues it
        (``glue("<chapter>-findings", ledger.findings(), display=False)``) into the box at its top."""
        from IPython.display import Markdown

        return Markdown(findings_md(self.verdicts))

    def summary(self):
        """A small table of this chapter's verdicts: mark, claim, key number (for the end of a chapter)."""
        from IPython.display import HTML

        rows = "".join(
            f'<tr><td>{v.mark}</td><td><a href="#{anchor(v.claim.id)}">{html.escape(v.claim.text)}</a>'
            f'{" <i>(book)</i>" if v.claim.source == "book" else " <i>(related work)</i>" if v.claim.source == "related" else ""}</td>'
            f'<td>{html.escape(v.key_label)} {_fmt(v.key_number) if v.key_number is not None else ""}</td>'
            f'<td>{html.escape(v.threshold)}</td></tr>'
            for v in self.verdicts)
        return HTML(f'<table class="fbsgd-summary"><tr><th></th><th>claim</th><th>key number</th><th>threshold</th></tr>'
                    f'{rows}</table>')


def md_escape(text: str) -> str:
    """``text`` with Markdown's active ASCII characters escaped (shown as written, not as markup)."""
    return "".join("\\" + ch if ch in "\\`*_[]<>$|#{}" else ch for ch in str(text))


def findings_md(verdicts) -> str:
    """The "what this chapter finds" box of a chapter, computed from its verdicts (in the order judged): how many
    claims hold, hold in part, do not hold or are unresolved, then one line per verdict with its mark, its claim
    and the number that decided it.  Markdown, for ``glue(..., Markdown(text))`` and ``{glue:md}``."""
    verdicts = list(verdicts)
    if not verdicts:
        return "No claim is judged here."
    counts = {o: sum(v.outcome == o for v in verdicts) for o in OUTCOMES}
    head = (f"**{len(verdicts)} claim{'s' if len(verdicts) != 1 else ''} judged here:** "
            + ", ".join(f"{counts[o]} {OUTCOMES[o].mark} {OUTCOMES[o].words}" for o in OUTCOMES if counts[o]) + ".")
    lines = []
    for v in verdicts:
        own = " (the book's own probe)" if v.claim.source == "book" else " (a related work's claim)" if v.claim.source == "related" else ""
        key = f" — {md_escape(v.key_label)}: {_fmt(v.key_number)}" if v.key_number is not None else ""
        lines.append(f"- {v.mark} {md_escape(v.claim.text)}{own}{key}")
    return "\n".join([head, ""] + lines)


def legend():
    """The four outcomes, defined once; shown on every page that judges claims."""
    from IPython.display import HTML

    items = "".join(f'<span style="margin-right:1.2em"><b style="color:{o.colour}">{o.mark} {o.words}</b>: '
                    f'{html.escape(o.meaning)}</span> ' for o in OUTCOMES.values())
    return HTML(f'<div class="fbsgd-legend" style="font-size:88%;border:1px solid #d0d7de;padding:0.4em 0.8em;'
                f'margin:0.5em 0">{items}<br><i>[the book\'s own probe]</i> marks a claim the paper does not make, '
                f'<i>[a claim of a related work]</i> one that another work makes.</div>')


def load_results(results_dir: str | os.PathLike) -> pd.DataFrame:
    """Every chapter's ``verdicts_*.csv`` in ``results_dir``, concatenated."""
    files = sorted(Path(results_dir).glob("verdicts_*.csv"))
    if not files:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    frames = [pd.read_csv(f, keep_default_na=False, na_values={"key_number": ["", "nan", "NaN"]}) for f in files]
    return pd.concat(frames, ignore_index=True).reindex(columns=RECORD_COLUMNS).fillna(
        {c: "" for c in RECORD_COLUMNS if c != "key_number"})


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
