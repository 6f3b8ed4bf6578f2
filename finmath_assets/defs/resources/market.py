"""Where the market feeds come from: the bundled history and the landing (drop) folders."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from finmath_assets.settings import Settings


class MarketFeedsResource(dg.ConfigurableResource):
    landing_dir: str
    include_bundled: bool = True  # the bokeh-sampledata history (AAPL, FB, GOOG, IBM, MSFT)

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketFeedsResource:
        return cls(landing_dir=str(settings.landing_dir))

    @property
    def prices_dir(self) -> Path:
        """``prices_YYYY-MM-DD.csv``: one trading day of bars per file."""
        return Path(self.landing_dir) / "prices"

    @property
    def transactions_dir(self) -> Path:
        """``transactions_YYYY-MM-DD.csv``: one day of card transactions per file."""
        return Path(self.landing_dir) / "transactions"


class ForecastingResource(dg.ConfigurableResource):
    """How the market forecasters are backtested and registered (FINMATH_FORECAST_* settings)."""

    horizon: int
    backtest_windows: int
    backtest_refit: bool
    volume_model_name: str
    return_model_name: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ForecastingResource:
        return cls(
            horizon=settings.forecast_horizon,
            backtest_windows=settings.forecast_backtest_windows,
            backtest_refit=settings.forecast_backtest_refit,
            volume_model_name=settings.volume_forecaster_name,
            return_model_name=settings.return_forecaster_name,
        )

    def model_name(self, target: str) -> str:
        return self.volume_model_name if target == "log_volume" else self.return_model_name
