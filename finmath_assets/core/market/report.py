"""The forecast backtest report: a per-series metrics table and one PNG figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from finmath_assets.core.market.forecasting import MODEL, Backtest


def metrics_table(backtests: dict[str, Backtest]) -> pd.DataFrame:
    """``target, unique_id, metric`` and one column per model (NaN where a model does not apply,
    e.g. the zero-return baseline on volume)."""
    frames = [b.metrics.assign(target=target) for target, b in backtests.items()]
    table = pd.concat(frames, ignore_index=True)
    models = [c for c in table.columns if c not in ("unique_id", "metric", "target")]
    return table[["target", "unique_id", "metric", *models]]


def plot_backtest(
    backtests: dict[str, Backtest], path: Path, *, show_series: str | None = None
) -> Path:
    """Mean MASE per series and model for each target, and the last origins of one series'
    volume forecast against the actuals. Written with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(backtests) + 1, figsize=(6 * (len(backtests) + 1), 4.2))
    for ax, (target, backtest) in zip(axes, backtests.items(), strict=False):
        mase = backtest.metrics[backtest.metrics["metric"] == "mase"].set_index("unique_id")
        mase[backtest.models].plot.bar(ax=ax, rot=0)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(f"{target}: MASE per series (lower is better)")
        ax.set_xlabel("")
    first = next(iter(backtests.values()))
    series = show_series or str(first.forecasts["unique_id"].iloc[0])
    rows = first.forecasts[first.forecasts["unique_id"] == series]
    rows = rows[rows["cutoff"] >= sorted(rows["cutoff"].unique())[-10]]
    ax = axes[-1]
    ax.plot(rows["ds"], rows["y"], color="black", linewidth=1, label="actual")
    for name in ("SeasonalNaive", MODEL):
        color = f"C{first.models.index(name)}"  # the same colour as in the bar charts
        for _, origin in rows.groupby("cutoff"):
            ax.plot(origin["ds"], origin[name], linewidth=1, color=color)
        ax.plot([], [], color=color, label=name)
    horizon = rows.groupby("cutoff").size().max()
    ax.set_title(f"{next(iter(backtests))} {series}: last 10 origins, h={horizon}")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
    return path
