"""The text of a record that gets embedded: the question, then each table."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

TABLE_SEPARATOR = "\n\n"


def record_text(question: str, tables: Sequence[str]) -> str:
    """Question followed by its tables, separated by blank lines (stripped of outer space)."""
    parts = [question.strip(), *(table.strip() for table in tables if table.strip())]
    return TABLE_SEPARATOR.join(parts)


def text_hash(text: str, model_id: str) -> str:
    """Cache key of an embedding: SHA-256 of the model id and the text."""
    digest = hashlib.sha256()
    digest.update(model_id.encode("utf-8"))
    digest.update(b"\x00")
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()
