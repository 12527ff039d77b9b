"""The build-status page's facts."""
from fbsgd.book import status as S


def test_build_info_names_the_code_the_stack_and_the_cpu(monkeypatch):
    monkeypatch.setenv("NUMBA_CPU_NAME", "haswell")
    info = S.build_info("quick")
    assert info["scale"] == "quick" and len(info["sweep engine hash (fbsgd source + numerics stack)"]) == 16
    assert info["CPU (numba compiles for)"].endswith("(haswell)")
    assert {"numpy", "numba", "jupyter-book"} <= set(info)


def test_the_execution_table_marks_are_rewritten_without_emoji():
    page = S.readable_exec_marks()
    # the page's source holds no emoji: the marks are in the script as ASCII escapes
    assert page.isascii() and page.startswith("<script>") and page.rstrip().endswith("</script>")
    assert S.EXEC_MARKS == {"\u2705": "\u2714 ran", "\u274c": "\u2718 failed"}
    assert "\\u2705" in page and "\\u2714 ran" in page and "\\u274c" in page and "\\u2718 failed" in page
    # the replacement marks are text symbols (Dingbats), not characters with an emoji presentation by default
    assert all(not 0x1F000 <= ord(ch) and ch not in "\u2705\u274c" for v in S.EXEC_MARKS.values() for ch in v)


def test_the_status_page_says_precisely_where_numbers_come_from():
    import nbformat
    from pathlib import Path

    nb = nbformat.read(Path(__file__).parents[2] / "summary" / "status.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "\u2705" not in text and "computed by the book's code" in text
    assert "may be read from the content cache" in text and "loaded from the sweep cache" not in text
    assert any("readable_exec_marks" in c.source for c in nb.cells if c.cell_type == "code")
