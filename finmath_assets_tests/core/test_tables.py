"""Markdown table parsing on the awkward tables of the real data."""

from finmath_assets.core.tables import parse_table, parse_tables


def _grid(cells):
    return {(c.block_index, c.row_index, c.column_index): c for c in cells}


def test_trailing_footnotes_do_not_break_the_table(real_by_id: dict) -> None:
    cells = parse_table(real_by_id["validation-0"]["tables"][0])
    grid = _grid(cells)
    assert {c.block_index for c in cells} == {0}
    assert grid[(0, 0, 0)].cell_text == "Original cost"
    assert grid[(0, 0, 1)].value == 57000.0 and grid[(0, 0, 1)].header == "Truck*"
    assert grid[(0, 4, 2)].value == 21000.0 and grid[(0, 4, 2)].header == "Land**"
    assert grid[(0, 3, 1)].value is None  # "Declining balance, 20% per year"
    # the footnote lines ("\* The last sale ...") produced no cells
    assert not any("last sale" in c.cell_text for c in cells)
    assert max(c.row_index for c in cells) == 4


def test_two_tables_in_one_string_are_two_blocks(real_by_id: dict) -> None:
    cells = parse_table(real_by_id["validation-174"]["tables"][0])
    first = [c for c in cells if c.block_index == 0]
    second = [c for c in cells if c.block_index == 1]
    assert {c.header for c in first if c.column_index == 1} == {"Expected Yield (%)"}
    assert {c.header for c in second if c.column_index == 1} == {"Premium (%)"}
    assert [c.value for c in second if c.column_index == 1] == [0.8, 0.9, 8.4]
    assert second[0].row_index == 0  # row numbering restarts per block


def test_table_without_delimiter_row_keeps_every_row_as_data(real_by_id: dict) -> None:
    cells = parse_table(real_by_id["test-816"]["tables"][0])
    assert [c.value for c in cells] == [10, 20, -8, 2, -9, 5, 0, -8, 3, 21]
    assert all(c.header is None for c in cells)
    exhibit = _grid(parse_table(real_by_id["test-374"]["tables"][0]))
    assert exhibit[(0, 3, 1)].value == 72544.0  # "Start-of-year pension obligation | 72,544"


def test_stray_text_before_the_table_is_ignored(real_by_id: dict) -> None:
    cells = parse_table(real_by_id["test-312"]["tables"][0])  # starts with a line "markdown"
    grid = _grid(cells)
    assert grid[(0, 0, 0)].cell_text == "**Cosmetic firm B.S for the ending 31 December**"
    accumulated = [c for c in cells if c.row_index == 5]
    assert [c.value for c in accumulated] == [None, -35.0]  # "(35)" is negative
    assert accumulated[1].header == "2016"


def test_single_dash_delimiter_and_percent_cells(real_by_id: dict) -> None:
    cells = parse_table(real_by_id["test-531"]["tables"][0])  # "| - | - | - | - |"
    headers = {c.header for c in cells}
    assert "Roil=15%" in headers
    assert [c.value for c in cells if c.row_index == 0] == [None, 30.0, 0.0, 0.0]
    assert cells[1].unit == "%"


def test_table_index_follows_the_records_list(real_by_id: dict) -> None:
    record = real_by_id["test-508"]  # two tables, the second with two blocks
    cells = parse_tables(record["tables"])
    assert {c.table_index for c in cells} == {0, 1}
    assert {c.block_index for c in cells if c.table_index == 1} == {0, 1}


def test_empty_and_pipe_free_inputs_give_no_cells() -> None:
    assert parse_tables([]) == []
    assert parse_table("no table here\njust words") == []
    assert parse_table("| | |\n|---|---|\n| | |") == []


def test_escaped_pipes_stay_inside_a_cell() -> None:
    cells = parse_table("| a \\| b | 1 |\n|---|---|\n| x | 2 |")
    assert cells[0].header == "a | b"
    assert [c.value for c in cells] == [None, 2.0]


def test_every_real_table_parses(real_validation: list, real_test: list) -> None:
    records = [*real_validation, *real_test]
    cells = [c for r in records for c in parse_tables(r["tables"])]
    with_tables = [r for r in records if r["tables"]]
    assert len(with_tables) == 482
    # each record with a table yields cells, and most numeric-looking cells parse
    assert all(parse_tables(r["tables"]) for r in with_tables)
    numeric_looking = [c for c in cells if any(ch.isdigit() for ch in c.cell_text)]
    parsed = [c for c in numeric_looking if c.value is not None]
    assert len(parsed) / len(numeric_looking) > 0.85
