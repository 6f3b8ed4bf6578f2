"""raw_records -> validated_records + rejected_records."""

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

from finmath_assets.core.checksums import content_digest
from finmath_assets.core.records import RECORD_FIELDS, validate_records
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources import FinanceMathSourceResource

GROUP = "ingestion"


def _text_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _tables_or_none(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _payload(record: Mapping[str, Any]) -> str:
    # allow_nan keeps NaN/Infinity visible in the raw layer (DuckDB stores a float NaN as NULL)
    return json.dumps(record, ensure_ascii=False, allow_nan=True, default=str)


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name=GROUP,
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "huggingface"},
    description="Both FinanceMath splits exactly as loaded by `datasets`, one row per record, "
    "with the record's JSON in `payload` (typed columns are best-effort views of it).",
)
def raw_records(
    context: dg.AssetExecutionContext, financemath_source: FinanceMathSourceResource
) -> dg.Output[pd.DataFrame]:
    loaded = financemath_source.load()
    frame = pd.DataFrame(
        {
            "split": [row.split for row in loaded.rows],
            "row_index": [row.row_index for row in loaded.rows],
            "question_id": [_text_or_none(row.record.get("question_id")) for row in loaded.rows],
            "question": [_text_or_none(row.record.get("question")) for row in loaded.rows],
            "tables": [_tables_or_none(row.record.get("tables")) for row in loaded.rows],
            "python_solution": [
                _text_or_none(row.record.get("python_solution")) for row in loaded.rows
            ],
            "ground_truth": [_float_or_none(row.record.get("ground_truth")) for row in loaded.rows],
            "topic": [_text_or_none(row.record.get("topic")) for row in loaded.rows],
            "payload": [_payload(row.record) for row in loaded.rows],
        }
    )
    frame["row_index"] = frame["row_index"].astype("int64")
    frame["ground_truth"] = frame["ground_truth"].astype("float64")
    per_split = Counter(frame["split"])
    context.log.info(
        f"loaded {len(frame)} rows from {loaded.provenance['location']}: {dict(per_split)}"
    )
    # the data version is the content, not the load: re-reading identical records gives the same
    # version, and automation (``finmath.automation``) then requests nothing downstream
    version = content_digest(
        f"{row.split}\t{row.row_index}\t{row.payload}" for row in frame.itertuples(index=False)
    )
    return dg.Output(
        frame,
        data_version=dg.DataVersion(version),
        metadata={
            **{f"rows_{split}": count for split, count in per_split.items()},
            **loaded.provenance,
            "content_sha256": version,
        },
    )


REJECTED_COLUMNS = ["split", "row_index", "question_id", "reasons", "payload"]


@dg.multi_asset(
    outs={
        "validated_records": dg.AssetOut(
            key_prefix=KEY_PREFIX,
            group_name=GROUP,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            kinds={"duckdb", "pydantic"},
            description="Records that passed the pydantic contract (`FinanceMathRecord`).",
        ),
        "rejected_records": dg.AssetOut(
            key_prefix=KEY_PREFIX,
            group_name=GROUP,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            kinds={"duckdb", "pydantic"},
            description="Quarantine: every row that failed validation, with its raw payload and "
            "every reason. Nothing is dropped silently.",
        ),
    },
    ins={"raw_records": dg.AssetIn(key=[KEY_PREFIX, "raw_records"])},
    pool=DUCKDB_POOL,
)
def validate_raw_records(context: dg.AssetExecutionContext, raw_records: pd.DataFrame):
    rows = [
        (int(row.row_index), {**json.loads(row.payload), "split": row.split})
        for row in raw_records.itertuples(index=False)
    ]
    result = validate_records(rows)
    validated = pd.DataFrame(
        [record.model_dump() for record in result.valid],
        columns=["split", *RECORD_FIELDS],
    )
    validated["ground_truth"] = validated["ground_truth"].astype("float64")
    rejected = pd.DataFrame(
        {
            "split": pd.Series([r.split for r in result.rejected], dtype="string"),
            "row_index": pd.Series([r.row_index for r in result.rejected], dtype="int64"),
            "question_id": pd.Series([r.question_id for r in result.rejected], dtype="string"),
            "reasons": pd.Series(
                [json.dumps(list(r.reasons)) for r in result.rejected], dtype="string"
            ),
            "payload": pd.Series([_payload(r.payload) for r in result.rejected], dtype="string"),
        },
        columns=REJECTED_COLUMNS,
    )
    for rejection in result.rejected:
        context.log.warning(
            f"rejected {rejection.split}[{rejection.row_index}] "
            f"({rejection.question_id or 'no id'}): {'; '.join(rejection.reasons)}"
        )
    reason_counts = Counter(
        reason.split(":", 1)[0] for rejection in result.rejected for reason in rejection.reasons
    )
    labelled = int(validated["ground_truth"].notna().sum())
    yield dg.Output(
        validated,
        output_name="validated_records",
        metadata={
            "valid_rows": len(validated),
            "labelled_rows": labelled,
            "unlabelled_rows": len(validated) - labelled,
            "topics": dg.MetadataValue.json(dict(Counter(validated["topic"]))),
        },
    )
    yield dg.Output(
        rejected,
        output_name="rejected_records",
        metadata={
            "rejected_rows": len(rejected),
            "reject_rate": result.reject_rate,
            "rejections_by_field": dg.MetadataValue.json(dict(reason_counts)),
        },
    )
