"""Equity valuation: dividend discount models, multiples, cost of capital.

Rates are decimals. Self-contained functions, ``math`` only.
"""


def gordon_growth_value(next_dividend: float, required_return: float, growth_rate: float) -> float:
    """Value of a stock whose dividend grows at a constant rate forever (Gordon growth model):
    D1 / (r - g), where D1 is next year's dividend (D0 * (1 + g))."""
    return next_dividend / (required_return - growth_rate)


def multistage_dividend_value(
    dividends: list[float], required_return: float, terminal_growth_rate: float
) -> float:
    """Value today of explicit dividends for years 1..n (dividends[0] is year 1; use 0 for
    years without a dividend) plus a Gordon terminal value at year n growing at
    terminal_growth_rate afterwards."""
    n = len(dividends)
    explicit = sum(d / (1 + required_return) ** t for t, d in enumerate(dividends, start=1))
    terminal = dividends[-1] * (1 + terminal_growth_rate) / (required_return - terminal_growth_rate)
    return explicit + terminal / (1 + required_return) ** n


def preferred_stock_value(annual_dividend: float, required_return: float) -> float:
    """Value of a non-callable, non-convertible preferred share paying a fixed dividend
    forever (annual_dividend = dividend rate * par value)."""
    return annual_dividend / required_return


def justified_pe(
    payout_ratio: float, required_return: float, growth_rate: float, leading: bool = True
) -> float:
    """Justified price-to-earnings ratio from the dividend payout ratio: leading (forward)
    P/E = payout / (r - g); trailing P/E = payout * (1 + g) / (r - g)."""
    ratio = payout_ratio / (required_return - growth_rate)
    return ratio if leading else ratio * (1 + growth_rate)


def sustainable_growth_rate(return_on_equity: float, payout_ratio: float) -> float:
    """Sustainable growth rate g = ROE * retention ratio (1 - dividend payout ratio)."""
    return return_on_equity * (1 - payout_ratio)


def capm_required_return(risk_free_rate: float, beta: float, market_return: float) -> float:
    """Required (expected) return by the CAPM: rf + beta * (market return - rf)."""
    return risk_free_rate + beta * (market_return - risk_free_rate)


def weighted_average_cost_of_capital(
    equity_weight: float,
    cost_of_equity: float,
    debt_weight: float,
    pretax_cost_of_debt: float,
    tax_rate: float,
    preferred_weight: float = 0.0,
    cost_of_preferred: float = 0.0,
) -> float:
    """WACC: the weights (market values / total capital) times each component's cost, the cost
    of debt after tax."""
    return (
        equity_weight * cost_of_equity
        + debt_weight * pretax_cost_of_debt * (1 - tax_rate)
        + preferred_weight * cost_of_preferred
    )


def free_cash_flow_to_equity(
    net_income: float,
    depreciation: float,
    capital_expenditure: float,
    working_capital_increase: float,
    net_borrowing: float,
) -> float:
    """FCFE = net income + depreciation (non-cash charges) - fixed capital investment -
    working capital investment + net borrowing."""
    return (
        net_income + depreciation - capital_expenditure - working_capital_increase + net_borrowing
    )


def free_cash_flow_to_firm(
    net_income: float,
    depreciation: float,
    interest_expense: float,
    tax_rate: float,
    capital_expenditure: float,
    working_capital_increase: float,
) -> float:
    """FCFF = net income + depreciation + interest * (1 - tax rate) - fixed capital investment
    - working capital investment."""
    return (
        net_income
        + depreciation
        + interest_expense * (1 - tax_rate)
        - capital_expenditure
        - working_capital_increase
    )
