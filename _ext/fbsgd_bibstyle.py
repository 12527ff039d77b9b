"""An author–year bibliography for the book: "Kong, Zhang and Yuan 2026" labels, the entries
formatted as pybtex's unsrt style does (DOIs and arXiv identifiers as links)."""
from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _surnames(entry) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [" ".join(p.last_names) for p in people]
    if not names:
        return entry.fields.get("title", "Anon.")[:20]
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al."


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        seen = {}
        for entry in sorted_entries:
            label = f"{_surnames(entry)} {entry.fields.get('year', 'n.d.')}"
            n = seen.get(label, 0)
            seen[label] = n + 1
            yield label if n == 0 else f"{label}{chr(ord('a') + n)}"


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.formatting", "fbsgd_authoryear", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
