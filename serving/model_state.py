"""The model being served, its compatibility check, and hot reload by registry alias.

A swap is one attribute assignment: a request reads ``state.current`` once and keeps that model
for its whole batch, so no request fails or waits while a new version loads beside the old one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from finmath_assets.core.embeddings import Embedder
from finmath_assets.core.features import feature_columns
from finmath_assets.core.registry import LoadedModel

log = logging.getLogger(__name__)


class ModelCompatibilityError(RuntimeError):
    """The model expects features or embeddings the shared feature code does not produce."""


def check_compatible(model: LoadedModel, embedder: Embedder) -> None:
    """Refuse a model trained on other features or another embedding model (skew is a bug)."""
    produced = feature_columns(embedder.dimension)
    unknown = [c for c in model.feature_columns if c not in set(produced)]
    if unknown:
        raise ModelCompatibilityError(
            f"{model.name} v{model.version} expects {len(unknown)} feature columns that "
            f"finmath_assets.core.features does not produce (e.g. {unknown[:3]}); retrain it "
            "with this code"
        )
    if model.embedding_model_id != embedder.model_id:
        raise ModelCompatibilityError(
            f"{model.name} v{model.version} was trained on embeddings of "
            f"{model.embedding_model_id!r} but this service embeds with {embedder.model_id!r}; "
            "set FINMATH_EMBEDDING_MODEL and FINMATH_EMBEDDING_BACKEND to match, or retrain"
        )


@dataclass(frozen=True)
class Served:
    model: LoadedModel
    loaded_at: float


class ModelState:
    """Holds the served model; ``refresh`` follows the registry alias."""

    def __init__(
        self,
        load: Callable[[], LoadedModel],
        poll_version: Callable[[], str | None] | None,
        embedder: Embedder,
        on_change: Callable[[LoadedModel], None] = lambda _: None,
    ) -> None:
        self._load = load
        self._poll_version = poll_version
        self._embedder = embedder
        self._on_change = on_change
        self._lock = threading.Lock()  # one reload at a time; requests never take it
        self.current: Served | None = None
        self.last_error: str | None = None
        self.reloads = 0
        self.reload_failures = 0

    @property
    def follows_alias(self) -> bool:
        return self._poll_version is not None

    def load_initial(self, *, may_wait: bool = False) -> LoadedModel | None:
        """Load the first model. It raises, so a service that cannot serve does not start;
        with ``may_wait`` (and an alias to follow) the failure is kept in ``last_error`` instead
        and ``None`` returned: ``refresh`` loads the model once the alias names one."""
        try:
            model = self._load()
            check_compatible(model, self._embedder)
        except Exception as exc:
            if not (may_wait and self.follows_alias):
                raise
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        self._swap(model)
        return model

    def _swap(self, model: LoadedModel) -> None:
        self.current = Served(model=model, loaded_at=time.time())
        self._on_change(model)

    def refresh(self) -> bool:
        """Load and swap in the aliased version if it moved; ``True`` when a swap happened.

        A failure keeps the old model serving and is recorded in ``last_error``.
        """
        if self._poll_version is None:
            return False
        with self._lock:
            try:
                version = self._poll_version()
                served = self.current.model.version if self.current else None
                if version is None or version == served:
                    return False
                log.info("alias moved to version %s (serving %s): loading", version, served)
                model = self._load()
                check_compatible(model, self._embedder)
            except Exception as exc:  # any failure must leave the old model serving
                self.reload_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("reload failed, still serving the old model: %s", self.last_error)
                return False
            self._swap(model)
            self.reloads += 1
            self.last_error = None
            return True
