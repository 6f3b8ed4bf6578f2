"""Row validation with quarantine, shared by the market feeds (price bars, card transactions).

Each input row becomes either a validated model instance or a rejection carrying the raw row
and every reason, as in the FinanceMath spine: nothing is dropped silently. A repeated key after
the first is rejected, and so is a row dated outside the day its file holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from os import PathLike
from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError

REJECTED_COLUMNS: tuple[str, ...] = ("source", "row_index", "key", "reasons", "payload")
FILE_ROW_INDEX = -1  # the row_index of a whole-file rejection (the file could not be read)
# typed even when empty: DuckDB cannot create a table column from an untyped empty frame
REJECTED_DTYPES = {
    "source": "string",
    "row_index": "int64",
    "key": "string",
    "reasons": "string",
    "payload": "string",
}


@dataclass
class Validated:
    valid: pd.DataFrame
    rejected: pd.DataFrame  # REJECTED_COLUMNS

    @property
    def reject_rate(self) -> float:
        total = len(self.valid) + len(self.rejected)
        return len(self.rejected) / total if total else 0.0


def describe(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ())) or "row"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        message = "field is missing"
    return f"{location}: {message}"


def jsonable(value: Any) -> Any:
    """A cell as JSON can hold it (NaN/inf as text, dates as ISO strings, numpy as Python)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):
        return jsonable(value.item())
    return value


def validate_rows(
    model: type[BaseModel],
    rows: Iterable[tuple[str, int, Mapping[str, Any]]],
    *,
    key: Callable[[Any], tuple[object, ...]],
    day: Callable[[Any], date],
    columns: tuple[str, ...],
    expected_date: date | None = None,
) -> Validated:
    """Validate ``(source, row_index, row)`` triples against ``model``."""
    valid: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    seen: set[tuple[object, ...]] = set()
    for source, row_index, row in rows:
        payload = {k: jsonable(v) for k, v in row.items()}
        reasons: list[str] = []
        item = None
        try:
            item = model.model_validate(payload)
        except ValidationError as exc:
            reasons = [describe(e) for e in exc.errors(include_url=False)]
        if item is not None:
            if expected_date is not None and day(item) != expected_date:
                reasons.append(f"date: {day(item)} is not the file's day {expected_date}")
            elif key(item) in seen:
                reasons.append(f"duplicate: {' '.join(map(str, key(item)))} already seen")
        if reasons or item is None:
            rejected.append(
                {
                    "source": source,
                    "row_index": row_index,
                    "key": " ".join(str(payload.get(f)) for f in columns[:2]),
                    "reasons": json.dumps(reasons),
                    "payload": json.dumps(payload, default=str),
                }
            )
            continue
        seen.add(key(item))
        valid.append(item.model_dump())
    return Validated(
        valid=pd.DataFrame(valid, columns=list(columns)),
        rejected=pd.DataFrame(rejected, columns=list(REJECTED_COLUMNS)).astype(REJECTED_DTYPES),
    )


def rows_of(frame: pd.DataFrame, source: str) -> Iterable[tuple[str, int, Mapping[str, Any]]]:
    """A frame's rows as validation input, numbered from 0 within ``source``."""
    for index, row in enumerate(frame.to_dict(orient="records")):
        yield source, index, row


def read_feed_file(
    path: str | PathLike[str], columns: tuple[str, ...], dtypes: Mapping[str, Any]
) -> pd.DataFrame:
    """A landing-folder CSV as raw rows. A file without the documented header is an error naming
    the missing (or unexpected) columns, not a quarantine of every row."""
    from pathlib import Path

    name = Path(path).name
    frame = pd.read_csv(path, dtype=dict(dtypes))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}; expected {', '.join(columns)}")
    extra = [c for c in frame.columns if c not in columns]
    if extra:
        raise ValueError(f"{name}: unexpected columns {extra}")
    return frame.astype(object).where(frame.notna(), None)


def file_rejection(source: str, reason: str) -> Validated:
    """A whole file that cannot be read as rows (wrong header, not CSV): one rejection."""
    rejected = pd.DataFrame(
        [
            {
                "source": source,
                "row_index": FILE_ROW_INDEX,
                "key": source,
                "reasons": json.dumps([f"file: {reason}"]),
                "payload": json.dumps({"file": source}),
            }
        ],
        columns=list(REJECTED_COLUMNS),
    ).astype(REJECTED_DTYPES)
    return Validated(valid=pd.DataFrame(), rejected=rejected)
