"""Pages that quote the pipeline's tables: each printed table put in place of the page's own.

A page's Markdown table is matched to a printed one by its header row, so refreshing a page
after a new run replaces every table's body and leaves the prose around it for a person to
read against the new numbers.
"""

from __future__ import annotations

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
