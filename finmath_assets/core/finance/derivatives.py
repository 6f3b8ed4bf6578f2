"""Derivatives: forwards, options, hedging with futures, margin.

Rates and volatilities are decimals a year; times are in years. Self-contained functions,
``math`` only.
"""

import math


def forward_price(
    spot_price: float,
    risk_free_rate: float,
    years: float,
    income_yield: float = 0.0,
    continuous: bool = True,
) -> float:
    """No-arbitrage forward (futures) price of an asset with a continuous dividend or income
    yield: S * e^((r - q) t); continuous=False compounds annually: S * ((1 + r) / (1 + q))^t."""
    if continuous:
        return spot_price * math.exp((risk_free_rate - income_yield) * years)
    return spot_price * float(((1 + risk_free_rate) / (1 + income_yield)) ** years)


def black_scholes_call(
    spot_price: float,
    strike_price: float,
    risk_free_rate: float,
    volatility: float,
    years: float,
    dividend_yield: float = 0.0,
) -> float:
    """Black-Scholes-Merton price of a European call option (continuous rates)."""
    d1 = (
        math.log(spot_price / strike_price)
        + (risk_free_rate - dividend_yield + volatility**2 / 2) * years
    ) / (volatility * math.sqrt(years))
    d2 = d1 - volatility * math.sqrt(years)

    def n(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    return spot_price * math.exp(-dividend_yield * years) * n(d1) - strike_price * math.exp(
        -risk_free_rate * years
    ) * n(d2)


def black_scholes_put(
    spot_price: float,
    strike_price: float,
    risk_free_rate: float,
    volatility: float,
    years: float,
    dividend_yield: float = 0.0,
) -> float:
    """Black-Scholes-Merton price of a European put option (continuous rates)."""
    d1 = (
        math.log(spot_price / strike_price)
        + (risk_free_rate - dividend_yield + volatility**2 / 2) * years
    ) / (volatility * math.sqrt(years))
    d2 = d1 - volatility * math.sqrt(years)

    def n(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    return strike_price * math.exp(-risk_free_rate * years) * n(-d2) - spot_price * math.exp(
        -dividend_yield * years
    ) * n(-d1)


def futures_contracts_to_change_beta(
    portfolio_value: float,
    current_beta: float,
    target_beta: float,
    futures_price: float,
    multiplier: float,
    futures_beta: float = 1.0,
) -> float:
    """Number of stock index futures to buy (positive) or sell (negative) to move a
    portfolio's beta: (target - current) / futures beta * value / (futures price * multiplier)."""
    return (
        (target_beta - current_beta) / futures_beta * portfolio_value / (futures_price * multiplier)
    )


def margin_call_price(
    purchase_price: float, initial_margin: float, maintenance_margin: float
) -> float:
    """Price at which a leveraged stock purchase receives a margin call:
    P0 * (1 - initial margin) / (1 - maintenance margin)."""
    return purchase_price * (1 - initial_margin) / (1 - maintenance_margin)
