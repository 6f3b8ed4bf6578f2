"""The sentence-embedding model, loaded lazily once per process."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from finmath_assets.core.embeddings import Embedder, resolve_model
from finmath_assets.settings import Settings


class EmbeddingModelResource(dg.ConfigurableResource):
    """Gives the assets an :class:`Embedder`; the weights load only when a text must be embedded,
    so a run whose texts are all cached never pays for importing torch."""

    model_name: str
    batch_size: int = 64

    _embedder: Embedder | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddingModelResource:
        return cls(model_name=settings.embedding_model, batch_size=settings.embedding_batch_size)

    @property
    def model_id(self) -> str:
        return resolve_model(self.model_name).model_id

    def get_embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.model_name, batch_size=self.batch_size)
        return self._embedder
