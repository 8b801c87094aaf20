"""A page's quoted tables refreshed from the printed ones (smec.report.pages)."""

from __future__ import annotations

import pytest

from smec.errors import SmecError
from smec.report import pages

TABLE = "| arm | ratio |\n| --- | --- |\n| ce | 3.19 |\n| mse | 3.20 |"
PAGE = f"# Results\n\nMRL's ratio is 3.2.\n\n{TABLE}\n\nThe rest.\n"


def test_a_stale_table_is_replaced_and_named_while_the_prose_around_it_stays():
    new = TABLE.replace("3.19", "3.21").replace("| mse | 3.20 |", "| mse | 3.20 |\n| rank | 3.02 |")
    text, stale = pages.refreshed(PAGE, [("ratios", new)], "page.md")
    assert stale == ["ratios"]
    assert text == PAGE.replace(TABLE, new)


def test_a_page_whose_tables_match_is_returned_as_it_was():
    assert pages.refreshed(PAGE, [("ratios", TABLE)], "page.md") == (PAGE, [])


def test_a_printed_table_the_page_lacks_is_an_error_naming_the_page_and_the_table():
    renamed = TABLE.replace("ratio", "low/high")
    with pytest.raises(SmecError, match=r"page\.md: 0 tables headed like 'ratios'"):
        pages.refreshed(PAGE, [("ratios", renamed)], "page.md")


def test_two_tables_under_one_header_are_an_error_not_a_guess():
    with pytest.raises(SmecError, match="2 tables headed like 'ratios'"):
        pages.refreshed(PAGE + "\n" + TABLE + "\n", [("ratios", TABLE)], "page.md")


def test_tables_side_by_side_are_told_apart_by_their_headers():
    other = "| width | nDCG@10 |\n| --- | --- |\n| 64 | 0.61 |"
    page = f"{TABLE}\n\n{other}\n"
    text, stale = pages.refreshed(page, [("widths", other.replace("0.61", "0.62"))], "p.md")
    assert (stale, text) == (["widths"], f"{TABLE}\n\n{other.replace('0.61', '0.62')}\n")


def test_prose_that_quoted_a_changed_cell_is_named_and_the_rest_is_not():
    old = pages.table_values(TABLE)
    new = pages.table_values(TABLE.replace("3.19", "3.31"))
    prose = "ce's ratio is 3.19, SMRL's 1.0;\nmse gives 3.2 and 40 epochs ran.\n"
    assert pages.stale_prose(prose, old, new) == [(1, "3.19")]


def test_a_number_reads_as_a_value_only_within_half_its_last_digit():
    assert pages.rounds_to("3.2", [3.24]) and pages.rounds_to("1,912", [1911.6])
    assert not pages.rounds_to("3.2", [3.26]) and not pages.rounds_to("3.20", [3.206])
