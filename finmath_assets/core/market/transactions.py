"""A seeded synthetic card-transaction feed, and its contract.

No real transaction-level data ships in any package, so the feed is generated: one CSV per day,
``transactions_YYYY-MM-DD.csv`` in a landing folder, the way a processor's daily export arrives.
The generator is deterministic for (seed, day) and injects a small, known share of bad rows (a
negative amount, an unknown currency, a missing card, a timestamp on another day, a repeated
transaction id), so the quarantine has real work to do.

Columns: ``transaction_id`` (``tx-YYYYMMDD-NNNNNN``), ``timestamp`` (ISO 8601, UTC, on the file's
day), ``card_id`` (``card-NNNNNN``), ``merchant``, ``category`` (one of :data:`CATEGORIES`),
``amount`` (> 0, at most 50,000, in ``currency``), ``currency`` (USD, EUR or GBP), ``country``
(ISO 3166 alpha-2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from finmath_assets.core.market.quarantine import Validated, read_feed_file, validate_rows

Category = Literal["grocery", "fuel", "restaurants", "travel", "electronics", "utilities"]
CATEGORIES: tuple[str, ...] = get_args(Category)
Currency = Literal["USD", "EUR", "GBP"]
TRANSACTION_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "timestamp",
    "card_id",
    "merchant",
    "category",
    "amount",
    "currency",
    "country",
)
TRANSACTION_FILE_PATTERN = re.compile(r"^transactions_(\d{4}-\d{2}-\d{2})\.csv$")
# median amount per category (log-normal spread around it)
_MEDIAN_AMOUNT = {
    "grocery": 42.0,
    "fuel": 55.0,
    "restaurants": 31.0,
    "travel": 340.0,
    "electronics": 180.0,
    "utilities": 95.0,
}
_MERCHANTS = {c: [f"{c.title()} Merchant {i:02d}" for i in range(1, 13)] for c in CATEGORIES}
_COUNTRY_CURRENCY = {"US": "USD", "DE": "EUR", "FR": "EUR", "GB": "GBP"}
BAD_KINDS = ("negative_amount", "unknown_currency", "missing_card", "wrong_day", "repeated_id")


class CardTransaction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    transaction_id: str = Field(pattern=r"^tx-\d{8}-\d{6}$")
    timestamp: AwareDatetime
    card_id: str = Field(pattern=r"^card-\d{6}$")
    merchant: str = Field(min_length=1)
    category: Category
    amount: float = Field(gt=0, le=50_000, allow_inf_nan=False)
    currency: Currency
    country: str = Field(pattern=r"^[A-Z]{2}$")

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


def generate_transactions(
    day: date, *, seed: int = 7, rows: int = 500, bad_share: float = 0.01
) -> pd.DataFrame:
    """One day's feed, deterministic for (seed, day). ``bad_share`` of the rows (rounded, at least
    one when positive) are broken, cycling through :data:`BAD_KINDS`."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    if not 0 <= bad_share <= 1:
        raise ValueError("bad_share must be between 0 and 1")
    rng = np.random.default_rng([seed, day.toordinal()])
    categories = rng.choice(CATEGORIES, size=rows, p=[0.3, 0.15, 0.2, 0.05, 0.1, 0.2])
    countries = rng.choice(list(_COUNTRY_CURRENCY), size=rows, p=[0.6, 0.15, 0.1, 0.15])
    seconds = np.sort(rng.integers(0, 86_400, size=rows))
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            "transaction_id": [f"tx-{day:%Y%m%d}-{i:06d}" for i in range(rows)],
            "timestamp": [(start + timedelta(seconds=int(s))).isoformat() for s in seconds],
            "card_id": [f"card-{n:06d}" for n in rng.integers(0, 5_000, size=rows)],
            "merchant": [str(rng.choice(_MERCHANTS[c])) for c in categories],
            "category": categories,
            "amount": [
                round(float(_MEDIAN_AMOUNT[c] * rng.lognormal(0.0, 0.6)), 2) for c in categories
            ],
            "currency": [_COUNTRY_CURRENCY[c] for c in countries],
            "country": countries,
        },
        columns=list(TRANSACTION_COLUMNS),
    ).astype(object)
    n_bad = 0 if bad_share == 0 else max(1, round(rows * bad_share))
    for k, row in enumerate(rng.choice(rows, size=min(n_bad, rows), replace=False)):
        kind = BAD_KINDS[k % len(BAD_KINDS)]
        if kind == "negative_amount":
            frame.at[row, "amount"] = -abs(frame.at[row, "amount"])
        elif kind == "unknown_currency":
            frame.at[row, "currency"] = "XXX"
        elif kind == "missing_card":
            frame.at[row, "card_id"] = None
        elif kind == "wrong_day":
            frame.at[row, "timestamp"] = (start - timedelta(hours=1)).isoformat()
        elif kind == "repeated_id":
            frame.at[row, "transaction_id"] = frame.at[(row + 1) % rows, "transaction_id"]
    return frame


def write_transaction_file(directory: Path, day: date, **options: Any) -> Path:
    """Generate one day's feed into ``directory/transactions_YYYY-MM-DD.csv`` (atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"transactions_{day.isoformat()}.csv"
    staging = path.with_suffix(".csv.tmp")
    generate_transactions(day, **options).to_csv(staging, index=False)
    staging.replace(path)  # a sensor never sees half a file
    return path


def transaction_file_day(path: Path) -> date:
    match = TRANSACTION_FILE_PATTERN.match(Path(path).name)
    if not match:
        raise ValueError(
            f"{Path(path).name}: transaction files are named transactions_YYYY-MM-DD.csv"
        )
    return date.fromisoformat(match.group(1))


def read_transaction_file(path: Path) -> pd.DataFrame:
    return read_feed_file(
        path, TRANSACTION_COLUMNS, {c: str for c in TRANSACTION_COLUMNS if c != "amount"}
    )


def validate_transactions(
    rows: Iterable[tuple[str, int, Mapping[str, Any]]], *, expected_date: date | None = None
) -> Validated:
    """Valid transactions (timestamps in UTC) and the quarantine; a repeated id is rejected."""
    result = validate_rows(
        CardTransaction,
        rows,
        key=lambda tx: (tx.transaction_id,),
        day=lambda tx: tx.timestamp.date(),
        columns=TRANSACTION_COLUMNS,
        expected_date=expected_date,
    )
    result.valid = typed_transactions(result.valid)
    return result


def typed_transactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Transactions with the warehouse's column types, also when empty."""
    frame = frame.reindex(columns=list(TRANSACTION_COLUMNS))
    text = {c: "string" for c in TRANSACTION_COLUMNS if c not in ("timestamp", "amount")}
    frame = frame.astype({**text, "amount": "float64"})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame
