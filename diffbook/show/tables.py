"""Results as real tables: one HTML table with a numbered caption, the same in Jupyter, Colab and on the website.

A table is built from rows (dicts, or sequences with ``columns``) and displays itself (``_repr_html_``), so a chapter
ends a cell with ``table(rows, number="5.1", caption="...")``. Numbers are formatted per column (``formats``: a
format string such as ``"{:.3f}"`` or a function), text is HTML-escaped, numeric columns are right-aligned, and
``None`` shows as an en dash. ``.rows`` and ``.columns`` keep the values for checks.
"""

from __future__ import annotations

import html
import numbers
import re
from typing import Callable, Sequence

__all__ = ["Table", "table"]

_NUMBER = re.compile(r"^([A-Z]|\d+)(\.\d+)+$")


def _cell(value, fmt) -> str:
    if value is None:
        return "&ndash;"
    if fmt is not None:
        value = fmt(value) if callable(fmt) else fmt.format(value)
    elif isinstance(value, float):
        value = f"{value:.4g}"
    return html.escape(str(value))


class Table:
    """A captioned HTML table (see :func:`table`)."""

    def __init__(self, rows: list, columns: list[str], caption: str, number: str | None, formats: dict,
                 notes: str | None):
        self.rows, self.columns, self.caption, self.number = rows, columns, caption, number
        self.formats, self.notes = formats, notes

    def column(self, name: str) -> list:
        """The values of one column."""
        return [r[name] for r in self.rows]

    def _numeric(self, name: str) -> bool:
        vals = [r[name] for r in self.rows if r[name] is not None]
        return bool(vals) and all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in vals)

    def _repr_html_(self) -> str:
        right = {c for c in self.columns if self._numeric(c)}
        label = f'<span class="caption-number">Table {html.escape(self.number)} </span>' if self.number else ""
        head = "".join(f'<th class="{"num" if c in right else "text"}">{html.escape(c)}</th>' for c in self.columns)
        body = "\n".join(
            "<tr>" + "".join(f'<td class="{"num" if c in right else "text"}">{_cell(r[c], self.formats.get(c))}</td>'
                             for c in self.columns) + "</tr>"
            for r in self.rows)
        notes = f'<p class="diffbook-table-notes">{html.escape(self.notes)}</p>' if self.notes else ""
        return (f'<div class="diffbook-table">\n<table>\n<caption>{label}'
                f'<span class="caption-text">{html.escape(self.caption)}</span></caption>\n'
                f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n{notes}</div>")

    def _repr_latex_(self) -> str:
        """The same table for the PDF of the book (LaTeX's tabular, numbers right-aligned, caption above)."""
        def tex(text: str) -> str:
            for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                         ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"),
                         ("^", r"\textasciicircum{}")):
                text = text.replace(a, b)
            return text

        right = {c for c in self.columns if self._numeric(c)}
        spec = "".join("r" if c in right else "l" for c in self.columns)
        label = f"Table {self.number}: " if self.number else ""
        rows = [" & ".join(tex(html.unescape(_cell(r[c], self.formats.get(c))).replace("\u2013", "--"))
                           for c in self.columns) + r" \\" for r in self.rows]
        return "\n".join([r"\begin{center}", r"\small", rf"\textbf{{{tex(label)}}}{tex(self.caption)}\\[0.3em]",
                          rf"\begin{{tabular}}{{{spec}}}", r"\hline",
                          " & ".join(tex(c) for c in self.columns) + r" \\", r"\hline", *rows, r"\hline",
                          r"\end{tabular}", r"\end{center}"])

    def __repr__(self) -> str:
        widths = {c: max(len(c), *(len(_cell(r[c], self.formats.get(c))) for r in self.rows)) for c in self.columns}
        lines = [f"Table {self.number}: {self.caption}" if self.number else self.caption,
                 "  ".join(c.rjust(widths[c]) for c in self.columns)]
        lines += ["  ".join(html.unescape(_cell(r[c], self.formats.get(c))).rjust(widths[c]) for c in self.columns)
                  for r in self.rows]
        return "\n".join(lines)


def table(rows: Sequence, *, caption: str, number: str | None = None, columns: Sequence[str] | None = None,
          formats: dict[str, str | Callable] | None = None, notes: str | None = None) -> Table:
    """A table of ``rows`` with a caption (and its number, e.g. ``"5.1"``, shown as "Table 5.1").

    ``rows`` are dicts (``columns`` picks and orders their keys; default: the first row's keys) or sequences
    (then ``columns`` names them). ``formats`` maps a column to a format string or a function of the value;
    ``notes`` is a line under the table (sources, what a symbol means).
    """
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("a table needs a caption (what it shows, in one sentence); pass caption='...'.")
    if number is not None and not (isinstance(number, str) and _NUMBER.match(number)):
        raise ValueError(f"number must be a string like '5.1' (chapter.table) or 'A.1' (an appendix), got {number!r}.")
    rows = list(rows)
    if not rows:
        raise ValueError("a table needs at least one row.")
    if isinstance(rows[0], dict):
        columns = list(columns) if columns is not None else list(rows[0])
        missing = [c for c in columns if any(c not in r for r in rows)]
        if missing:
            raise ValueError(f"columns {missing} are missing from some rows; every row needs every column.")
        rows = [{c: r[c] for c in columns} for r in rows]
    else:
        if columns is None:
            raise ValueError("rows given as sequences need columns=[...] to name them.")
        columns = list(columns)
        if any(len(r) != len(columns) for r in rows):
            raise ValueError(f"every row needs {len(columns)} values, one per column {columns}.")
        rows = [dict(zip(columns, r)) for r in rows]
    formats = dict(formats or {})
    unknown = sorted(set(formats) - set(columns))
    if unknown:
        raise ValueError(f"formats name columns {unknown} that the table does not have ({columns}).")
    return Table(rows, columns, caption, number, formats, notes)
