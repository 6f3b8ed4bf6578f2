"""The finance function library against textbook values (Hull, the CFA curriculum, standard
annuity tables), and each function's source run on its own as the sandbox runs it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from finmath_assets.core.finance import FUNCTIONS
from finmath_assets.core.finance.accounting import (
    declining_balance_depreciation,
    gain_on_sale,
    straight_line_depreciation,
)
from finmath_assets.core.finance.bonds import (
    approximate_convexity,
    approximate_modified_duration,
    bond_price,
    bond_price_change,
    bond_yield_to_maturity,
    macaulay_duration,
    modified_duration,
    price_value_of_basis_point,
)
from finmath_assets.core.finance.derivatives import (
    black_scholes_call,
    black_scholes_put,
    forward_price,
    futures_contracts_to_change_beta,
    margin_call_price,
)
from finmath_assets.core.finance.economics import laspeyres_price_index, paasche_price_index
from finmath_assets.core.finance.equity import (
    capm_required_return,
    free_cash_flow_to_equity,
    free_cash_flow_to_firm,
    gordon_growth_value,
    justified_pe,
    multistage_dividend_value,
    preferred_stock_value,
    sustainable_growth_rate,
    weighted_average_cost_of_capital,
)
from finmath_assets.core.finance.portfolio import (
    ewma_weight,
    geometric_mean_return,
    holding_period_return,
    parametric_value_at_risk,
    sharpe_ratio,
    two_asset_portfolio_std,
)
from finmath_assets.core.finance.time_value import (
    annuity_future_value,
    annuity_payment,
    annuity_present_value,
    effective_annual_rate,
    future_value,
    future_value_continuous,
    internal_rate_of_return,
    net_present_value,
    present_value,
)
from finmath_assets.core.llm.functions import LIBRARY

# (function, arguments, textbook value, absolute tolerance)
TEXTBOOK: list[tuple[Any, tuple[Any, ...], float, float]] = [
    # time value
    (present_value, (5000, 0.05, 3, 12), 4304.881, 1e-3),
    (future_value, (1000, 0.08, 10), 2158.925, 1e-3),
    (future_value_continuous, (1000, 0.05, 1), 1051.271, 1e-3),
    (effective_annual_rate, (0.12, 12), 0.126825, 1e-6),
    (effective_annual_rate, (0.12, None), 0.127497, 1e-6),
    (annuity_present_value, (100, 0.10, 5), 379.0787, 1e-4),
    (annuity_present_value, (100, 0.10, 5, True), 416.9865, 1e-4),
    (annuity_future_value, (100, 0.10, 5), 610.51, 1e-4),
    (annuity_payment, (200_000, 0.06 / 12, 360), 1199.101, 1e-3),  # a 30-year mortgage
    (net_present_value, (0.10, [-100, 60, 60]), 4.1322, 1e-4),
    (internal_rate_of_return, ([-100, 60, 60],), 0.130662, 1e-6),
    # bonds
    (bond_price, (100, 0.08, 0.06, 10), 114.7202, 1e-4),
    (bond_price, (100, 0.06, 0.08, 10, 2), 86.4097, 1e-4),
    (bond_price, (1000, 0.0, 0.05, 15), 481.0171, 1e-4),  # a zero-coupon bond
    (bond_yield_to_maturity, (86.4097, 100, 0.06, 10, 2), 0.08, 1e-6),
    (macaulay_duration, (0.06, 0.06, 5), 4.4651, 1e-4),
    (modified_duration, (0.06, 0.06, 5), 4.2124, 1e-4),
    (bond_price_change, (10.3829, 141.217, -0.005), 0.0536795, 1e-6),
    # equity
    (gordon_growth_value, (2.0, 0.10, 0.05), 40.0, 1e-9),
    (preferred_stock_value, (0.058 * 30, 0.05), 34.8, 1e-9),
    (justified_pe, (0.5, 0.15, 0.10), 10.0, 1e-9),
    (justified_pe, (0.5, 0.15, 0.10, False), 11.0, 1e-9),
    (sustainable_growth_rate, (0.15, 0.4), 0.09, 1e-12),
    (capm_required_return, (0.03, 1.2, 0.08), 0.09, 1e-12),
    (weighted_average_cost_of_capital, (0.6, 0.12, 0.4, 0.08, 0.3), 0.0944, 1e-12),
    (free_cash_flow_to_equity, (100, 20, 30, 5, 10), 95.0, 1e-12),
    (free_cash_flow_to_firm, (100, 20, 10, 0.3, 30, 5), 92.0, 1e-12),
    # derivatives (Hull, Options, Futures and Other Derivatives: the 42/40 example)
    (forward_price, (400, 0.05, 0.5, 0.03), 404.0201, 1e-4),
    (black_scholes_call, (42, 40, 0.10, 0.20, 0.5), 4.7594, 1e-4),
    (black_scholes_put, (42, 40, 0.10, 0.20, 0.5), 0.8086, 1e-4),
    (futures_contracts_to_change_beta, (10_000_000, 1.2, 0.9, 1000, 250), -12.0, 1e-9),
    (margin_call_price, (25, 0.5, 0.3), 17.857143, 1e-6),
    # portfolio
    (holding_period_return, (20, 24, 1), 0.25, 1e-12),
    (geometric_mean_return, ([0.10, -0.05, 0.20],), 0.078365, 1e-6),
    (two_asset_portfolio_std, (0.6, 0.2, 0.4, 0.3, 0.5), 0.207846, 1e-6),
    (sharpe_ratio, (0.12, 0.02, 0.2), 0.5, 1e-12),
    (parametric_value_at_risk, (1_000_000, 0.02, 1.645, 10), 104_038.94, 1e-2),
    (ewma_weight, (0.95, 4), 0.04286875, 1e-10),
    # accounting
    (straight_line_depreciation, (100_000, 10_000, 5), 18_000.0, 1e-9),
    (declining_balance_depreciation, (10_000, 1_000, 5, 1), 4_000.0, 1e-9),
    (declining_balance_depreciation, (10_000, 1_000, 5, 2), 2_400.0, 1e-9),
    (declining_balance_depreciation, (10_000, 1_000, 5, 5), 296.0, 1e-9),  # stops at salvage
    (gain_on_sale, (25_000, 100_000, 60_000), -15_000.0, 1e-9),
    # economics: two goods, base prices (10, 20), current (12, 25)
    (laspeyres_price_index, ([10, 20], [12, 25], [5, 2]), 122.222222, 1e-6),
    (paasche_price_index, ([10, 20], [12, 25], [3, 4]), 123.636364, 1e-6),
]


@pytest.mark.parametrize(
    ("function", "arguments", "expected", "tolerance"),
    TEXTBOOK,
    ids=[f"{case[0].__name__}{case[1]}" for case in TEXTBOOK],
)
def test_textbook_value(
    function: Any, arguments: tuple[Any, ...], expected: float, tolerance: float
) -> None:
    assert function(*arguments) == pytest.approx(expected, abs=tolerance)


def test_every_function_has_a_textbook_case() -> None:
    assert {f.__name__ for f in FUNCTIONS} - {case[0].__name__ for case in TEXTBOOK} == {
        "approximate_modified_duration",
        "approximate_convexity",
        "price_value_of_basis_point",
        "multistage_dividend_value",
    }  # these four are checked against the analytic results below


def test_the_approximations_agree_with_the_analytic_bond_measures() -> None:
    price = bond_price(100, 0.05, 0.06, 10)
    down, up = bond_price(100, 0.05, 0.0599, 10), bond_price(100, 0.05, 0.0601, 10)
    duration = approximate_modified_duration(price, down, up, 0.0001)
    assert duration == pytest.approx(modified_duration(0.05, 0.06, 10), abs=1e-4)
    convexity = approximate_convexity(price, down, up, 0.0001)
    # duration and convexity together predict a 100 bp move to within 0.02 % of the price
    estimate = price * (1 + bond_price_change(duration, convexity, 0.01))
    assert estimate == pytest.approx(bond_price(100, 0.05, 0.07, 10), rel=2e-4)
    pvbp = price_value_of_basis_point(100, 0.05, 0.06, 10)
    assert pvbp == pytest.approx(duration * price * 0.0001, rel=1e-4)


def test_dividends_growing_at_the_terminal_rate_value_as_gordon() -> None:
    dividends = [2.0 * 1.04**t for t in range(5)]  # D1..D5 growing at 4 %
    assert multistage_dividend_value(dividends, 0.09, 0.04) == pytest.approx(
        gordon_growth_value(2.0, 0.09, 0.04)
    )
    # no dividend for four years, then 2.5 growing at 5 % (required return 10 %)
    assert multistage_dividend_value([0, 0, 0, 0, 2.5], 0.10, 0.05) == pytest.approx(
        2.5 / 1.1**5 + 2.5 * 1.05 / 0.05 / 1.1**5
    )


def test_the_price_indexes_need_one_quantity_per_price() -> None:
    with pytest.raises(ValueError):
        laspeyres_price_index([10, 20], [12, 25], [5])


@pytest.mark.parametrize("case", TEXTBOOK, ids=[f"{c[0].__name__}{c[1]}" for c in TEXTBOOK])
def test_the_source_alone_computes_the_same(case: tuple[Any, ...]) -> None:
    """What the sandbox runs is the source in front of the program, with only ``math``
    imported: no function may lean on its module or on another function."""
    function, arguments = case[0], case[1]
    (entry,) = [f for f in LIBRARY if f.name == "calc_" + function.__name__]
    namespace: dict[str, Any] = {}
    exec("import math\n" + entry.source, namespace)  # our own library's source
    assert set(namespace) - {"__builtins__"} == {"math", entry.name}
    result = namespace[entry.name](*arguments)
    assert math.isclose(result, function(*arguments), rel_tol=0, abs_tol=0)
