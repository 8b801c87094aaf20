"""Pages that quote the pipeline's tables: each printed table put in place of the page's own.

A page's Markdown table sits under a marker naming the printed table it quotes
(`<!-- table: claims (claims.json) -->`), so refreshing a page after a new run replaces each
quoted table whole. The prose around it is a person's to rewrite, and
:func:`stale_prose` says where: each number that read as a value of the old tables and reads as
none of the new ones.
"""

from __future__ import annotations

import re

from smec.errors import SmecError

MARK = re.compile(r"<!-- table: (.+?) -->$")


def marked_tables(lines: list[str], name: str) -> dict[str, tuple[int, int]]:
    """Each marked table of the page (called `name` in errors): the title its marker names, and
    the (first, past-last) lines of the table that follows the marker (blank lines between
    allowed)."""
    spans: dict[str, tuple[int, int]] = {}
    for i, line in enumerate(lines):
        mark = MARK.match(line.strip())
        if not mark:
            continue
        first = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), len(lines))
        last = first
        while last < len(lines) and lines[last].startswith("|"):
            last += 1
        if last == first or mark[1] in spans:
            what = "no table follows it" if last == first else "it is on the page twice"
            raise SmecError(f"{name}:{i + 1}: marker '{mark[1]}': {what}")
        spans[mark[1]] = (first, last)
    return spans


def refreshed(text: str, printed: list[tuple[str, str]], name: str) -> tuple[str, list[str]]:
    """The page `text` with each table under a `<!-- table: TITLE -->` marker replaced by the
    printed table of that title, and the titles that differed. A page quotes what it chooses:
    a printed table without a marker is left out, a table without one is left alone, and a
    marker naming no printed table is an error naming the page and the title."""
    lines = text.split("\n")
    spans = marked_tables(lines, name)
    tables = {title: table.split("\n") for title, table in printed}
    unknown = [t for t in spans if t not in tables]
    if unknown:
        raise SmecError(f"{name}: marker names no printed table: '{unknown[0]}'")
    stale = [t for t, (first, last) in spans.items() if lines[first:last] != tables[t]]
    for first, last, title in sorted(((*spans[t], t) for t in stale), reverse=True):
        lines[first:last] = tables[title]
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
