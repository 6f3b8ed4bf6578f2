"""``POST /ask``, the route: the question goes to ``serving/ask.py`` (the logic: LLM call,
sandboxed program, retrieval) in a worker thread; this module turns the reply into the response
and the metrics."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from serving.ask import NoEndpointError
from serving.deps import AskBody, ServiceDep
from serving.errors import StrictJSONRoute
from serving.routes.responses import BODY_ERRORS
from serving.schemas import AskResponse, AskUnavailable, RetrievedExample

router = APIRouter(route_class=StrictJSONRoute)


@router.post(
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
async def ask(body: AskBody, service: ServiceDep) -> AskResponse:
    """Answer with the configured LLM: it writes ``def solution():``, the sandbox runs it.
    A failed call or program is a 200 whose ``status`` says what happened."""
    metrics = service.metrics
    try:
        reply = await run_in_threadpool(service.asker.ask, body.question, list(body.tables))
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
