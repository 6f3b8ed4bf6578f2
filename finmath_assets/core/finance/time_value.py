"""Time value of money: compounding, discounting, annuities, cash-flow rates.

Rates are decimals (5 % is 0.05). Every function is self-contained (it uses only ``math``) so
that its source can be handed to a generated program on its own.
"""

import math


def future_value(
    present_value: float, annual_rate: float, years: float, periods_per_year: int = 1
) -> float:
    """Future value of a lump sum compounded periods_per_year times a year (12 monthly, 365
    daily)."""
    return present_value * float((1 + annual_rate / periods_per_year) ** (years * periods_per_year))


def present_value(
    future_value: float, annual_rate: float, years: float, periods_per_year: int = 1
) -> float:
    """Present value of an amount received in `years`, discounted periods_per_year times a
    year."""
    return future_value / float((1 + annual_rate / periods_per_year) ** (years * periods_per_year))


def future_value_continuous(present_value: float, annual_rate: float, years: float) -> float:
    """Future value of a lump sum with continuous compounding: PV * e^(r t)."""
    return present_value * math.exp(annual_rate * years)


def effective_annual_rate(nominal_annual_rate: float, periods_per_year: int | None) -> float:
    """Effective annual rate (EAR) of a nominal rate compounded periods_per_year times a year;
    periods_per_year=None means continuous compounding."""
    if periods_per_year is None:
        return math.exp(nominal_annual_rate) - 1
    return (1 + nominal_annual_rate / periods_per_year) ** periods_per_year - 1


def annuity_present_value(
    payment: float, rate_per_period: float, periods: int, due: bool = False
) -> float:
    """Present value of a level annuity (ordinary: payments at period ends; due=True: at
    period starts)."""
    if rate_per_period == 0:
        value = payment * periods
    else:
        value = payment * (1 - (1 + rate_per_period) ** -periods) / rate_per_period
    return value * (1 + rate_per_period) if due else value


def annuity_future_value(
    payment: float, rate_per_period: float, periods: int, due: bool = False
) -> float:
    """Future value of a level annuity at the end of the last period (due=True: payments at
    period starts)."""
    if rate_per_period == 0:
        value = payment * periods
    else:
        value = payment * ((1 + rate_per_period) ** periods - 1) / rate_per_period
    return value * (1 + rate_per_period) if due else value


def annuity_payment(
    present_value: float, rate_per_period: float, periods: int, due: bool = False
) -> float:
    """Level payment that repays a loan or mortgage of present_value over `periods` payments
    (monthly loan: rate_per_period = annual rate / 12, periods = years * 12)."""
    if rate_per_period == 0:
        payment = present_value / periods
    else:
        payment = present_value * rate_per_period / (1 - (1 + rate_per_period) ** -periods)
    return payment / (1 + rate_per_period) if due else payment


def net_present_value(rate: float, cash_flows: list[float]) -> float:
    """NPV of cash flows at the end of periods 0, 1, 2, ... (cash_flows[0] is today's,
    usually the negative investment)."""
    return sum(cf / (1 + rate) ** t for t, cf in enumerate(cash_flows))


def internal_rate_of_return(cash_flows: list[float]) -> float:
    """IRR: the rate that makes the NPV of cash flows at periods 0, 1, 2, ... zero (also the
    money-weighted return)."""

    def npv(rate: float) -> float:
        return sum(cf / (1 + rate) ** t for t, cf in enumerate(cash_flows))

    low, high = -0.9999, 1.0
    while npv(high) * npv(low) > 0 and high < 1e6:
        high *= 2
    for _ in range(300):
        middle = (low + high) / 2
        if npv(low) * npv(middle) <= 0:
            high = middle
        else:
            low = middle
    return (low + high) / 2
