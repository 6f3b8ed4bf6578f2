"""What the commands print, and the error they stop with."""

from __future__ import annotations

MiB = 1024 * 1024


class Failure(Exception):
    """An error whose message says what is wrong and how to fix it."""


def log(msg: str = "") -> None:
    print(msg, flush=True)


def fmt_bytes(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"
