"""The finmath inference service: ``uvicorn serving.app:app`` (``make serve``).

Loads the champion from the MLflow registry at start-up (and refuses to start if it cannot serve
it correctly), follows the alias in the background, micro-batches concurrent requests, logs every
prediction to files, and exposes Prometheus metrics. It never opens the DuckDB warehouse.

The market forecasters (``POST /forecast``, ``GET /forecasters``) are optional: each target's
``<name>@champion`` is loaded at start-up if it exists and followed by the same refresher as the
answer model. With ``FINMATH_SERVING_MODEL_URI`` (a pinned answer model) there is no refresher,
so the forecasters stay as loaded at start-up: a version promoted later, or a forecaster that
first gets a champion later, is served only after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from finmath_assets.core.market.forecasting import Target
from finmath_assets.core.market.registry import LoadedForecaster, load_forecaster
from finmath_assets.core.registry import CHAMPION, current_version, load_model
from finmath_assets.settings import Settings
from serving.ask import Asker, NoEndpointError
from serving.batching import MicroBatcher
from serving.errors import limit_message, strict_json_route, validation_error_handler
from serving.forecasters import ForecasterState, NoForecasterError, UnknownTickerError
from serving.inference_log import InferenceLogWriter
from serving.metrics import ServiceMetrics
from serving.model_state import ModelState
from serving.predictor import Answer, Query, predict_batch
from serving.schemas import (
    AskRequest,
    AskResponse,
    AskUnavailable,
    BatchRequest,
    BatchResponse,
    ErrorMessage,
    ForecasterDescription,
    ForecastRequest,
    ForecastResponse,
    ModelDescription,
    PredictRequest,
    PredictResponse,
    Readiness,
    RetrievedExample,
    UnknownTickers,
    ValidationErrors,
)
from serving.settings import ServingSettings

log = logging.getLogger("finmath.serving")

# what every POST route may answer besides 200 (documented in /openapi.json)
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorMessage, "description": "Body over FINMATH_SERVING_MAX_BODY_BYTES"},
    415: {"model": ErrorMessage, "description": "Content-Type is not application/json"},
    422: {
        "model": ValidationErrors,
        "description": "Not strict JSON (NaN, Infinity, invalid UTF-8, a lone surrogate, too "
        "deep) or refused by the schema; `loc` names the field",
    },
}
NO_MODEL: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorMessage, "description": "No answer model loaded yet"}
}


def create_app(settings: Settings | None = None, serving: ServingSettings | None = None) -> FastAPI:
    settings = settings or Settings()
    serving = serving or ServingSettings()
    metrics = ServiceMetrics()
    tracking_uri = settings.mlflow_tracking_uri_value
    registry_uri = settings.mlflow_registry_uri

    def on_change(model) -> None:
        metrics.model_info.info(
            {
                "name": model.name,
                "version": model.version,
                "alias": model.alias or "",
                "run_id": model.run_id,
            }
        )
        metrics.model_ready.set(1)

    def on_forecaster_change(target: Target, forecaster: LoadedForecaster) -> None:
        metrics.forecast_model_info.labels(target).info(
            {"name": forecaster.name, "version": forecaster.version, "run_id": forecaster.run_id}
        )
        metrics.forecast_model_ready.labels(target).set(1)

    forecasters = ForecasterState(
        settings.forecaster_names,
        CHAMPION,
        load=lambda name: load_forecaster(
            name, CHAMPION, tracking_uri=tracking_uri, registry_uri=registry_uri
        ),
        poll_version=lambda name: current_version(
            name, CHAMPION, tracking_uri=tracking_uri, registry_uri=registry_uri
        ),
        on_change=on_forecaster_change,
        on_failure=lambda target: metrics.forecast_reload_failures.labels(target).inc(),
    )
    for target in forecasters.names:
        metrics.forecast_model_ready.labels(target).set(0)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the same model and backend as the assets; loaded once, before the first request
        embedder = await asyncio.to_thread(settings.embedder(threads=serving.embed_threads).load)

        def load():
            return load_model(
                settings.model_name,
                serving.model_alias,
                tracking_uri=tracking_uri,
                registry_uri=registry_uri,
                model_uri=serving.model_uri,
            )

        def poll():
            return current_version(
                settings.model_name,
                serving.model_alias,
                tracking_uri=tracking_uri,
                registry_uri=registry_uri,
            )

        state = ModelState(load, None if serving.model_uri else poll, embedder, on_change)
        model = await asyncio.to_thread(state.load_initial, may_wait=serving.wait_for_model)
        if model is not None:
            log.info("serving %s v%s (run %s)", model.name, model.version, model.run_id)
        else:
            log.warning(
                "no model yet (%s); polling %s@%s every %.1f s",
                state.last_error,
                settings.model_name,
                serving.model_alias,
                serving.refresh_seconds,
            )
        await asyncio.to_thread(forecasters.load_initial)
        for target, name in forecasters.names.items():
            served = forecasters.get(target)
            if served is not None:
                log.info("forecasting %s with %s v%s", target, name, served.forecaster.version)
            else:
                log.warning(
                    "no %s forecaster (%s): /forecast answers 503 for it",
                    target,
                    forecasters.last_errors[target],
                )
        writer = InferenceLogWriter(settings.inference_log_dir, serving.log_flush_seconds)
        writer.start()
        batcher: MicroBatcher[Query, Answer] = MicroBatcher(
            lambda queries: predict_batch(queries, embedder, state),
            max_size=serving.batch_max_size,
            max_wait_s=serving.batch_wait_ms / 1000,
            workers=serving.workers,
            on_batch=metrics.batch_size.observe,
        )
        batcher.start()

        async def refresher() -> None:
            while True:
                await asyncio.sleep(serving.refresh_seconds)
                failures = state.reload_failures
                if await asyncio.to_thread(state.refresh):
                    metrics.reloads.inc()
                elif state.reload_failures > failures:
                    metrics.reload_failures.inc()
                for target in await asyncio.to_thread(forecasters.refresh):
                    metrics.forecast_reloads.labels(target).inc()

        task = asyncio.create_task(refresher()) if state.follows_alias else None
        app.state.model_state, app.state.batcher, app.state.writer = state, batcher, writer
        app.state.asker = await asyncio.to_thread(Asker.from_settings, settings, embedder)
        try:
            yield
        finally:
            app.state.asker.close()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await batcher.stop()
            writer.close()

    app = FastAPI(
        title="finmath inference",
        version="0.1.0",
        description="Answers FinanceMath-style questions with the MLflow champion model.",
        lifespan=lifespan,
        exception_handlers={RequestValidationError: validation_error_handler},
    )
    # JSON bodies: size limit, Content-Type and strict parsing (serving.errors)
    app.router.route_class = strict_json_route(serving.max_body_bytes)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > serving.max_body_bytes:
            response: Response = JSONResponse(
                status_code=413,
                content={
                    "detail": f"body of {declared} bytes exceeds the limit of "
                    f"{limit_message(serving.max_body_bytes)}"
                },
            )
        else:
            started = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            metrics.latency.labels(getattr(route, "path", "unmatched")).observe(
                time.perf_counter() - started
            )
        route = request.scope.get("route")
        metrics.requests.labels(
            getattr(route, "path", "unmatched"), str(response.status_code)
        ).inc()
        return response

    def _log(request_id: str, answers: list[Answer]) -> None:
        now = datetime.now(UTC).isoformat()
        for index, answer in enumerate(answers):
            metrics.predictions.observe(answer.prediction)
            app.state.writer.write(
                {
                    "timestamp": now,
                    "request_id": request_id,
                    "item": index,
                    "model_name": answer.model_name,
                    "model_version": answer.model_version,
                    "prediction": answer.prediction,
                    "features": answer.features,
                }
            )

    def _require_model() -> None:
        if app.state.model_state.current is None:
            raise HTTPException(
                status_code=503,
                detail=f"no model loaded yet: waiting for {settings.model_name}@"
                f"{serving.model_alias} in the registry (train it with the Dagster job)",
            )

    @app.post("/predict", response_model=PredictResponse, responses={**BODY_ERRORS, **NO_MODEL})
    async def predict(body: PredictRequest) -> PredictResponse:
        _require_model()
        request_id = uuid.uuid4().hex
        answer = await app.state.batcher.submit(
            Query(body.question, tuple(body.tables), body.topic)
        )
        _log(request_id, [answer])
        return PredictResponse(
            prediction=answer.prediction,
            model_name=answer.model_name,
            model_version=answer.model_version,
            request_id=request_id,
        )

    @app.post("/predict/batch", response_model=BatchResponse, responses={**BODY_ERRORS, **NO_MODEL})
    async def predict_many(body: BatchRequest) -> BatchResponse:
        _require_model()
        request_id = uuid.uuid4().hex
        answers = await app.state.batcher.submit_many(
            [Query(i.question, tuple(i.tables), i.topic) for i in body.items]
        )
        _log(request_id, answers)
        return BatchResponse(
            predictions=[a.prediction for a in answers],
            model_name=answers[0].model_name,
            model_version=answers[0].model_version,
            request_id=request_id,
        )

    @app.post(
        "/forecast",
        response_model=ForecastResponse,
        response_model_exclude_none=True,
        responses={
            **BODY_ERRORS,
            404: {"model": UnknownTickers, "description": "A ticker the forecaster does not know"},
            503: {"model": ErrorMessage, "description": "No forecaster for the target"},
        },
    )
    async def forecast(body: ForecastRequest) -> ForecastResponse | JSONResponse:
        """Forecast ``horizon`` business days after each ticker's last training day."""
        started, outcome = time.perf_counter(), "error"
        try:
            # MLForecast.predict is CPU-bound: a worker thread keeps the event loop free
            answer = await run_in_threadpool(
                forecasters.predict, body.target, body.tickers, body.horizon
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

    @app.post(
        "/ask",
        response_model=AskResponse,
        responses={
            **BODY_ERRORS,
            503: {
                "model": AskUnavailable,
                "description": "No LLM endpoint configured (FINMATH_LLM_BASE_URL)",
            },
        },
    )
    async def ask(body: AskRequest) -> AskResponse:
        """Answer with the configured LLM: it writes ``def solution():``, the sandbox runs it.
        A failed call or program is a 200 whose ``status`` says what happened."""
        asker: Asker = app.state.asker
        try:
            reply = await run_in_threadpool(asker.ask, body.question, list(body.tables))
        except NoEndpointError as exc:
            metrics.asks.labels("no_endpoint").inc()
            raise HTTPException(status_code=503, detail=exc.detail) from exc
        metrics.asks.labels(reply.status).inc()
        if reply.llm_seconds is not None:
            metrics.llm_latency.observe(reply.llm_seconds)
        if reply.sandbox_status is not None:
            metrics.sandbox_runs.labels(reply.sandbox_status).inc()
            metrics.sandbox_latency.observe(reply.sandbox_seconds or 0.0)
        return AskResponse(
            answer=reply.value,
            status=reply.status,
            error=reply.error,
            program=reply.program,
            raw_output=reply.raw_output,
            retrieved=[
                RetrievedExample(question_id=r.question_id, similarity=round(r.similarity, 4))
                for r in reply.retrieved
            ],
            model=reply.model,
            prompt_variant=reply.prompt_variant,
            isolation=reply.isolation,
            llm_seconds=reply.llm_seconds,
            sandbox_seconds=reply.sandbox_seconds,
            total_seconds=reply.total_seconds,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            request_id=uuid.uuid4().hex,
        )

    @app.get("/forecasters", response_model=list[ForecasterDescription])
    async def forecaster_descriptions() -> list[ForecasterDescription]:
        return forecasters.describe()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
    async def ready(response: Response) -> Readiness:
        state: ModelState = app.state.model_state
        current = state.current
        if current is None:
            response.status_code = 503
        return Readiness(
            ready=current is not None,
            model_version=current.model.version if current else None,
            last_reload_error=state.last_error,
            reloads=state.reloads,
            reload_failures=state.reload_failures,
        )

    @app.get("/model", response_model=ModelDescription, responses=NO_MODEL)
    async def model_description() -> ModelDescription:
        current = app.state.model_state.current
        if current is None:
            raise HTTPException(status_code=503, detail="no model loaded")
        m = current.model
        return ModelDescription(
            name=m.name,
            version=m.version,
            alias=m.alias,
            run_id=m.run_id,
            cv_metrics={k: v for k, v in m.metrics.items() if k.startswith("cv_")},
            trained_at=None
            if m.trained_at is None
            else datetime.fromtimestamp(m.trained_at / 1000, UTC).isoformat(),
            loaded_at=datetime.fromtimestamp(current.loaded_at, UTC).isoformat(),
            feature_count=len(m.feature_columns),
            embedding_model_id=m.embedding_model_id,
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        metrics.refresh_drift(settings.drift_summary_path)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.metrics, app.state.forecasters = metrics, forecasters
    return app


app = create_app()
