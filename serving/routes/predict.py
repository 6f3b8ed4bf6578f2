"""``POST /predict`` and ``POST /predict/batch``: the answer model, through the micro-batcher
(``serving/batching.py``, ``serving/predictor.py``); every prediction goes to the inference log."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException

from serving.deps import BatchBody, PredictBody, ServiceDep
from serving.errors import StrictJSONRoute
from serving.predictor import Query
from serving.routes.responses import BODY_ERRORS, NO_MODEL
from serving.schemas import BatchResponse, PredictResponse
from serving.service import Service

router = APIRouter(route_class=StrictJSONRoute)


def _require_model(service: Service) -> None:
    if service.model_state.current is None:
        raise HTTPException(
            status_code=503,
            detail=f"no model loaded yet: waiting for {service.settings.model_name}@"
            f"{service.serving.model_alias} in the registry (train it with the Dagster job)",
        )


@router.post("/predict", response_model=PredictResponse, responses={**BODY_ERRORS, **NO_MODEL})
async def predict(body: PredictBody, service: ServiceDep) -> PredictResponse:
    _require_model(service)
    request_id = uuid.uuid4().hex
    answer = await service.batcher.submit(Query(body.question, tuple(body.tables), body.topic))
    service.log_predictions(request_id, [answer])
    return PredictResponse(
        prediction=answer.prediction,
        model_name=answer.model_name,
        model_version=answer.model_version,
        request_id=request_id,
    )


@router.post("/predict/batch", response_model=BatchResponse, responses={**BODY_ERRORS, **NO_MODEL})
async def predict_many(body: BatchBody, service: ServiceDep) -> BatchResponse:
    _require_model(service)
    request_id = uuid.uuid4().hex
    answers = await service.batcher.submit_many(
        [Query(i.question, tuple(i.tables), i.topic) for i in body.items]
    )
    service.log_predictions(request_id, answers)
    return BatchResponse(
        predictions=[a.prediction for a in answers],
        model_name=answers[0].model_name,
        model_version=answers[0].model_version,
        request_id=request_id,
    )
