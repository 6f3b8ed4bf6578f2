"""Number parsing, on cell and question texts taken from the real FinanceMath data."""

import math

import pytest

from finmath_assets.core.numbers import extract_numbers, parse_number


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("$ 57,000", 57000.0, "$"),  # validation-0
        ("    $ 18,000   ", 18000.0, "$"),
        ("12.5%", 12.5, "%"),
        ("5.1968%", 5.1968, "%"),  # test-508
        ("(1,234)", -1234.0, None),
        ("(35)", -35.0, None),  # test-312
        ("$(1,000)", -1000.0, "$"),
        ("($1,000)", -1000.0, "$"),
        ("−5.2", -5.2, None),  # unicode minus
        ("–3", -3.0, None),  # en dash
        ("-8", -8.0, None),  # test-816
        ("€ 2.5m", 2.5e6, "€"),
        ("£1,250", 1250.0, "£"),
        ("$5 million", 5e6, "$"),
        ("3.2bn", 3.2e9, None),
        ("10k", 1e4, None),
        ("2 billion", 2e9, None),
        ("27,000*", 27000.0, None),  # footnote marker
        ("1,151¹", 1151.0, None),
        ("5%†", 5.0, "%"),
        ("**470**", 470.0, None),  # bold cell
        ("8 years", 8.0, "years"),  # validation-0
        ("USD 100", 100.0, "$"),
        ("72,544", 72544.0, None),  # test-374
        (".75", 0.75, None),
    ],
)
def test_parse_number_reads_finance_formats(text: str, value: float, unit: str | None) -> None:
    parsed = parse_number(text)
    assert parsed is not None, text
    assert math.isclose(parsed.value, value, rel_tol=1e-12)
    assert parsed.unit == unit


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        None,
        "Original cost",
        "Declining balance, 20% per year",  # validation-0: a sentence, not a value
        "0.5398 0.5438 0.5478",  # test-169: several numbers in one cell
        "1.3935/1.3983",  # bid/ask pair
        "(1,234",  # unbalanced parenthesis
        "--5",
        'Class "1"',
        "1,2345",  # not a thousands grouping
    ],
)
def test_parse_number_leaves_text_cells_alone(text: str | None) -> None:
    assert parse_number(text) is None


def test_extract_numbers_from_a_real_question(real_by_id: dict) -> None:
    # validation-5: "... 40% will face bankruptcy ...: P(failure) = 0.40 ..."
    numbers = extract_numbers(real_by_id["validation-5"]["question"])
    assert [(n.value, n.unit) for n in numbers[:4]] == [
        (40.0, "%"),
        (0.4, None),
        (55.0, "%"),
        (0.55, None),
    ]


def test_extract_numbers_handles_scales_currency_and_ranges() -> None:
    numbers = extract_numbers("a $1.5 million loss, 12% over 3-5 years and 2,500 shares at €3.")
    assert [(n.value, n.unit) for n in numbers] == [
        (1.5e6, "$"),
        (12.0, "%"),
        (3.0, None),
        (5.0, None),
        (2500.0, None),
        (3.0, "€"),
    ]


def test_extract_numbers_ignores_digits_inside_words() -> None:
    assert extract_numbers("Q1 results of the AA2 tranche in validation-0") == []
