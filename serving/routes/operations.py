"""``GET /health`` (liveness), ``/ready`` (an answer model is loaded), ``/model`` (what is served)
and ``/metrics`` (Prometheus, ``serving/metrics.py``; not in the OpenAPI document)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import ServiceDep
from serving.errors import StrictJSONRoute
from serving.routes.responses import NO_MODEL
from serving.schemas import ModelDescription, Readiness

router = APIRouter(route_class=StrictJSONRoute)


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(response: Response, service: ServiceDep) -> Readiness:
    state = service.model_state
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


@router.get("/model", response_model=ModelDescription, responses=NO_MODEL)
async def model_description(service: ServiceDep) -> ModelDescription:
    current = service.model_state.current
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


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(service: ServiceDep) -> Response:
    service.metrics.refresh_drift(service.settings.drift_summary_path)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
