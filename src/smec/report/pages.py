"""Pages that quote the pipeline's tables: each printed table put in place of the page's own.

A page's Markdown table is matched to a printed one by its header row, so refreshing a page
after a new run replaces every table's body. The prose around it is a person's to rewrite, and
:func:`stale_prose` says where: each number that read as a value of the old tables and reads as
none of the new ones.
"""

from __future__ import annotations

import re

from smec.errors import SmecError


def page_tables(lines: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Each header row of the page's tables: the (first, past-last) line spans it heads."""
    spans: dict[str, list[tuple[int, int]]] = {}
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            spans.setdefault(lines[i], []).append((i, j))
            i = j
        else:
            i += 1
    return spans


def refreshed(text: str, printed: list[tuple[str, str]], name: str) -> tuple[str, list[str]]:
    """The page `text` with its tables replaced by the `printed` ones (title, table), and the
    titles of those that differed. A printed table the page (called `name` in errors) lacks,
    or has twice, is an error naming it."""
    lines = text.split("\n")
    spans = page_tables(lines)
    changes, stale = [], []
    for title, table in printed:
        rows = table.split("\n")
        found = spans.get(rows[0], [])
        if len(found) != 1:
            raise SmecError(f"{name}: {len(found)} tables headed like '{title}': {rows[0]}")
        first, last = found[0]
        if lines[first:last] != rows:
            stale.append(title)
            changes.append((first, last, rows))
    for first, last, rows in sorted(changes, reverse=True):
        lines[first:last] = rows
    return "\n".join(lines), stale


NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def table_values(text: str) -> list[float]:
    """Every number in the text's table rows."""
    rows = [line for line in text.split("\n") if line.startswith("|")]
    return [float(t.replace(",", "")) for row in rows for t in NUMBER.findall(row)]


def rounds_to(token: str, pool: list[float]) -> bool:
    """Whether some value of `pool` printed with `token`'s decimals reads as `token`."""
    x = float(token.replace(",", ""))
    half = 0.5 * 10.0 ** -len(token.partition(".")[2]) + 1e-9
    return any(abs(v - x) <= half for v in pool)


def stale_prose(text: str, old: list[float], new: list[float]) -> list[tuple[int, str]]:
    """(line number, number) of each number in `text`'s prose that the `old` tables' values
    explain and the `new` ones don't: the prose that quoted a table before it changed."""
    return [
        (n, token)
        for n, line in enumerate(text.split("\n"), 1)
        if not line.startswith("|")
        for token in NUMBER.findall(line)
        if rounds_to(token, old) and not rounds_to(token, new)
    ]
