"""validated_records -> question_tables (long form, one row per non-empty cell)."""

import re
from dataclasses import asdict

import dagster as dg
import pandas as pd

from finmath_assets.core.tables import Cell, parse_tables
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX, WAREHOUSE_IO_MANAGER

CELL_COLUMNS = ["question_id", *Cell.__dataclass_fields__]
_HAS_DIGIT = re.compile(r"\d")


def cells_frame(question_ids: list[str], tables: list[list[str]]) -> pd.DataFrame:
    rows = [
        {"question_id": question_id, **asdict(cell)}
        for question_id, record_tables in zip(question_ids, tables, strict=True)
        for cell in parse_tables(record_tables)
    ]
    frame = pd.DataFrame(rows, columns=CELL_COLUMNS)
    for column in ("table_index", "block_index", "row_index", "column_index"):
        frame[column] = frame[column].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    return frame


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name="featurization",
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "pandas"},
    ins={"validated_records": dg.AssetIn(key=[KEY_PREFIX, "validated_records"])},
    description="Every markdown table cell: (question_id, table_index, block_index, row_index, "
    "column_index, header, cell_text, value, unit); `value` is null for text cells.",
)
def question_tables(
    context: dg.AssetExecutionContext, validated_records: pd.DataFrame
) -> pd.DataFrame:
    tables = [list(t) if t is not None else [] for t in validated_records["tables"]]
    frame = cells_frame(validated_records["question_id"].tolist(), tables)
    numeric_looking = frame["cell_text"].str.contains(_HAS_DIGIT)
    parsed = frame["value"].notna()
    share = float((parsed & numeric_looking).sum() / numeric_looking.sum()) if len(frame) else 1.0
    context.add_output_metadata(
        {
            "records_with_tables": int(sum(1 for t in tables if t)),
            "tables": int(sum(len(t) for t in tables)),
            "cells": len(frame),
            "numeric_cells": int(parsed.sum()),
            "numeric_looking_cells": int(numeric_looking.sum()),
            "numeric_looking_parsed_share": round(share, 4),
        }
    )
    return frame
