"""market_prices -> price_forecaster + forecast_backtest_report.

For each target (log volume, log return) a rolling-origin backtest against statsforecast's
Naive and SeasonalNaive(5) (and, for returns, the zero-return random walk), then the forecaster
refitted on the whole history, logged with mlforecast's MLflow flavour, registered, and given
the ``champion`` alias only by the answer model's promotion path
(``core.registry.promote_challenger``): beat the best baseline and strictly beat the current
champion.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from finmath_assets.core.market.forecasting import (
    MODEL,
    TARGETS,
    BacktestConfig,
    backtest,
    fit_forecaster,
    series_frame,
)
from finmath_assets.core.market.registry import (
    BEST_BASELINE_METRIC,
    PRIMARY_METRIC,
    log_forecaster,
)
from finmath_assets.core.market.report import metrics_table, plot_backtest
from finmath_assets.core.registry import promote_challenger
from finmath_assets.defs.constants import DUCKDB_POOL, MARKET_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources import (
    ForecastingResource,
    MlflowTrackingResource,
    ProcessedFilesResource,
)

GROUP = "forecasting"
REPORT_PNG = "reports/forecast_backtest.png"


@dg.multi_asset(
    outs={
        "price_forecaster": dg.AssetOut(
            key_prefix=MARKET_PREFIX,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            kinds={"duckdb", "mlflow", "lightgbm"},
            description="One row per target: the registered forecaster version, its backtest "
            "MASE beside the best baseline's, and the promotion decision.",
        ),
        "forecast_backtest_report": dg.AssetOut(
            key_prefix=MARKET_PREFIX,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            kinds={"duckdb", "pandas"},
            description="MASE and sMAPE per series, target and model (forecaster and baselines) "
            "of the rolling-origin backtest; the plot is linked in the metadata.",
        ),
    },
    ins={"market_prices": dg.AssetIn(key=[MARKET_PREFIX, "market_prices"])},
    group_name=GROUP,
    pool=DUCKDB_POOL,
)
def train_price_forecasters(
    context: dg.AssetExecutionContext,
    market_prices: pd.DataFrame,
    forecasting: ForecastingResource,
    mlflow_tracking: MlflowTrackingResource,
    processed_files: ProcessedFilesResource,
):
    import mlflow

    if market_prices.empty:
        raise ValueError("market_prices is empty: materialise its partitions first")
    config = BacktestConfig(
        horizon=forecasting.horizon,
        windows=forecasting.backtest_windows,
        refit=forecasting.backtest_refit,
    )
    last_day = pd.Timestamp(market_prices["date"].max()).date()
    client = mlflow_tracking.client()
    backtests, rows = {}, []
    for target in TARGETS:
        series = series_frame(market_prices, target)
        context.log.info(
            f"{target}: backtesting {series['unique_id'].nunique()} series, {config.windows} "
            f"origins, h={config.horizon}, refit={config.refit}"
        )
        result = backtest(series, config, zero_baseline=target == "log_return")
        backtests[target] = result
        means = result.mean("mase")
        baselines = {k: v for k, v in means.items() if k != MODEL}
        best_name = min(baselines, key=baselines.get)
        name = forecasting.model_name(target)
        tags = {
            "dagster.run_id": context.run_id,
            "dagster.asset": f"{MARKET_PREFIX}/price_forecaster",
        }
        with mlflow_tracking.start_run(run_name=f"{target}-{context.run_id[:8]}", tags=tags):
            mlflow.log_params(
                {
                    "target": target,
                    "horizon": config.horizon,
                    "backtest_windows": config.windows,
                    "backtest_step": config.step,
                    "refit": config.refit,
                    "n_estimators": config.n_estimators,
                    "learning_rate": config.learning_rate,
                    "num_leaves": config.num_leaves,
                    "series": ",".join(sorted(series["unique_id"].unique())),
                    "excluded_from_backtest": ",".join(result.excluded) or "none",
                    "last_day": last_day.isoformat(),
                }
            )
            metrics = {
                PRIMARY_METRIC: means[MODEL],
                BEST_BASELINE_METRIC: baselines[best_name],
                **{f"backtest_mase_{k}": v for k, v in means.items()},
                **{f"backtest_smape_{k}": v for k, v in result.mean("smape").items()},
            }
            version = log_forecaster(
                fit_forecaster(series, config), name=name, target=target, metrics=metrics
            )
            promotion = promote_challenger(
                client,
                name,
                version,
                challenger_metric=means[MODEL],
                baseline_metric=baselines[best_name],
                metric=PRIMARY_METRIC,
                metric_label="backtest MASE",
                baseline_label=f"the best baseline ({best_name})",
            )
        context.log.info(f"registered {name} v{version}: {promotion.reason}")
        rows.append(
            {
                "target": target,
                "model_name": name,
                "version": version,
                "promoted": promotion.promoted,
                "promotion_reason": promotion.reason,
                "champion_version": promotion.champion_version,
                PRIMARY_METRIC: means[MODEL],
                "best_baseline": best_name,
                BEST_BASELINE_METRIC: baselines[best_name],
                "series_backtested": len(result.metrics["unique_id"].unique()),
                "excluded_from_backtest": ",".join(result.excluded),
                "last_day": pd.Timestamp(last_day),
                "trained_at": datetime.now(UTC).replace(tzinfo=None),
            }
        )
    summary = pd.DataFrame(rows)
    report = metrics_table(backtests)
    plot = processed_files.write_with(REPORT_PNG, lambda p: plot_backtest(backtests, p))
    yield dg.Output(
        summary,
        output_name="price_forecaster",
        metadata={
            f"{row.target}_mase": dg.MetadataValue.float(float(getattr(row, PRIMARY_METRIC)))
            for row in summary.itertuples()
        }
        | {f"{row.target}_promoted": bool(row.promoted) for row in summary.itertuples()}
        | {"summary": dg.MetadataValue.md(summary.drop(columns=["trained_at"]).to_markdown())},
    )
    means_table = report[report["metric"] == "mase"].groupby("target").mean(numeric_only=True)
    yield dg.Output(
        report,
        output_name="forecast_backtest_report",
        metadata={
            "plot": dg.MetadataValue.path(str(plot)),
            "mean_mase": dg.MetadataValue.md(means_table.round(3).to_markdown()),
            "origins": config.windows,
            "horizon": config.horizon,
        },
    )
