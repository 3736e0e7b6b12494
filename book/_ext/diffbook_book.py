"""The book's own Sphinx extension (loaded by _config.yml): three small things the stock extensions do not do.

1. The reference list uses author-year labels, "[Ho et al. 2020]", like the in-text citations (sphinxcontrib-bibtex's
   ``author_year`` reference style), sorted by author: the pybtex style ``diffbook`` registered here.
2. Docstrings cite equations by label, "Eq. (ddpm-closed-form)", so they read well in ``help()``; in the API
   reference the label becomes a link showing the equation's number, as the chapters show it.
3. The book's stylesheet (tables, explorers) is added to every page.
"""

from __future__ import annotations

import re

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle

# "Eq. (a)", "Eqs. (a) and (b)", "Eqs. (a), (b) or (c)": labels; a paper's own "Eq. (6)" is left alone
_EQ = re.compile(r"Eqs?\. \([a-z][a-z0-9-]*\)(?:(?:,| and| or) \([a-z][a-z0-9-]*\))*")
_LABEL = re.compile(r"\(([a-z][a-z0-9-]*)\)")


def _surname(person) -> str:
    return " ".join(person.last_names) or " ".join(person.first_names)


class AuthorYearLabels(BaseLabelStyle):
    """Labels "Surname Year", "Surname and Other Year" or "Surname et al. Year"; a letter tells apart repeats."""

    def format_labels(self, sorted_entries):
        labels = []
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [_surname(p) for p in people]
            if not names:
                who = entry.fields.get("organization", entry.key)
            elif len(names) == 1:
                who = names[0]
            elif len(names) == 2:
                who = f"{names[0]} and {names[1]}"
            else:
                who = f"{names[0]} et al."
            labels.append(f"{who} {entry.fields.get('year', '')}".strip())
        seen = {}
        for label in labels:
            seen[label] = seen.get(label, 0) + 1
        count = {}
        for label in labels:
            if seen[label] > 1:
                count[label] = count.get(label, 0) + 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[count[label] - 1]
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = SortingStyle


def _equation_links(app, what, name, obj, options, lines):
    """'Eq. (label)' in a docstring -> 'Eq. :eq:`label`' (the equation's number, linked). A label no chapter
    defines fails the -W build, as tests/test_book_labels.py does earlier."""
    for i, line in enumerate(lines):
        lines[i] = _EQ.sub(lambda m: _LABEL.sub(lambda n: f":eq:`{n.group(1)}`", m.group(0)), line)


def setup(app):
    register_plugin("pybtex.style.formatting", "diffbook", AuthorYearStyle)
    app.connect("autodoc-process-docstring", _equation_links)
    app.add_css_file("diffbook.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
