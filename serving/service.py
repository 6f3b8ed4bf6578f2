"""What one app serves with, started and stopped by its lifespan (``running``).

At start-up: the embedder, the answer model (the service refuses to start if it cannot serve it
correctly, unless told to wait for it), the optional market forecasters, the inference log, the
micro-batcher, the ``/ask`` path and, when the answer model follows its registry alias, the
background refresher of the answer model and the forecasters. The routes get the ``Service``
through ``serving/deps.py``; it never opens the DuckDB warehouse.

With ``FINMATH_SERVING_MODEL_URI`` (a pinned answer model) there is no refresher, so the
forecasters stay as loaded at start-up: a version promoted later, or a forecaster that first gets
a champion later, is served only after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from finmath_assets.core.embeddings import Embedder
from finmath_assets.core.market.forecasting import TARGETS, Target
from finmath_assets.core.market.registry import LoadedForecaster, load_forecaster
from finmath_assets.core.registry import CHAMPION, LoadedModel, current_version, load_model
from finmath_assets.settings import Settings
from serving.ask import Asker
from serving.batching import MicroBatcher
from serving.forecasters import ForecasterState
from serving.inference_log import InferenceLogWriter
from serving.metrics import ServiceMetrics
from serving.model_state import ModelState
from serving.predictor import Answer, Query, predict_batch
from serving.settings import ServingSettings

log = logging.getLogger("finmath.serving")


@dataclass(frozen=True)
class Service:
    settings: Settings
    serving: ServingSettings
    metrics: ServiceMetrics
    model_state: ModelState  # the answer model (hot reload)
    forecasters: ForecasterState  # one per target, each optional
    batcher: MicroBatcher[Query, Answer]  # /predict and /predict/batch
    writer: InferenceLogWriter
    asker: Asker  # /ask

    def log_predictions(self, request_id: str, answers: list[Answer]) -> None:
        """Each answer to the inference log and the prediction histogram."""
        now = datetime.now(UTC).isoformat()
        for index, answer in enumerate(answers):
            self.metrics.predictions.observe(answer.prediction)
            self.writer.write(
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


def _forecasters(settings: Settings, metrics: ServiceMetrics) -> ForecasterState:
    tracking_uri, registry_uri = settings.mlflow_tracking_uri_value, settings.mlflow_registry_uri

    def on_change(target: Target, forecaster: LoadedForecaster) -> None:
        metrics.forecast_model_info.labels(target).info(
            {"name": forecaster.name, "version": forecaster.version, "run_id": forecaster.run_id}
        )
        metrics.forecast_model_ready.labels(target).set(1)

    names = settings.forecaster_names
    forecasters = ForecasterState(
        {target: names[target] for target in TARGETS},
        CHAMPION,
        load=lambda name: load_forecaster(
            name, CHAMPION, tracking_uri=tracking_uri, registry_uri=registry_uri
        ),
        poll_version=lambda name: current_version(
            name, CHAMPION, tracking_uri=tracking_uri, registry_uri=registry_uri
        ),
        on_change=on_change,
        on_failure=lambda target: metrics.forecast_reload_failures.labels(target).inc(),
    )
    for target in forecasters.names:
        metrics.forecast_model_ready.labels(target).set(0)
    return forecasters


def _model_state(
    settings: Settings, serving: ServingSettings, embedder: Embedder, metrics: ServiceMetrics
) -> ModelState:
    tracking_uri, registry_uri = settings.mlflow_tracking_uri_value, settings.mlflow_registry_uri

    def load() -> LoadedModel:
        return load_model(
            settings.model_name,
            serving.model_alias,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
            model_uri=serving.model_uri,
        )

    def poll() -> str | None:
        return current_version(
            settings.model_name,
            serving.model_alias,
            tracking_uri=tracking_uri,
            registry_uri=registry_uri,
        )

    def on_change(model: LoadedModel) -> None:
        metrics.model_info.info(
            {
                "name": model.name,
                "version": model.version,
                "alias": model.alias or "",
                "run_id": model.run_id,
            }
        )
        metrics.model_ready.set(1)

    return ModelState(load, None if serving.model_uri else poll, embedder, on_change)


async def _refresh(service: Service) -> None:
    """Follow the aliases: every ``refresh_seconds``, reload what moved."""
    state, forecasters, metrics = service.model_state, service.forecasters, service.metrics
    while True:
        await asyncio.sleep(service.serving.refresh_seconds)
        failures = state.reload_failures
        if await asyncio.to_thread(state.refresh):
            metrics.reloads.inc()
        elif state.reload_failures > failures:
            metrics.reload_failures.inc()
        for target in await asyncio.to_thread(forecasters.refresh):
            metrics.forecast_reloads.labels(target).inc()


@asynccontextmanager
async def running(settings: Settings, serving: ServingSettings) -> AsyncIterator[Service]:
    """The ``Service``, loaded, for as long as the app runs (its lifespan)."""
    metrics = ServiceMetrics()
    forecasters = _forecasters(settings, metrics)
    # the same model and backend as the assets; loaded once, before the first request
    embedder = await asyncio.to_thread(
        settings.embedder(threads=serving.embed_threads, parallel=serving.workers).load
    )
    state = _model_state(settings, serving, embedder, metrics)
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
    service = Service(
        settings=settings,
        serving=serving,
        metrics=metrics,
        model_state=state,
        forecasters=forecasters,
        batcher=batcher,
        writer=writer,
        asker=await asyncio.to_thread(Asker.from_settings, settings, embedder),
    )
    task = asyncio.create_task(_refresh(service)) if state.follows_alias else None
    try:
        yield service
    finally:
        service.asker.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await batcher.stop()
        writer.close()
