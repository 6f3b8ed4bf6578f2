"""Solved examples similar to a question, for the improved prompt's few-shot.

The bank is the labelled records (an expert ``python_solution`` and a ``ground_truth``) with the
MiniLM embeddings the pipeline already stored: ``finmath.validated_records`` joined to
``finmath.question_embeddings``. Loading reads the warehouse once through a read-only DuckDB
connection that is closed before :meth:`ExampleBank.load` returns, so a service holding a bank
never holds a lock on the file or writes to it; querying is a dot product against the in-memory
matrix (vectors are L2-normalised, so that is the cosine).

A new question is embedded from :func:`finmath_assets.core.text.record_text`, the same text the
``question_embeddings`` asset embeds, and only with an embedder of the same ``model_id`` as the
stored vectors (anything else would compare vectors of different spaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import duckdb
import numpy as np

from finmath_assets.core.text import record_text

if TYPE_CHECKING:  # pandas only when converting the bank to or from a frame
    import pandas as pd

SCHEMA = "finmath"
# the bank as a file in processed/: written by the solved_examples asset, read by the service
SOLVED_EXAMPLES_FILE = "solved_examples.parquet"
_QUERY = f"""
SELECT r.question_id, r.question, r.tables, r.python_solution, r.ground_truth, r.topic,
       e.model_id, e.embedding
FROM {SCHEMA}.validated_records AS r
JOIN {SCHEMA}.question_embeddings AS e USING (question_id)
WHERE r.ground_truth IS NOT NULL
  AND r.python_solution IS NOT NULL
  AND trim(r.python_solution) <> ''
ORDER BY r.question_id
"""  # unlabelled (test) rows carry '' as python_solution, not NULL


class ExampleBankError(RuntimeError):
    """The warehouse cannot provide the example bank (missing file or tables, locked, mixed
    embedding models)."""


class QueryEmbedder(Protocol):
    """What retrieval needs of :class:`finmath_assets.core.embeddings.Embedder`."""

    model_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Example:
    question_id: str
    question: str
    tables: tuple[str, ...]
    python_solution: str
    ground_truth: float
    topic: str


@dataclass(frozen=True)
class Retrieved:
    example: Example
    similarity: float  # cosine, in [-1, 1]


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row (or the vector) scaled to length 1; zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def cosine_scores(unit_vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The cosine of each row of ``unit_vectors`` (already unit length) with ``query``."""
    vector = np.asarray(query, dtype=np.float32).reshape(-1)
    if vector.shape[0] != unit_vectors.shape[1]:
        raise ValueError(
            f"query has {vector.shape[0]} dimensions, the vectors {unit_vectors.shape[1]}"
        )
    return np.asarray(unit_vectors @ unit_rows(vector))


