"""Economics: price indexes.

Self-contained functions, ``math`` only.
"""


def laspeyres_price_index(
    base_prices: list[float], current_prices: list[float], base_quantities: list[float]
) -> float:
    """Laspeyres price index (base period = 100): the base-period basket at current prices
    over the same basket at base prices, times 100."""
    current = sum(p * q for p, q in zip(current_prices, base_quantities, strict=True))
    base = sum(p * q for p, q in zip(base_prices, base_quantities, strict=True))
    return 100 * current / base


def paasche_price_index(
    base_prices: list[float], current_prices: list[float], current_quantities: list[float]
) -> float:
    """Paasche price index (base period = 100): the current-period basket at current prices
    over the same basket at base prices, times 100."""
    current = sum(p * q for p, q in zip(current_prices, current_quantities, strict=True))
    base = sum(p * q for p, q in zip(base_prices, current_quantities, strict=True))
    return 100 * current / base
