"""Fixed income: bond price, yield, duration, convexity, price sensitivity.

Rates are decimals; ``frequency`` is coupons a year (2: semi-annual). Prices are per the given
face value (100: per 100 of par). Self-contained functions, ``math`` only.
"""


def bond_price(
    face_value: float, coupon_rate: float, ytm: float, years: float, frequency: int = 1
) -> float:
    """Price of a fixed-coupon bond from its annual coupon rate and yield to maturity (YTM)."""
    periods = round(years * frequency)
    coupon = face_value * coupon_rate / frequency
    rate = ytm / frequency
    return (
        sum(coupon / (1 + rate) ** t for t in range(1, periods + 1))
        + face_value / (1 + rate) ** periods
    )


def bond_yield_to_maturity(
    price: float, face_value: float, coupon_rate: float, years: float, frequency: int = 1
) -> float:
    """Yield to maturity (annual, as a decimal) of a fixed-coupon bond at the given price."""
    periods = round(years * frequency)
    coupon = face_value * coupon_rate / frequency

    def value(annual: float) -> float:
        rate = annual / frequency
        return (
            sum(coupon / (1 + rate) ** t for t in range(1, periods + 1))
            + face_value / (1 + rate) ** periods
        )

    low, high = -0.99 * frequency, 10.0
    for _ in range(300):
        middle = (low + high) / 2
        if value(middle) > price:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def macaulay_duration(coupon_rate: float, ytm: float, years: float, frequency: int = 1) -> float:
    """Macaulay duration in years of a fixed-coupon bond (weighted average time of its cash
    flows)."""
    periods = round(years * frequency)
    coupon = 100 * coupon_rate / frequency
    rate = ytm / frequency
    flows = [coupon] * periods
    flows[-1] += 100
    price = sum(cf / (1 + rate) ** t for t, cf in enumerate(flows, start=1))
    weighted = sum(t * cf / (1 + rate) ** t for t, cf in enumerate(flows, start=1))
    return weighted / price / frequency


def modified_duration(coupon_rate: float, ytm: float, years: float, frequency: int = 1) -> float:
    """Modified duration of a fixed-coupon bond: Macaulay duration / (1 + ytm / frequency)."""
    periods = round(years * frequency)
    coupon = 100 * coupon_rate / frequency
    rate = ytm / frequency
    flows = [coupon] * periods
    flows[-1] += 100
    price = sum(cf / (1 + rate) ** t for t, cf in enumerate(flows, start=1))
    weighted = sum(t * cf / (1 + rate) ** t for t, cf in enumerate(flows, start=1))
    return weighted / price / frequency / (1 + rate)


def approximate_modified_duration(
    price: float, price_if_yield_down: float, price_if_yield_up: float, yield_change: float
) -> float:
    """Approximate (effective) modified duration from the prices after the yield falls and
    rises by yield_change (a decimal: 10 bps = 0.001)."""
    return (price_if_yield_down - price_if_yield_up) / (2 * yield_change * price)


def approximate_convexity(
    price: float, price_if_yield_down: float, price_if_yield_up: float, yield_change: float
) -> float:
    """Approximate (effective) convexity from the prices after the yield falls and rises by
    yield_change (a decimal)."""
    return (price_if_yield_down + price_if_yield_up - 2 * price) / (yield_change**2 * price)


def bond_price_change(modified_duration: float, convexity: float, yield_change: float) -> float:
    """Estimated percentage price change (as a decimal) for a yield change (a decimal; a fall
    is negative): -duration * dy + 1/2 * convexity * dy^2."""
    return -modified_duration * yield_change + 0.5 * convexity * yield_change**2


def price_value_of_basis_point(
    face_value: float, coupon_rate: float, ytm: float, years: float, frequency: int = 1
) -> float:
    """PVBP (PV01): the average price change of a fixed-coupon bond when its yield moves one
    basis point down and up."""
    periods = round(years * frequency)
    coupon = face_value * coupon_rate / frequency

    def value(annual: float) -> float:
        rate = annual / frequency
        return (
            sum(coupon / (1 + rate) ** t for t in range(1, periods + 1))
            + face_value / (1 + rate) ** periods
        )

    return (value(ytm - 0.0001) - value(ytm + 0.0001)) / 2
