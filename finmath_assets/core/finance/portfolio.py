"""Portfolio returns and risk: holding-period and mean returns, portfolio volatility, Sharpe
ratio, value at risk, EWMA weights.

Rates are decimals. Self-contained functions, ``math`` only.
"""

import math


def holding_period_return(
    beginning_value: float, ending_value: float, income: float = 0.0
) -> float:
    """Holding period return: (ending value - beginning value + income) / beginning value."""
    return (ending_value - beginning_value + income) / beginning_value


def geometric_mean_return(returns: list[float]) -> float:
    """Geometric mean (compound annual) return of periodic returns given as decimals."""
    growth = 1.0
    for r in returns:
        growth *= 1 + r
    return float(growth ** (1 / len(returns))) - 1


def two_asset_portfolio_std(
    weight_a: float, std_a: float, weight_b: float, std_b: float, correlation: float
) -> float:
    """Standard deviation (volatility) of a two-asset portfolio from weights, volatilities and
    their correlation."""
    variance = (
        weight_a**2 * std_a**2
        + weight_b**2 * std_b**2
        + 2 * weight_a * weight_b * correlation * std_a * std_b
    )
    return math.sqrt(variance)


def sharpe_ratio(portfolio_return: float, risk_free_rate: float, portfolio_std: float) -> float:
    """Sharpe ratio: excess return over the risk-free rate per unit of total risk."""
    return (portfolio_return - risk_free_rate) / portfolio_std


def parametric_value_at_risk(
    portfolio_value: float,
    volatility: float,
    z_score: float,
    horizon_periods: float = 1,
    expected_return: float = 0.0,
) -> float:
    """Parametric (normal) VaR in money: value * (z * volatility * sqrt(horizon) - expected
    return * horizon); volatility and return are per period (e.g. daily, horizon in days).
    z is 1.645 at 95 %, 2.326 at 99 %."""
    return portfolio_value * (
        z_score * volatility * math.sqrt(horizon_periods) - expected_return * horizon_periods
    )


def ewma_weight(decay_factor: float, lag: int) -> float:
    """Weight of the squared return `lag` periods old in an EWMA (RiskMetrics) variance
    forecast: (1 - lambda) * lambda^(lag - 1)."""
    return (1 - decay_factor) * decay_factor ** (lag - 1)