class ExampleBank:
    """Labelled examples and their unit vectors, searchable by cosine similarity."""

    def __init__(self, examples: Sequence[Example], vectors: np.ndarray, model_id: str) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(examples):
            raise ValueError(
                f"need one vector per example: {len(examples)} examples, vectors {vectors.shape}"
            )
        self.examples: tuple[Example, ...] = tuple(examples)
        self.vectors = unit_rows(vectors)
        self.model_id = model_id
        self._index = {example.question_id: i for i, example in enumerate(self.examples)}

    @classmethod
    def load(cls, warehouse_path: Path | str) -> ExampleBank:
        """Read the labelled examples and their embeddings; the connection is closed on
        return."""
        path = Path(warehouse_path)
        if not path.is_file():
            raise ExampleBankError(f"no warehouse at {path}: materialise question_embeddings")
        try:
            connection = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            raise ExampleBankError(f"cannot open {path} read-only: {exc}") from exc
        try:
            rows = connection.execute(_QUERY).fetchall()
        except duckdb.CatalogException as exc:
            raise ExampleBankError(
                f"{path} lacks validated_records or question_embeddings "
                f"(materialise them first): {exc}"
            ) from exc
        finally:
            connection.close()
        model_ids = sorted({row[6] for row in rows})
        if len(model_ids) > 1:
            raise ExampleBankError(f"{path} holds embeddings of several models: {model_ids}")
        examples = [
            Example(
                question_id=row[0],
                question=row[1],
                tables=tuple(row[2] or ()),
                python_solution=row[3],
                ground_truth=float(row[4]),
                topic=row[5],
            )
            for row in rows
        ]
        dimension = len(rows[0][7]) if rows else 0
        vectors = np.array([row[7] for row in rows], dtype=np.float32).reshape(-1, dimension)
        return cls(examples, vectors, model_ids[0] if model_ids else "")

    def __len__(self) -> int:
        return len(self.examples)

    def __contains__(self, question_id: object) -> bool:
        return question_id in self._index

    def search(
        self, query: np.ndarray, k: int, *, exclude_id: str | None = None
    ) -> list[Retrieved]:
        """The ``k`` examples most similar to ``query``, most similar first (ties: by
        question_id), never the one with ``exclude_id``."""
        if k < 0:
            raise ValueError(f"k must be 0 or more, got {k}")
        if k == 0 or not self.examples:
            return []
        scores = cosine_scores(self.vectors, query)
        excluded = self._index.get(exclude_id) if exclude_id is not None else None
        if excluded is not None:
            scores[excluded] = -np.inf
        order = np.argsort(-scores, kind="stable")  # examples are sorted by question_id
        kept = [i for i in order[:k] if i != excluded]
        return [Retrieved(self.examples[i], float(scores[i])) for i in kept]

    def similar(
        self,
        question: str,
        tables: Sequence[str],
        embedder: QueryEmbedder,
        k: int,
        *,
        exclude_id: str | None = None,
    ) -> list[Retrieved]:
        """Embed the question as the pipeline embeds a record, then :meth:`search`."""
        if k == 0 or not self.examples:
            return []
        if embedder.model_id != self.model_id:
            raise ValueError(
                f"the embedder is {embedder.model_id!r} but the bank's vectors come from "
                f"{self.model_id!r}: re-materialise question_embeddings or configure the same "
                "embedding model and backend"
            )
        query = embedder.encode([record_text(question, list(tables))])[0]
        return self.search(query, k, exclude_id=exclude_id)

    # --- the bank as a file: the service reads this, never the warehouse -----------------------

    COLUMNS = (
        "question_id",
        "question",
        "tables",
        "python_solution",
        "ground_truth",
        "topic",
        "model_id",
        "embedding",
    )

    def to_frame(self) -> pd.DataFrame:
        """One row per example with its (unit) vector and the embedding model id."""
        import pandas as pd

        return pd.DataFrame(
            {
                "question_id": [e.question_id for e in self.examples],
                "question": [e.question for e in self.examples],
                "tables": [list(e.tables) for e in self.examples],
                "python_solution": [e.python_solution for e in self.examples],
                "ground_truth": [e.ground_truth for e in self.examples],
                "topic": [e.topic for e in self.examples],
                "model_id": [self.model_id] * len(self.examples),
                "embedding": [vector.tolist() for vector in self.vectors],
            },
            columns=list(self.COLUMNS),
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ExampleBank:
        """The inverse of :meth:`to_frame` (e.g. read from the exported parquet file)."""
        missing = [c for c in cls.COLUMNS if c not in frame.columns]
        if missing:
            raise ExampleBankError(f"the example bank lacks columns {missing}")
        model_ids = sorted(set(frame["model_id"]))
        if len(model_ids) > 1:
            raise ExampleBankError(f"the example bank mixes embedding models: {model_ids}")
        examples = [
            Example(
                question_id=row.question_id,
                question=row.question,
                tables=tuple(row.tables if row.tables is not None else ()),
                python_solution=row.python_solution,
                ground_truth=float(row.ground_truth),
                topic=row.topic,
            )
            for row in frame.itertuples(index=False)
        ]
        dimension = len(frame["embedding"].iloc[0]) if len(frame) else 0
        vectors = np.array([list(v) for v in frame["embedding"]], dtype=np.float32)
        return cls(examples, vectors.reshape(-1, dimension), model_ids[0] if model_ids else "")

    @classmethod
    def read_parquet(cls, path: Path | str) -> ExampleBank:
        import pandas as pd

        path = Path(path)
        if not path.is_file():
            raise ExampleBankError(f"no example bank at {path}: materialise solved_examples")
        return cls.from_frame(pd.read_parquet(path))
