"""validated_records + question_tables + question_embeddings -> features (+ parquet export)."""

from collections import defaultdict

import dagster as dg
import numpy as np
import pandas as pd

from finmath_assets.core.features import ID_COLUMNS, build_feature_vector, feature_columns
from finmath_assets.core.tables import Cell
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources.processed_files import FEATURES_PARQUET, ProcessedFilesResource


def _cells_by_question(question_tables: pd.DataFrame) -> dict[str, list[Cell]]:
    grouped: dict[str, list[Cell]] = defaultdict(list)
    for row in question_tables.itertuples(index=False):
        value = None if pd.isna(row.value) else float(row.value)
        grouped[row.question_id].append(
            Cell(
                table_index=int(row.table_index),
                block_index=int(row.block_index),
                row_index=int(row.row_index),
                column_index=int(row.column_index),
                header=None if pd.isna(row.header) else row.header,
                cell_text=row.cell_text,
                value=value,
                unit=None if pd.isna(row.unit) else row.unit,
            )
        )
    return grouped


def build_features_frame(
    validated_records: pd.DataFrame,
    question_tables: pd.DataFrame,
    question_embeddings: pd.DataFrame,
) -> pd.DataFrame:
    """One row per validated record: id columns, then ``feature_columns(dim)`` in order."""
    cells = _cells_by_question(question_tables)
    vectors = dict(
        zip(question_embeddings["question_id"], question_embeddings["embedding"], strict=True)
    )
    missing = set(validated_records["question_id"]) - set(vectors)
    if missing:
        raise ValueError(f"{len(missing)} records have no embedding, e.g. {sorted(missing)[:3]}")
    rows = []
    for record in validated_records.itertuples(index=False):
        features = build_feature_vector(
            question=record.question,
            topic=record.topic,
            n_tables=0 if record.tables is None else len(record.tables),
            cells=cells.get(record.question_id, []),
            embedding=np.asarray(vectors[record.question_id], dtype=np.float32),
        )
        rows.append(
            {
                "question_id": record.question_id,
                "split": record.split,
                "topic": record.topic,
                "ground_truth": record.ground_truth,
                **features,
            }
        )
    dim = len(np.asarray(question_embeddings["embedding"].iloc[0])) if len(rows) else 0
    columns = [*ID_COLUMNS, *feature_columns(dim)]
    frame = pd.DataFrame(rows, columns=columns)
    frame[columns[3:]] = frame[columns[3:]].astype("float64")
    return frame


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name="featurization",
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "parquet"},
    ins={
        "validated_records": dg.AssetIn(key=[KEY_PREFIX, "validated_records"]),
        "question_tables": dg.AssetIn(key=[KEY_PREFIX, "question_tables"]),
        "question_embeddings": dg.AssetIn(key=[KEY_PREFIX, "question_embeddings"]),
    },
    description="Model features per question: numeric aggregations of table values and of the "
    "numbers in the question, metadata, topic one-hot and embedding dimensions. Also exported "
    "to FINMATH_HOME/processed/finance_math_features.parquet.",
)
def features(
    context: dg.AssetExecutionContext,
    validated_records: pd.DataFrame,
    question_tables: pd.DataFrame,
    question_embeddings: pd.DataFrame,
    processed_files: ProcessedFilesResource,
) -> pd.DataFrame:
    frame = build_features_frame(validated_records, question_tables, question_embeddings)
    path = processed_files.write_parquet(frame, FEATURES_PARQUET)
    columns = list(frame.columns[len(ID_COLUMNS) :])
    context.add_output_metadata(
        {
            "feature_count": len(columns),
            "feature_columns": dg.MetadataValue.json(columns),
            "labelled_rows": int(frame["ground_truth"].notna().sum()),
            "parquet_path": dg.MetadataValue.path(str(path)),
        }
    )
    return frame
