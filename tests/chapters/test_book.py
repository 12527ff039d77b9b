"""The whole book builds (quick scale), with math bundled for offline reading."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_whole_book_builds_without_warnings(quick_book):
    """The session's quick-scale build (tests/chapters/conftest.py: the chapters prepared by papermill with
    their output folders, executed once, by the build; test_notebooks.py checks each chapter's outputs)."""
    assert quick_book.returncode == 0, quick_book.log
    html = quick_book.html
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists(), "MathJax must be bundled for offline reading"
    pages = sorted(f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("*.ipynb"))
    pages += sorted(f"summary/{p.stem}" for p in (ROOT / "summary").glob("*.ipynb"))
    assert len(pages) >= 17
    for page in pages:
        text = (html / f"{page}.html").read_text()
        assert "cdn.jsdelivr" not in text, f"{page}: MathJax must not come from a CDN"
        assert "_static/fbsgd.css" in text, f"{page}: the book's style sheet (tables that fit the column) is not linked"
        if page.startswith("chapters/"):  # the box on the chapter's first screen, glued from its verdicts
            box = text.find("What this chapter finds")
            assert 0 <= box < text.find("fbsgd-verdict") and "judged here" in text[box:box + 3000], \
                f"{page}: no 'What this chapter finds' box with the chapter's verdicts before its first verdict"
        if page.startswith("chapters/"):  # the back-matter pages have no math, so no MathJax script
            assert "mathjax/tex-chtml.js" in text, f"{page}: the bundled MathJax is not loaded"
        assert "<img" in text or "<table" in text, f"{page}: neither a figure nor a table was rendered"
        assert "highlight-ipythontb" not in text and "output traceback" not in text, f"{page}: an error output was rendered"
        assert "fbsgd-verdict" in text or page in ("summary/status", "summary/tables"), f"{page}: no verdict rendered"
        _check_download(html, page, text)
    _check_ledger(html)
    status = (html / "summary" / "status.html").read_text()
    for page in pages:
        assert page in status, f"the status page does not list {page}"
    assert "sweep engine hash" in status and "git commit" in status
    api = (html / "chapters" / "api.html").read_text()
    assert "fbsgd.perturbations.Round" in api and "fbsgd.engine.sweeps.run_sweep" in api


def _check_download(html, page, text):
    """The page's download button offers the notebook as executed, with its outputs."""
    import json

    assert f'href="../_sources/{page}.ipynb"' in text, f"{page}: no notebook download link"
    nb = json.loads((html / "_sources" / f"{page}.ipynb").read_text())
    outputs = [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    assert outputs, f"{page}: the downloadable notebook has no outputs (the unexecuted source was offered)"


def _check_ledger(html):
    """The claims ledger links every promised claim, and every link lands on the verdict it names."""
    import re

    from fbsgd.book import claims
    from fbsgd.book import verdicts

    ledger = (html / "summary" / "ledger.html").read_text()
    links = re.findall(r'href="\.\./chapters/(\w+)\.html#(claim-[\w-]+)"', ledger)
    promised = {verdicts.anchor(c.id) for ch in claims.chapters() if ch not in ("ledger", "errata")
                for c in verdicts.promised(ch)}
    assert promised <= {a for _, a in links}, f"claims missing from the ledger: {sorted(promised - {a for _, a in links})}"
    pages = {}
    for page, anchor in links:
        pages.setdefault(page, (html / "chapters" / f"{page}.html").read_text())
        assert f'id="{anchor}"' in pages[page], f"the ledger links {page}.html#{anchor}, which does not exist"
    complete = re.search(r'id="claim-ledger-complete"[^>]*>\s*<b[^>]*>(.)', ledger)
    assert complete and complete.group(1) == "✔", "the ledger's completeness verdict must hold"
    # the verdicts that find the same fact about a mechanism in two chapters (the real-mechanisms and the
    # correctors chapter on float8 rounding of Section 7's messages) must find it alike
    consistent = re.search(r'id="claim-ledger-consistent"[^>]*>\s*<b[^>]*>(.)', ledger)
    assert consistent and consistent.group(1) == "✔", "two chapters find a fact about a mechanism differently " \
        "(or no fact is found by two chapters): see the ledger's section 'Do the chapters agree?'"
