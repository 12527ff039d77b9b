"""fbsgd.studies.setting.figures.wrap_code: a listing that fits the text column and means the same code."""
import ast
import inspect
import textwrap

from fbsgd import passes
from fbsgd.studies.setting.figures import wrap_code


def test_wrapped_listing_fits_and_keeps_the_syntax_tree():
    source = inspect.getsource(passes.perturbed_passes)
    assert max(len(line) for line in source.splitlines()) > 76  # the case the chapter needs
    wrapped = wrap_code(source)
    lines = wrapped.splitlines()
    assert max(len(line) for line in lines) <= 76
    assert ast.dump(ast.parse(wrapped)) == ast.dump(ast.parse(source))
    assert lines[1].startswith(" " * len("def perturbed_passes("))  # aligned with the bracket
    # the marks (5a), (5b), (5c) stay, each on the line just above its code
    for mark, code in (("(5a)", "plan.perturb(\"forward\""), ("(5b)", "plan.perturb(\"backward\""),
                       ("(5c)", "f.vjp_weight(")):
        at = [k for k, line in enumerate(lines) if "# " + mark in line]
        assert len(at) == 1 and (code in lines[at[0]] or code in lines[at[0] + 1])


def test_short_lines_comments_and_strings_untouched():
    source = 'def f(a, b):\n    return g("x, y", a)  # a, b\n'
    assert wrap_code(source, 88) == source
    long = '    x = h(1, 2, "a, b, c", 3)  # done, with commas, here'
    out = wrap_code(long, 24).splitlines()
    assert out[0] == "    # done, with commas, here"
    assert out[1:] == ['    x = h(1, 2,', '          "a, b, c", 3)']
    assert ast.dump(ast.parse(textwrap.dedent("\n".join(out)))) == ast.dump(ast.parse(long.strip()))


def test_a_long_line_without_commas_is_kept():
    source = "y = " + "a" * 100 + "\n"
    assert wrap_code(source, 88) == source


def test_chain_diagram_labels_stay_off_the_arrows_circles_and_boxes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

    from fbsgd.studies.setting.figures import chain_diagram

    fig, ax = plt.subplots(figsize=(8, 3.2))
    chain_diagram(4, ax=ax)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if r"\tilde y" in t.get_text() or r"\tilde v_{" in t.get_text()
              and "nabla" not in t.get_text()]
    assert {t.get_text() for t in labels} >= {r"$\tilde y_{1}$", r"$\tilde y_{N-1}$", r"$\tilde v_{1}$",
                                              r"$\tilde v_{N-1}$"}
    shapes = [p for p in ax.patches if isinstance(p, (FancyArrowPatch, FancyBboxPatch, Circle))]
    for t in labels:
        box = t.get_window_extent(r).shrunk(0.9, 0.9)  # the ink, not the text's line box
        hits = [p for p in shapes if box.overlaps(p.get_window_extent(r))]
        assert not hits, (t.get_text(), hits)
    plt.close(fig)
