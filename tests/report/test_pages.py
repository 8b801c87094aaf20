"""A page's quoted tables refreshed from the printed ones (smec.report.pages)."""

from __future__ import annotations

import pytest

from smec.errors import SmecError
from smec.report import pages

TABLE = "| arm | ratio |\n| --- | --- |\n| ce | 3.19 |\n| mse | 3.20 |"
PAGE = f"# Results\n\nMRL's ratio is 3.2.\n\n<!-- table: ratios -->\n{TABLE}\n\nThe rest.\n"


def test_a_stale_marked_table_is_replaced_and_named_while_the_prose_around_it_stays():
    new = TABLE.replace("3.19", "3.21") + "\n| rank | 3.02 |"
    text, stale = pages.refreshed(PAGE, [("ratios", new), ("other", TABLE)], "page.md")
    assert stale == ["ratios"]
    assert text == PAGE.replace(TABLE, new)


def test_a_page_whose_marked_tables_match_is_returned_as_it_was():
    assert pages.refreshed(PAGE, [("ratios", TABLE)], "page.md") == (PAGE, [])


def test_a_table_without_a_marker_is_left_alone():
    page = f"{TABLE}\n\n{PAGE}"
    new = TABLE.replace("3.19", "3.21")
    assert pages.refreshed(page, [("ratios", new)], "p.md")[0] == f"{TABLE}\n\n" + PAGE.replace(
        TABLE, new
    )


def test_a_marker_naming_no_printed_table_is_an_error_naming_the_page_and_the_title():
    with pytest.raises(SmecError, match=r"page\.md: marker names no printed table: 'ratios'"):
        pages.refreshed(PAGE, [("renamed", TABLE)], "page.md")


def test_a_marker_with_no_table_after_it_or_twice_on_the_page_is_an_error():
    with pytest.raises(SmecError, match=r"p\.md:1: marker 'ratios': no table follows it"):
        pages.refreshed("<!-- table: ratios -->\n\ntext\n", [("ratios", TABLE)], "p.md")
    with pytest.raises(SmecError, match="'ratios': it is on the page twice"):
        pages.refreshed(PAGE + PAGE, [("ratios", TABLE)], "p.md")


def test_prose_that_quoted_a_changed_cell_is_named_and_the_rest_is_not():
    old = pages.table_values(TABLE)
    new = pages.table_values(TABLE.replace("3.19", "3.31"))
    prose = "ce's ratio is 3.19, SMRL's 1.0;\nmse gives 3.2 and 40 epochs ran.\n"
    assert pages.stale_prose(prose, old, new) == [(1, "3.19")]


def test_a_number_reads_as_a_value_only_within_half_its_last_digit():
    assert pages.rounds_to("3.2", [3.24]) and pages.rounds_to("1,912", [1911.6])
    assert not pages.rounds_to("3.2", [3.26]) and not pages.rounds_to("3.20", [3.206])


def test_a_marked_table_ends_at_its_last_row_even_with_prose_right_after_it():
    page = f"<!-- table: ratios -->\n{TABLE}\n| odd | 1.0 |\nprose 3.19\n"
    new = TABLE.replace("3.19", "3.21")
    assert (
        pages.refreshed(page, [("ratios", new)], "p.md")[0]
        == f"<!-- table: ratios -->\n{new}\nprose 3.19\n"
    )
