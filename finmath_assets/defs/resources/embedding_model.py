"""The sentence-embedding model, loaded lazily once per process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from finmath_assets.core.embeddings import Backend, Embedder, embedding_model_id
from finmath_assets.settings import Settings


class EmbeddingModelResource(dg.ConfigurableResource):
    """Gives the assets an :class:`Embedder`; the weights load only when a text must be embedded,
    so a run whose texts are all cached never pays for importing torch."""

    model_name: str
    backend: Backend
    batch_size: int
    threads: int
    models_dir: str

    _embedder: Embedder | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddingModelResource:
        embedder = settings.embedder()
        return cls(
            model_name=settings.embedding_model,
            backend=embedder.backend,
            batch_size=embedder.batch_size,
            threads=embedder.threads,
            models_dir=str(embedder.models_dir),
        )

    @property
    def model_id(self) -> str:
        return embedding_model_id(self.model_name, self.backend)

    def get_embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(
                self.model_name,
                batch_size=self.batch_size,
                backend=self.backend,
                models_dir=Path(self.models_dir),
                threads=self.threads,
            )
        return self._embedder
