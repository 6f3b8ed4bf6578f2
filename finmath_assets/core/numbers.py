"""Parse numbers the way they are written in finance questions and tables.

Handles thousands separators (``57,000``), currency signs (``$ 57,000``, ``€``, ``£``, ``¥``),
accounting negatives (``(1,234)``), unicode minus and dashes, percentages (``12.5%`` keeps the
value as written, 12.5, with unit ``%``), scale words (``k``, ``million``, ``mn``, ``bn``,
``trillion``) and footnote markers (``27,000*``, ``5%†``, ``1,151¹``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_MINUS_SIGNS = r"\-−–—‒"  # ASCII hyphen (escaped for [...]), unicode minus, en/em/figure dash
_CURRENCIES = {
    "US$": "$",
    "$": "$",
    "€": "€",
    "£": "£",
    "¥": "¥",
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
}
_SCALES: dict[str, float] = {
    "k": 1e3,
    "thousand": 1e3,
    "thousands": 1e3,
    "m": 1e6,
    "mm": 1e6,
    "mn": 1e6,
    "mln": 1e6,
    "million": 1e6,
    "millions": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
    "billions": 1e9,
    "t": 1e12,
    "tn": 1e12,
    "trillion": 1e12,
}
# Single letters only count when glued to the digits ("10k", "5M"); words may follow a space.
_SCALE_ALT = (
    r"(?:\s*(?P<scale_word>thousands?|millions?|billions?|trillion|mln|mn|mm|bn|tn)\b"
    r"|(?P<scale_letter>[kKmMbB])(?![A-Za-z]))"
)
_NUMBER_CORE = r"(?P<digits>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
_CURRENCY_ALT = r"(?P<currency>US\$|\$|€|£|¥|USD\s|EUR\s|GBP\s)"
_SIGN = rf"(?P<sign>[+{_MINUS_SIGNS}])"

# A whole cell: optional parenthesis (accounting negative), sign, currency, number, scale, %.
_CELL_RE = re.compile(
    rf"""^
    (?P<open>\()?\s*
    {_SIGN}?\s*
    {_CURRENCY_ALT}?\s*
    (?P<sign2>[+{_MINUS_SIGNS}])?\s*
    {_NUMBER_CORE}
    {_SCALE_ALT}?
    \s*(?P<percent>%)?
    \s*(?P<close>\))?
    \s*(?P<unit>{{unit}})?
    $""".replace("{unit}", r"years?|months?|days?|bps|basis\s+points|x|times|shares|units"),
    re.VERBOSE | re.IGNORECASE,
)
# Numbers inside running text: no parentheses (prose uses them for asides), word boundaries.
_TEXT_RE = re.compile(
    rf"""(?<![\w.,])(?<![A-Za-z]-)
    (?:(?P<sign>[{_MINUS_SIGNS}])(?=[\d.$€£¥]))?
    {_CURRENCY_ALT}?\s?
    {_NUMBER_CORE}
    (?![\d,]*\d)
    {_SCALE_ALT}?
    (?P<percent>\s?%)?
    """,
    re.VERBOSE,
)
_FOOTNOTE_TAIL = re.compile(r"(?:[*†‡§¶#¹²³⁴⁵⁶⁷⁸⁹⁰]+|\[\d+\]|\s+\([a-z]\))$")
_MARKUP = re.compile(r"[*_`]{1,3}")
_CURRENCY_BEFORE_PAREN = re.compile(r"^(US\$|\$|€|£|¥)\s*\(")


@dataclass(frozen=True)
class ParsedNumber:
    """A number read from text: its value as written (scaled) and a unit, if any."""

    value: float
    unit: str | None
    text: str


def _clean_cell(text: str) -> str:
    cleaned = text.strip()
    # footnote markers may be stacked after the value ("27,000*", "5%†", "1,151¹")
    while True:
        stripped = _FOOTNOTE_TAIL.sub("", cleaned).strip()
        if stripped == cleaned:
            break
        cleaned = stripped
    cleaned = _MARKUP.sub("", cleaned).strip()  # **bold**, _italic_, `code`
    cleaned = _CURRENCY_BEFORE_PAREN.sub(r"(\1", cleaned)  # "$(1,000)" -> "($1,000)"
    return cleaned.replace("\u00a0", " ").replace("\u2009", " ")


def _to_number(match: re.Match[str], negative: bool) -> ParsedNumber | None:
    value = float(match.group("digits").replace(",", ""))
    scale_word = match.group("scale_word")
    scale_letter = match.group("scale_letter")
    scale_key = (scale_word or scale_letter or "").lower()
    if scale_key:
        value *= _SCALES[scale_key]
    if negative:
        value = -value
    if not math.isfinite(value):
        return None
    unit: str | None = None
    if match.group("percent"):
        unit = "%"
    elif match.group("currency"):
        unit = _CURRENCIES[match.group("currency").strip()]
    return ParsedNumber(value=value, unit=unit, text=match.group(0).strip())


def parse_number(text: str | None) -> ParsedNumber | None:
    """Parse a whole table cell as one number, or return ``None`` for a text cell.

    >>> parse_number("$ 57,000").value
    57000.0
    >>> parse_number("(1,234)").value
    -1234.0
    """
    if text is None:
        return None
    cleaned = _clean_cell(text)
    if not cleaned:
        return None
    match = _CELL_RE.match(cleaned)
    if match is None:
        return None
    has_open, has_close = bool(match.group("open")), bool(match.group("close"))
    if has_open != has_close:
        return None
    signs = [s for s in (match.group("sign"), match.group("sign2")) if s]
    if len(signs) > 1:
        return None
    negative = has_open or (bool(signs) and signs[0] != "+")
    parsed = _to_number(match, negative)
    if parsed is None:
        return None
    unit = parsed.unit
    extra_unit = match.group("unit")
    if extra_unit and unit is None:
        unit = re.sub(r"\s+", " ", extra_unit.lower())
        unit = {"year": "years", "month": "months", "day": "days", "basis points": "bps"}.get(
            unit, unit
        )
    return ParsedNumber(value=parsed.value, unit=unit, text=text.strip())


def extract_numbers(text: str | None) -> list[ParsedNumber]:
    """Every number written in running text, in order of appearance.

    >>> [n.value for n in extract_numbers("a loss of $1.5 million at 12% over 3 years")]
    [1500000.0, 12.0, 3.0]
    """
    if not text:
        return []
    numbers: list[ParsedNumber] = []
    for match in _TEXT_RE.finditer(text):
        parsed = _to_number(match, negative=bool(match.group("sign")))
        if parsed is not None:
            numbers.append(parsed)
    return numbers
