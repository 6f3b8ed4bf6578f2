"""Accounting: depreciation and gains on disposal.

Self-contained functions, ``math`` only.
"""


def straight_line_depreciation(
    cost: float, salvage_value: float, useful_life_years: float
) -> float:
    """Annual straight-line depreciation expense: (cost - salvage value) / useful life."""
    return (cost - salvage_value) / useful_life_years


def declining_balance_depreciation(
    cost: float, salvage_value: float, useful_life_years: float, year: int, factor: float = 2.0
) -> float:
    """Depreciation expense in `year` (1 = first) under the declining-balance method (factor 2:
    double-declining balance), never taking book value below salvage value."""
    book_value = cost
    expense = 0.0
    for _ in range(year):
        expense = min(book_value * factor / useful_life_years, book_value - salvage_value)
        expense = max(expense, 0.0)
        book_value -= expense
    return expense


def gain_on_sale(
    sale_proceeds: float, original_cost: float, accumulated_depreciation: float
) -> float:
    """Gain (positive) or loss (negative) on selling an asset: proceeds - (cost - accumulated
    depreciation)."""
    return sale_proceeds - (original_cost - accumulated_depreciation)
