"""The feature vector of one question: the single code path for training and serving.

``build_feature_vector`` takes what both sides have (question, topic, number of tables, the
parsed cells, the embedding) and returns an ordered ``{column: float}`` mapping whose keys are
exactly ``feature_columns(len(embedding))``. Missing statistics (no numbers at all) are NaN,
which LightGBM treats as missing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import cache

import numpy as np

from finmath_assets.core.numbers import ParsedNumber, extract_numbers
from finmath_assets.core.records import TOPICS
from finmath_assets.core.tables import Cell, parse_tables

STAT_NAMES: tuple[str, ...] = (
    "count",
    "mean",
    "std",
    "min",
    "max",
    "sum",
    "log_abs_mean",
    "log_abs_max",
)
META_COLUMNS: tuple[str, ...] = (
    "question_chars",
    "question_words",
    "n_tables",
    "n_cells",
    "n_numeric_cells",
    "numeric_cell_share",
    "n_question_numbers",
    "n_percent_numbers",
    "n_currency_numbers",
)
EMBEDDING_PREFIX = "emb_"
# The columns of the ``features`` table before the feature columns: who the row is, and its label.
ID_COLUMNS: tuple[str, ...] = ("question_id", "split", "topic", "ground_truth")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


TOPIC_COLUMNS: tuple[str, ...] = tuple(f"topic__{_slug(topic)}" for topic in TOPICS)


@cache
def _embedding_names(embedding_dim: int) -> tuple[str, ...]:
    return tuple(f"{EMBEDDING_PREFIX}{i:03d}" for i in range(embedding_dim))


def embedding_columns(embedding_dim: int) -> list[str]:
    return list(_embedding_names(embedding_dim))


def feature_columns(embedding_dim: int) -> list[str]:
    """The ordered feature column list for a given embedding size."""
    stats = [f"{prefix}_{name}" for prefix in ("tbl_value", "q_number") for name in STAT_NAMES]
    return [*META_COLUMNS, *TOPIC_COLUMNS, *stats, *embedding_columns(embedding_dim)]


def numeric_summary(prefix: str, values: Sequence[float]) -> dict[str, float]:
    """count, mean, population std, min, max, sum, and the mean/max of log10(1+|x|)."""
    if not values:
        nan = math.nan
        return {
            f"{prefix}_count": 0.0,
            **{f"{prefix}_{name}": nan for name in STAT_NAMES if name != "count"},
        }
    array = np.asarray(values, dtype=np.float64)
    magnitudes = np.log10(1.0 + np.abs(array))
    return {
        f"{prefix}_count": float(array.size),
        f"{prefix}_mean": float(array.mean()),
        f"{prefix}_std": float(array.std()),
        f"{prefix}_min": float(array.min()),
        f"{prefix}_max": float(array.max()),
        f"{prefix}_sum": float(array.sum()),
        f"{prefix}_log_abs_mean": float(magnitudes.mean()),
        f"{prefix}_log_abs_max": float(magnitudes.max()),
    }


def build_feature_vector(
    *,
    question: str,
    topic: str,
    n_tables: int,
    cells: Sequence[Cell],
    embedding: Sequence[float],
) -> dict[str, float]:
    """Features of one question from its parts (the asset path: cells come from the warehouse)."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; known topics: {', '.join(TOPICS)}")
    question_numbers: list[ParsedNumber] = extract_numbers(question)
    table_values = [cell.value for cell in cells if cell.value is not None]
    n_percent = sum(1 for n in question_numbers if n.unit == "%") + sum(
        1 for cell in cells if cell.unit == "%"
    )
    n_currency = sum(1 for n in question_numbers if n.unit in {"$", "€", "£", "¥"}) + sum(
        1 for cell in cells if cell.unit in {"$", "€", "£", "¥"}
    )
    vector: dict[str, float] = {
        "question_chars": float(len(question)),
        "question_words": float(len(question.split())),
        "n_tables": float(n_tables),
        "n_cells": float(len(cells)),
        "n_numeric_cells": float(len(table_values)),
        "numeric_cell_share": float(len(table_values) / len(cells)) if cells else math.nan,
        "n_question_numbers": float(len(question_numbers)),
        "n_percent_numbers": float(n_percent),
        "n_currency_numbers": float(n_currency),
    }
    vector.update({column: 0.0 for column in TOPIC_COLUMNS})
    vector[TOPIC_COLUMNS[TOPICS.index(topic)]] = 1.0
    vector.update(numeric_summary("tbl_value", table_values))
    vector.update(numeric_summary("q_number", [n.value for n in question_numbers]))
    embedding_array = np.asarray(embedding, dtype=np.float32)
    vector.update(
        zip(
            _embedding_names(embedding_array.size),  # built once: every request needs them
            embedding_array.astype(np.float64).tolist(),
            strict=True,
        )
    )
    return vector


def features_from_request(
    *, question: str, tables: Sequence[str], topic: str, embedding: Sequence[float]
) -> dict[str, float]:
    """Features straight from a raw question (the serving path): parse, then build."""
    return build_feature_vector(
        question=question,
        topic=topic,
        n_tables=len(tables),
        cells=parse_tables(tables),
        embedding=embedding,
    )
