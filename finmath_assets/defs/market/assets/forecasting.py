"""market_prices -> price_forecaster + forecast_backtest_report.

For each target (log volume, log return) a rolling-origin backtest against statsforecast's
Naive and SeasonalNaive(5) (and, for returns, the zero-return random walk), then the forecaster
refitted on the whole history, logged with mlforecast's MLflow flavour, registered, and given
the ``champion`` alias only by the answer model's promotion path
(``core.registry.promote_challenger``): beat the best baseline and strictly beat the current
champion.

When a registered version of a target's forecaster already carries the training key of this run
(``core.market.registry.forecaster_training_key``: same series, settings and code), nothing is
backtested, fitted, logged or registered for that target: the version is reused and its backtest
read back from its run, so both outputs keep their shape.
"""

from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd

from finmath_assets.core.market.forecasting import (
    MODEL,
    TARGETS,
    Backtest,
    BacktestConfig,
    backtest,
    fit_forecaster,
    series_frame,
)
from finmath_assets.core.market.registry import (
    BEST_BASELINE_METRIC,
    EXCLUDED_PARAM,
    PRIMARY_METRIC,
    forecaster_training_key,
    log_backtest,
    log_forecaster,
    read_backtest,
)
from finmath_assets.core.market.report import metrics_table, plot_backtest
from finmath_assets.core.registry import (
    TRAINING_KEY_TAG,
    find_reusable_version,
    promote_challenger,
)
from finmath_assets.defs.constants import DUCKDB_POOL, MARKET_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources import (
    ForecastingResource,
    MlflowTrackingResource,
    ProcessedFilesResource,
)

GROUP = "forecasting"
REPORT_PNG = "reports/forecast_backtest.png"


def _utc_naive(epoch_ms: int | None) -> datetime:
    """An MLflow run's start (epoch milliseconds), or now, as a naive UTC datetime."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC) if epoch_ms else datetime.now(UTC)
    return moment.replace(tzinfo=None)


def _row(target: str, name: str, result: Backtest, last_day: date) -> dict:
    """One ``price_forecaster`` row (in its column order) without the version and decision."""
    means = result.mean("mase")
    baselines = {k: v for k, v in means.items() if k != MODEL}
    best_name = min(baselines, key=baselines.__getitem__)
    return {
        "target": target,
        "model_name": name,
        "version": None,
        "promoted": None,
        "promotion_reason": None,
        "champion_version": None,
        PRIMARY_METRIC: means[MODEL],
        "best_baseline": best_name,
        BEST_BASELINE_METRIC: baselines[best_name],
        "series_backtested": len(result.metrics["unique_id"].unique()),
        "excluded_from_backtest": ",".join(result.excluded),
        "last_day": pd.Timestamp(last_day),
        "trained_at": None,
    }


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
    reused_versions: dict[str, str] = {}
    for target in TARGETS:
        series = series_frame(market_prices, target)
        name = forecasting.model_name(target)
        key = forecaster_training_key(series, config, target)
        reused = find_reusable_version(client, name, key, metric=PRIMARY_METRIC)
        if reused is not None:
            try:
                result = read_backtest(client, reused.run_id)
            except Exception as error:  # an artefact store that lost it: train a new version
                context.log.warning(
                    f"{name} v{reused.version} has training key {key[:12]} but its backtest "
                    f"cannot be read ({error}): training anew"
                )
                reused = None
        if reused is None:
            context.log.info(
                f"{target}: backtesting {series['unique_id'].nunique()} series, {config.windows} "
                f"origins, h={config.horizon}, refit={config.refit}"
            )
            result = backtest(series, config, zero_baseline=target == "log_return")
        backtests[target] = result
        means = result.mean("mase")
        baselines = {k: v for k, v in means.items() if k != MODEL}
        best_name = min(baselines, key=baselines.get)
        if reused is not None:
            reason = reused.reason("training series and parameters")
            context.log.info(
                f"{target}: reused {name} v{reused.version} (training key {key[:12]}): {reason}; "
                "nothing backtested, fitted or registered"
            )
            reused_versions[target] = reused.version
            rows.append(
                _row(target, name, result, last_day)
                | {
                    "version": reused.version,
                    "promoted": False,
                    "promotion_reason": reason,
                    "champion_version": reused.champion_version,
                    "trained_at": _utc_naive(reused.trained_at),
                }
            )
            continue
        tags = {
            "dagster.run_id": context.run_id,
            "dagster.asset": f"{MARKET_PREFIX}/price_forecaster",
            TRAINING_KEY_TAG: key,
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
                    EXCLUDED_PARAM: ",".join(result.excluded) or "none",
                    "last_day": last_day.isoformat(),
                }
            )
            metrics = {
                PRIMARY_METRIC: means[MODEL],
                BEST_BASELINE_METRIC: baselines[best_name],
                **{f"backtest_mase_{k}": v for k, v in means.items()},
                **{f"backtest_smape_{k}": v for k, v in result.mean("smape").items()},
            }
            log_backtest(result)
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
                training_key=key,
            )
        context.log.info(f"registered {name} v{version}: {promotion.reason}")
        rows.append(
            _row(target, name, result, last_day)
            | {
                "version": version,
                "promoted": promotion.promoted,
                "promotion_reason": promotion.reason,
                "champion_version": promotion.champion_version,
                "trained_at": _utc_naive(None),
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
        | {f"{row.target}_version": str(row.version) for row in summary.itertuples()}
        | {f"{t}_reused": t in reused_versions for t in TARGETS}
        | {"reused": len(reused_versions) == len(TARGETS)}
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
