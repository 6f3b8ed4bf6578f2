"""Rolling-origin backtest of the market forecaster on the bundled history (`make bench-forecast`).

The issue's protocol: h=5 business days, 50 weekly origins, every series long enough for it;
LightGBM (mlforecast) refitted at every origin against Naive and SeasonalNaive(5) on the same
cut-offs. Prints mean MASE and sMAPE per target and the time each backtest took.
"""

from __future__ import annotations

import time

from finmath_assets.core.market.forecasting import TARGETS, BacktestConfig, backtest, series_frame
from finmath_assets.core.market.prices import bundled_prices, validate_prices
from finmath_assets.core.market.quarantine import rows_of


def main() -> None:
    prices = validate_prices(rows_of(bundled_prices(), "bokeh-sampledata")).valid
    for refit in (True, False):
        config = BacktestConfig(refit=refit)
        for target in TARGETS:
            started = time.perf_counter()
            series = series_frame(prices, target)
            result = backtest(series, config, zero_baseline=target == "log_return")
            seconds = time.perf_counter() - started
            mase, smape = result.mean("mase"), result.mean("smape")
            print(
                f"{target:<11} refit={refit!s:<5} {seconds:5.1f} s  "
                + "  ".join(f"{m}: MASE {mase[m]:.3f} sMAPE {smape[m]:.4f}" for m in mase)
                + (f"  (excluded: {', '.join(result.excluded)})" if result.excluded else "")
            )


if __name__ == "__main__":
    main()
