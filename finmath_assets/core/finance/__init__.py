"""A small library of finance functions (time value, bonds, equity, derivatives, portfolio
risk, accounting, economics), offered to the LLM's programs.

Each function is self-contained: plain Python and ``math`` only, no call to another function
of the library. :mod:`finmath_assets.core.llm.functions` retrieves the ones relevant to a
question, shows the model their signature and docstring, and puts their source in front of
the generated program before it runs in the sandbox. The docstrings are therefore written for
both a reader and the retriever: the first sentence names the quantity in finance words.
"""

from collections.abc import Callable
from typing import Any

from finmath_assets.core.finance import (
    accounting,
    bonds,
    derivatives,
    economics,
    equity,
    portfolio,
    time_value,
)

MODULES = (time_value, bonds, equity, derivatives, portfolio, accounting, economics)


def _public_functions(module: Any) -> list[Callable[..., float]]:
    return [
        value
        for name, value in vars(module).items()
        if callable(value)
        and not name.startswith("_")
        and getattr(value, "__module__", "") == module.__name__
    ]


FUNCTIONS: tuple[Callable[..., float], ...] = tuple(
    function for module in MODULES for function in _public_functions(module)
)
