"""FastAPI dependencies: what a route needs, taken from ``request.app.state``, so that routes
close over nothing and one router serves every app.

``create_app`` puts the app's ``ServingSettings`` (``serving``) and ``RequestLimits``
(``limits``) there; its lifespan adds the running ``Service`` (``service``).

- ``ServiceDep``: the ``Service`` (answer model, batcher, forecasters, ``/ask``, metrics, log).
- ``PredictBody``, ``BatchBody``, ``ForecastBody``, ``AskBody``: the request body, checked
  against this app's limits (``limits.py``), then validated by FastAPI against its model in
  ``schemas.py``; either failing is a 422.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.datastructures import State

from serving.limits import RequestLimits
from serving.schemas import AskRequest, BatchRequest, ForecastRequest, PredictRequest
from serving.service import Service
from serving.settings import ServingSettings

T = TypeVar("T")


def _state(state: State, name: str, kind: type[T]) -> T:
    value = getattr(state, name)
    if not isinstance(value, kind):
        raise TypeError(f"app.state.{name} is a {type(value).__name__}, not a {kind.__name__}")
    return value


def serving_settings(request: Request) -> ServingSettings:
    """The app's ``ServingSettings`` (also for the middleware and the route class)."""
    return _state(request.app.state, "serving", ServingSettings)


def service_of(request: Request) -> Service:
    """The app's running ``Service`` (also for the middleware)."""
    return _state(request.app.state, "service", Service)


# async: FastAPI runs a plain ``def`` dependency in a worker thread


async def _service(request: Request) -> Service:
    return service_of(request)


ServiceDep = Annotated[Service, Depends(_service)]


def _limits(request: Request) -> RequestLimits:
    return _state(request.app.state, "limits", RequestLimits)


def _within_limits(model: type[BaseModel]) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """The dependency that checks a ``model`` body against the app's limits. A dependency's own
    dependencies run before its body is validated, so FastAPI validates only bodies within them."""

    async def within_limits(request: Request) -> None:
        if await request.body():  # an empty body is FastAPI's "missing" 422
            _limits(request).check(model, await request.json())  # parsed once (errors.py)

    return within_limits


_predict_limits = _within_limits(PredictRequest)
_batch_limits = _within_limits(BatchRequest)
_forecast_limits = _within_limits(ForecastRequest)
_ask_limits = _within_limits(AskRequest)


async def _predict_body(
    body: PredictRequest, _: Annotated[None, Depends(_predict_limits)]
) -> PredictRequest:
    return body


async def _batch_body(
    body: BatchRequest, _: Annotated[None, Depends(_batch_limits)]
) -> BatchRequest:
    return body


async def _forecast_body(
    body: ForecastRequest, _: Annotated[None, Depends(_forecast_limits)]
) -> ForecastRequest:
    return body


async def _ask_body(body: AskRequest, _: Annotated[None, Depends(_ask_limits)]) -> AskRequest:
    return body


PredictBody = Annotated[PredictRequest, Depends(_predict_body)]
BatchBody = Annotated[BatchRequest, Depends(_batch_body)]
ForecastBody = Annotated[ForecastRequest, Depends(_forecast_body)]
AskBody = Annotated[AskRequest, Depends(_ask_body)]
