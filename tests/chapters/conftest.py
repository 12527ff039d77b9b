"""One quick-scale build of the whole book per session, shared by the book test (test_book.py) and the chapter
tests (test_notebooks.py): every chapter used to be executed twice, once through papermill and once by the
book's builder.  Now each chapter is prepared by papermill (its parameters injected as papermill injects them:
``output_dir`` a folder of the test's, the back-matter pages' ``results_dir`` the folder the chapters wrote to)
into a copy of the book's sources, and executed once, by the build."""
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[2]
# what the build does not read (_config.yml excludes these too), and what earlier builds left
_NOT_COPIED = shutil.ignore_patterns(".*", "_build", "results", "tests", "fbsgd", "benchmarks", "tools", "__pycache__",
                                     "*.egg-info")


@dataclass
class QuickBook:
    source: Path  # the copy of the book's sources the build read
    html: Path  # the built HTML
    executed: Path  # the notebooks as the build executed them (<part>/<stem>.ipynb)
    results: Path  # results/<part>/<stem>: the output_dir of each page; results/chapters: all chapters'
    returncode: int
    log: str

    def output_dir(self, page: Path) -> Path:
        """The folder papermill gave ``page`` (a notebook of chapters/ or summary/) as its output_dir."""
        return self.results / ("chapters" if page.parent.name == "chapters" else f"summary/{page.stem}")

    def executed_notebook(self, page: Path) -> Path:
        return self.executed / page.parent.name / page.name


def build_quick_book(root: Path, base: Path) -> QuickBook:
    """Copy the book's sources at ``root`` into ``base``, prepare its notebooks with papermill, build it."""
    source, results = base / "book", base / "results"
    shutil.copytree(root, source, ignore=_NOT_COPIED)
    book = QuickBook(source, source / "_build" / "html", source / "_build" / "jupyter_execute", results, -1, "")
    for page in sorted((root / "chapters").glob("*.ipynb")) + sorted((root / "summary").glob("*.ipynb")):
        parameters = {"output_dir": str(book.output_dir(page))}
        if page.parent.name == "summary" and "results_dir" in pm.inspect_notebook(str(page)):
            parameters["results_dir"] = str(results / "chapters")
        copy = source / page.parent.name / page.name
        pm.execute_notebook(str(page), str(copy), parameters=parameters, prepare_only=True, kernel_name="python3",
                            progress_bar=False)
    env = dict(os.environ, FBSGD_SCALE="quick")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(source), "-W", "--keep-going"], env=env, capture_output=True,
                          text=True, timeout=3600)
    book.returncode, book.log = proc.returncode, proc.stdout[-5000:] + proc.stderr[-5000:]
    return book


@pytest.fixture(scope="session")
def quick_book(tmp_path_factory) -> QuickBook:
    """The whole book built at quick scale (``jupyter-book build -W --keep-going``, as the README's build command)
    from a copy of its sources whose notebooks papermill prepared with their output folders."""
    return build_quick_book(ROOT, tmp_path_factory.mktemp("quick_book"))
