"""The page's download button offers the *executed* notebook.

sphinx-book-theme links its ".ipynb" download to ``_sources/<page>.ipynb``,
which Sphinx copies from the source tree: the committed notebook, which has no
outputs.  myst-nb writes the notebook it executed to
``<build>/jupyter_execute/<page>.ipynb``; once the HTML is written, this
extension copies that file over the one in ``_sources``, so a reader who
downloads a chapter gets its figures, tables and verdicts with the code.
"""
from __future__ import annotations

import shutil
from pathlib import Path

EXECUTED = "jupyter_execute"  # myst_nb.sphinx_ext.OUTPUT_FOLDER


def executed_notebooks(app) -> dict[Path, Path]:
    """``{executed notebook: its copy under _sources}`` for every notebook page of the build."""
    out = Path(app.outdir)
    pairs = {}
    for docname in app.env.found_docs:
        if not str(app.env.doc2path(docname)).endswith(".ipynb"):
            continue
        executed = out.parent / EXECUTED / f"{docname}.ipynb"
        target = out / "_sources" / f"{docname}.ipynb"
        if executed.is_file() and target.parent.is_dir():
            pairs[executed] = target
    return pairs


def copy_executed(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for executed, target in executed_notebooks(app).items():
        shutil.copyfile(executed, target)


def setup(app):
    app.connect("build-finished", copy_executed)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
