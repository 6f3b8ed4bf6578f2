"""Request -> features -> prediction, with the same pure functions the assets use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from finmath_assets.core.embeddings import Embedder
from finmath_assets.core.features import features_from_request
from finmath_assets.core.text import record_text
from serving.model_state import ModelState


@dataclass(frozen=True)
class Query:
    question: str
    tables: tuple[str, ...]
    topic: str


@dataclass(frozen=True)
class Answer:
    prediction: float
    model_name: str
    model_version: str
    features: dict[str, float]


def predict_batch(queries: Sequence[Query], embedder: Embedder, state: ModelState) -> list[Answer]:
    """Embed and predict a batch with whichever model is current when the batch starts."""
    served = state.current
    if served is None:
        raise RuntimeError("no model loaded")
    model = served.model
    texts = [record_text(q.question, q.tables) for q in queries]
    vectors = embedder.encode(texts, chunk_size=max(len(texts), 1))
    rows = [
        features_from_request(question=q.question, tables=q.tables, topic=q.topic, embedding=v)
        for q, v in zip(queries, vectors, strict=True)
    ]
    columns = model.feature_columns
    matrix = np.array([[row[c] for c in columns] for row in rows], dtype=np.float64)
    predictions = model.predict_matrix(matrix)
    return [
        Answer(
            prediction=p,
            model_name=model.name,
            model_version=model.version,
            features={c: row[c] for c in columns},
        )
        for p, row in zip(predictions, rows, strict=True)
    ]
