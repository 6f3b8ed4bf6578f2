"""Per-ticker daily features of price bars: returns, rolling volatility, volume z-scores and
calendar fields. Rolling windows look back ``LOOKBACK_DAYS`` trading days at most, which is how
far a partitioned run must read before its first day (the asset's partition mapping)."""

from __future__ import annotations

import numpy as np
import pandas as pd

VOLATILITY_WINDOW = 20
VOLUME_WINDOW = 20
LOOKBACK_DAYS = max(VOLATILITY_WINDOW, VOLUME_WINDOW) + 1  # +1: the first return needs a day
FEATURE_COLUMNS: tuple[str, ...] = (
    "log_return",
    "return_1d",
    "return_5d",
    "volatility_20d",
    "volume_zscore_20d",
    "range_pct",
    "day_of_week",
    "month",
    "is_month_end",
)


def price_features(prices: pd.DataFrame) -> pd.DataFrame:
    """``ticker, date`` plus :data:`FEATURE_COLUMNS`, one row per input bar. A value that needs
    more history than the input holds is NaN, never a guess (volatility and z-score need
    ``window`` bars; returns need the previous bar)."""
    frame = prices.sort_values(["ticker", "date"], ignore_index=True)
    by = frame.groupby("ticker", sort=False)
    log_price = np.log(frame["adj_close"])
    out = pd.DataFrame({"ticker": frame["ticker"], "date": pd.to_datetime(frame["date"])})
    out["log_return"] = log_price - log_price.groupby(frame["ticker"]).shift(1)
    out["return_1d"] = by["adj_close"].pct_change(1)
    out["return_5d"] = by["adj_close"].pct_change(5)
    out["volatility_20d"] = (
        out.groupby("ticker")["log_return"]
        .rolling(VOLATILITY_WINDOW, min_periods=VOLATILITY_WINDOW)
        .std()
        .reset_index(level=0, drop=True)
    ) * np.sqrt(252)
    log_volume = np.log1p(frame["volume"].astype("float64"))
    rolling = log_volume.groupby(frame["ticker"]).rolling(VOLUME_WINDOW, min_periods=VOLUME_WINDOW)
    mean = rolling.mean().reset_index(level=0, drop=True)
    std = rolling.std().reset_index(level=0, drop=True)
    out["volume_zscore_20d"] = (log_volume - mean) / std.replace(0.0, np.nan)
    out["range_pct"] = (frame["high"] - frame["low"]) / frame["close"]
    out["day_of_week"] = out["date"].dt.dayofweek.astype("int64")
    out["month"] = out["date"].dt.month.astype("int64")
    # the last business day of its month (holidays aside)
    out["is_month_end"] = (out["date"] + pd.offsets.BDay(1)).dt.month.ne(out["date"].dt.month)
    return out
