"""Where the model, the downloaded parts and a server's pid file, state file and log go."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: constraints.txt, .cache/


def default_cache() -> Path:
    return Path(os.environ.get("FINMATH_LLM_CACHE_DIR") or ROOT / ".cache" / "llm")


def state_paths(cache: Path, port: int) -> tuple[Path, Path, Path]:
    """(pid file, state file, log) of the server on `port`."""
    return (
        cache / f"server-{port}.pid",
        cache / f"server-{port}.json",
        cache / f"server-{port}.log",
    )
