"""Daily price bars: the contract, row-level validation with quarantine, and the two sources.

Sources: the bundled history (``bokeh-sampledata``: AAPL, GOOG, IBM, MSFT daily OHLCV and adjusted
close, 2000-03-01 to 2013-03-01, public-domain Quandl WIKI data) and drop-folder files
``prices_YYYY-MM-DD.csv`` (one trading day each) with the columns in :data:`PRICE_COLUMNS`.
As with the FinanceMath records, no row is dropped silently: each one is either a valid bar or
a rejection carrying its payload and every reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PRICE_COLUMNS: tuple[str, ...] = (
    "ticker",
    "date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "adj_close",
)
PRICE_FILE_PATTERN = re.compile(r"^prices_(\d{4}-\d{2}-\d{2})\.csv$")
REJECTED_COLUMNS: tuple[str, ...] = ("source", "row_index", "ticker", "date", "reasons", "payload")


class PriceBar(BaseModel):
    """One ticker's trading day. Prices are positive and finite, volume a non-negative whole
    number, and the bar consistent: low <= open, close <= high."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticker: str = Field(pattern=r"^[A-Z][A-Z0-9.\-]{0,9}$")
    date: date
    open: float = Field(gt=0, allow_inf_nan=False)
    high: float = Field(gt=0, allow_inf_nan=False)
    low: float = Field(gt=0, allow_inf_nan=False)
    close: float = Field(gt=0, allow_inf_nan=False)
    volume: int = Field(ge=0)
    adj_close: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _consistent(self) -> PriceBar:
        problems = []
        if self.low > min(self.open, self.close):
            problems.append(f"low {self.low} is above open/close")
        if self.high < max(self.open, self.close):
            problems.append(f"high {self.high} is below open/close")
        if self.date.weekday() >= 5:
            problems.append(f"{self.date} is a weekend day")
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass
class PriceValidation:
    valid: pd.DataFrame
    rejected: pd.DataFrame  # REJECTED_COLUMNS

    @property
    def reject_rate(self) -> float:
        total = len(self.valid) + len(self.rejected)
        return len(self.rejected) / total if total else 0.0


@dataclass
class _Collector:
    bars: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def _describe(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ())) or "bar"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        message = "field is missing"
    return f"{location}: {message}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, pd.Timestamp | date):
        return value.isoformat()[:10]
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return value


def validate_prices(
    rows: Iterable[tuple[str, int, Mapping[str, Any]]], *, expected_date: date | None = None
) -> PriceValidation:
    """Validate ``(source, row_index, row)`` triples. A repeated (ticker, date) after the first
    is rejected; with ``expected_date`` (a one-day file), a bar of another day is rejected."""
    out = _Collector()
    seen: set[tuple[str, date]] = set()
    for source, row_index, row in rows:
        payload = {k: _jsonable(v) for k, v in row.items()}
        reasons: list[str] = []
        bar: PriceBar | None = None
        try:
            bar = PriceBar.model_validate(payload)
        except ValidationError as exc:
            reasons = [_describe(e) for e in exc.errors(include_url=False)]
        if bar is not None:
            if expected_date is not None and bar.date != expected_date:
                reasons.append(f"date: {bar.date} is not the file's day {expected_date}")
            elif (bar.ticker, bar.date) in seen:
                reasons.append(f"duplicate: {bar.ticker} {bar.date} already seen")
        if reasons:
            out.rejected.append(
                {
                    "source": source,
                    "row_index": row_index,
                    "ticker": str(payload.get("ticker")),
                    "date": str(payload.get("date")),
                    "reasons": json.dumps(reasons),
                    "payload": json.dumps(payload, default=str),
                }
            )
            continue
        assert bar is not None
        seen.add((bar.ticker, bar.date))
        out.bars.append(bar.model_dump())
    valid = pd.DataFrame(out.bars, columns=list(PRICE_COLUMNS))
    valid["date"] = pd.to_datetime(valid["date"])
    valid["volume"] = valid["volume"].astype("int64")
    valid = valid.sort_values(["ticker", "date"], ignore_index=True)
    return PriceValidation(
        valid=valid, rejected=pd.DataFrame(out.rejected, columns=REJECTED_COLUMNS)
    )


def bundled_prices() -> pd.DataFrame:
    """The bundled daily history as raw rows (``bokeh-sampledata``, imported on demand)."""
    from bokeh_sampledata.stocks import data  # ~12k rows, shipped in the wheel

    frame = data.loc[:, list(PRICE_COLUMNS)].copy()
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame


def price_file_day(path: Path) -> date:
    """The trading day a drop-folder file holds, from its name ``prices_YYYY-MM-DD.csv``."""
    match = PRICE_FILE_PATTERN.match(Path(path).name)
    if not match:
        raise ValueError(f"{Path(path).name}: price files are named prices_YYYY-MM-DD.csv")
    return date.fromisoformat(match.group(1))


def read_price_file(path: Path) -> pd.DataFrame:
    """A drop-folder CSV as raw rows (strings and numbers as pandas read them). A file without
    the documented header is an error naming the missing columns, not a quarantine of every row."""
    frame = pd.read_csv(path, dtype={"ticker": str, "date": str})
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{Path(path).name}: missing columns {missing}; expected {', '.join(PRICE_COLUMNS)}"
        )
    extra = [c for c in frame.columns if c not in PRICE_COLUMNS]
    if extra:
        raise ValueError(f"{Path(path).name}: unexpected columns {extra}")
    return frame.astype(object).where(frame.notna(), None)


def rows_of(frame: pd.DataFrame, source: str) -> Iterable[tuple[str, int, Mapping[str, Any]]]:
    for index, row in enumerate(frame.to_dict(orient="records")):
        yield source, index, row
