"""Parse the markdown tables of a FinanceMath record into long-form cells.

The real data is looser than GitHub-flavoured markdown, so a strict GFM parser loses tables:
some have no delimiter row (``test-374``, ``test-816``), some strings hold two tables
(``validation-174``), some carry a stray word before the table (``test-312``: "markdown") or
footnotes after it (``validation-0``). The rules here:

- a *block* is a run of consecutive lines that start with ``|``; anything else (titles,
  footnotes, blank lines) separates blocks and is ignored;
- a delimiter row (cells like ``---``, ``:---:``, ``-``) is skipped; when it is the second row of
  a block, the first row is that block's header;
- empty cells are not emitted; every other cell keeps its text and, when the whole cell is a
  number, its parsed ``value`` and ``unit`` (see :mod:`finmath_assets.core.numbers`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from finmath_assets.core.numbers import parse_number

_DELIMITER_CELL = re.compile(r"^\s*:?-+:?\s*$")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


@dataclass(frozen=True)
class Cell:
    """One non-empty data cell of a parsed table."""

    table_index: int
    block_index: int
    row_index: int
    column_index: int
    header: str | None
    cell_text: str
    value: float | None
    unit: str | None


def _split_row(line: str) -> list[str]:
    body = line.strip()
    body = body.removeprefix("|")
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [cell.strip().replace("\\|", "|") for cell in _UNESCAPED_PIPE.split(body)]


def _is_delimiter(cells: list[str]) -> bool:
    non_empty = [c for c in cells if c]
    return bool(non_empty) and all(_DELIMITER_CELL.match(c) for c in non_empty)


def _blocks(markdown: str) -> list[list[list[str]]]:
    blocks: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in markdown.splitlines():
        if line.strip().startswith("|"):
            current.append(_split_row(line))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def parse_table(markdown: str, table_index: int = 0) -> list[Cell]:
    """Cells of one markdown table string (which may hold several blocks)."""
    cells: list[Cell] = []
    for block_index, rows in enumerate(_blocks(markdown)):
        header: list[str] | None = None
        if len(rows) >= 2 and _is_delimiter(rows[1]):
            header, rows = rows[0], rows[2:]
        row_index = 0
        for row in rows:
            if _is_delimiter(row):
                continue
            for column_index, text in enumerate(row):
                if not text:
                    continue
                parsed = parse_number(text)
                column_header = None
                if header is not None and column_index < len(header):
                    column_header = header[column_index] or None
                cells.append(
                    Cell(
                        table_index=table_index,
                        block_index=block_index,
                        row_index=row_index,
                        column_index=column_index,
                        header=column_header,
                        cell_text=text,
                        value=parsed.value if parsed else None,
                        unit=parsed.unit if parsed else None,
                    )
                )
            row_index += 1
    return cells


def parse_tables(tables: Sequence[str]) -> list[Cell]:
    """Cells of every table of a record, ``table_index`` being the position in ``tables``."""
    cells: list[Cell] = []
    for table_index, markdown in enumerate(tables):
        cells.extend(parse_table(markdown, table_index))
    return cells
