"""``POST /forecast`` and ``GET /forecasters``: the market forecasters, one per target, each
optional (``serving/forecasters.py``)."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serving.deps import ForecastBody, ServiceDep
from serving.errors import StrictJSONRoute
from serving.forecasters import NoForecasterError, UnknownTickerError
from serving.routes.responses import BODY_ERRORS
from serving.schemas import (
    ErrorMessage,
    ForecasterDescription,
    ForecastResponse,
    UnknownTickers,
)

router = APIRouter(route_class=StrictJSONRoute)


@router.post(
    "/forecast",
    response_model=ForecastResponse,
    response_model_exclude_none=True,
    responses={
        **BODY_ERRORS,
        404: {"model": UnknownTickers, "description": "A ticker the forecaster does not know"},
        503: {"model": ErrorMessage, "description": "No forecaster for the target"},
    },
)
async def forecast(body: ForecastBody, service: ServiceDep) -> ForecastResponse | JSONResponse:
    """Forecast ``horizon`` business days after each ticker's last training day."""
    metrics = service.metrics
    started, outcome = time.perf_counter(), "error"
    try:
        # MLForecast.predict is CPU-bound: a worker thread keeps the event loop free
        answer = await run_in_threadpool(
            service.forecasters.predict, body.target, body.tickers, body.horizon
        )
        outcome = "ok"
        return answer
    except UnknownTickerError as exc:
        outcome = "unknown_ticker"
        refusal = UnknownTickers(detail=str(exc), unknown=exc.unknown, known=exc.known)
        return JSONResponse(status_code=404, content=refusal.model_dump())
    except NoForecasterError as exc:
        outcome = "no_model"
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    finally:
        metrics.forecasts.labels(body.target, outcome).inc()
        metrics.forecast_latency.labels(body.target).observe(time.perf_counter() - started)


@router.get("/forecasters", response_model=list[ForecasterDescription])
async def forecaster_descriptions(service: ServiceDep) -> list[ForecasterDescription]:
    return service.forecasters.describe()
