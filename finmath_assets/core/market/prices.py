"""Daily price bars: the contract, row-level validation with quarantine, and the two sources.

Sources: the bundled history (``bokeh-sampledata``: AAPL, GOOG, IBM, MSFT daily OHLCV and adjusted
close, 2000-03-01 to 2013-03-01, public-domain Quandl WIKI data) and drop-folder files
``prices_YYYY-MM-DD.csv`` (one trading day each) with the columns in :data:`PRICE_COLUMNS`.
As with the FinanceMath records, no row is dropped silently: each one is either a valid bar or
a rejection carrying its payload and every reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from finmath_assets.core.market.quarantine import (
    REJECTED_DTYPES,
    Validated,
    file_rejection,
    read_feed_file,
    rows_of,
    validate_rows,
)

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
PRICE_DTYPES = {
    "ticker": "string",  # typed even when empty: DuckDB cannot create a column from no values
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "int64",
    "adj_close": "float64",
}
PRICE_FILE_PATTERN = re.compile(r"^prices_(\d{4}-\d{2}-\d{2})\.csv$")


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


def validate_prices(
    rows: Iterable[tuple[str, int, Mapping[str, Any]]], *, expected_date: date | None = None
) -> Validated:
    """Validate ``(source, row_index, row)`` triples. A repeated (ticker, date) after the first
    is rejected; with ``expected_date`` (a one-day file), a bar of another day is rejected."""
    result = validate_rows(
        PriceBar,
        rows,
        key=lambda bar: (bar.ticker, bar.date),
        day=lambda bar: bar.date,
        columns=PRICE_COLUMNS,
        expected_date=expected_date,
    )
    result.valid = typed_prices(result.valid)
    return result


def typed_prices(frame: pd.DataFrame) -> pd.DataFrame:
    """Bars with the warehouse's column types (also when empty), sorted by ticker and date."""
    frame = frame.reindex(columns=list(PRICE_COLUMNS)).astype(PRICE_DTYPES)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame.sort_values(["ticker", "date"], ignore_index=True)


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
    """A drop-folder CSV as raw rows; a wrong header is an error naming the columns."""
    return read_feed_file(path, PRICE_COLUMNS, {"ticker": str, "date": str})


def price_files(landing_dir: Path | None) -> dict[date, Path]:
    """Drop-folder files by trading day (other names in the folder are ignored)."""
    if landing_dir is None or not Path(landing_dir).is_dir():
        return {}
    found = {}
    for path in sorted(Path(landing_dir).glob("prices_*.csv")):
        if PRICE_FILE_PATTERN.match(path.name):
            found[price_file_day(path)] = path
    return found


def load_price_window(
    start: date, end: date, *, landing_dir: Path | None, include_bundled: bool = True
) -> tuple[Validated, dict[str, int]]:
    """Validated bars of the trading days in ``[start, end)`` with their quarantine, and the row
    count per source. A day with a drop-folder file takes its bars from the file (a correction
    or a new day), other days from the bundled history. A file without the documented header is
    quarantined whole (one rejection naming the columns), so one bad file never hides the rest."""
    parts: list[Validated] = []
    sources: dict[str, int] = {}
    files = {day: path for day, path in price_files(landing_dir).items() if start <= day < end}
    if include_bundled:
        bundled = bundled_prices()
        in_window = bundled[(bundled["date"] >= start) & (bundled["date"] < end)]
        in_window = in_window[~in_window["date"].isin(list(files))]
        parts.append(validate_prices(rows_of(in_window, "bokeh-sampledata")))
        sources["bokeh-sampledata"] = len(in_window)
    for day, path in sorted(files.items()):
        try:
            raw = read_price_file(path)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
            parts.append(file_rejection(path.name, str(error)))
            sources[path.name] = 0
            continue
        parts.append(validate_prices(rows_of(raw, path.name), expected_date=day))
        sources[path.name] = len(raw)
    if not parts:
        parts.append(validate_prices([]))
    valid = typed_prices(
        pd.concat([p.valid for p in parts if not p.valid.empty] or [parts[0].valid])
    )
    rejected = pd.concat([p.rejected for p in parts], ignore_index=True).astype(REJECTED_DTYPES)
    return Validated(valid=valid, rejected=rejected), sources
