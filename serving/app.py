"""The finmath inference service: ``uvicorn serving.app:app`` (``make serve``).

``create_app`` puts the settings on ``app.state``, runs the ``Service`` for the app's lifespan
(``service.py``: models loaded at start-up, followed in the background) and includes one router per
resource (``routes/``). Which file for which change: ``docs/serving.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from finmath_assets.settings import Settings
from serving.errors import validation_error_handler
from serving.limits import RequestLimits
from serving.middleware import observe
from serving.routes import ask, forecast, operations, predict
from serving.service import running
from serving.settings import ServingSettings


class ServingAPI(FastAPI):
    """A FastAPI app whose ``/openapi.json`` states its own request limits (``limits.py``)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            self.state.limits.document(schema)
            return schema
        return self.openapi_schema


def create_app(settings: Settings | None = None, serving: ServingSettings | None = None) -> FastAPI:
    settings = settings or Settings()
    serving = serving or ServingSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings, serving) as service:
            app.state.service = service
            yield

    app = ServingAPI(
        title="finmath inference",
        version="0.1.0",
        description="Answers FinanceMath-style questions with the MLflow champion model.",
        lifespan=lifespan,
        exception_handlers={RequestValidationError: validation_error_handler},
    )
    app.state.serving, app.state.limits = serving, RequestLimits(serving)
    app.middleware("http")(observe)
    for resource in (predict, forecast, ask, operations):
        app.include_router(resource.router)
    return app


app = create_app()
