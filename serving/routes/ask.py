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
from serving.schemas import (
    AskCandidate,
    AskResponse,
    AskUnavailable,
    AskVote,
    AskVoteGroup,
    OfferedFunction,
    RetrievedExample,
)

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
    """Answer with the configured LLM: it writes ``def solution():``, the sandbox runs it;
    with self-consistency, several programs vote (``candidates``, ``vote``). A failed call or
    program is a 200 whose ``status`` says what happened."""
    metrics = service.metrics
    try:
        reply = await run_in_threadpool(service.asker.ask, body.question, list(body.tables))
    except NoEndpointError as exc:
        metrics.asks.labels("no_endpoint").inc()
        raise HTTPException(status_code=503, detail=exc.detail) from exc
    metrics.asks.labels(reply.status).inc()
    for attempt in reply.attempts:
        if attempt.llm_seconds is not None:
            metrics.llm_latency.observe(attempt.llm_seconds)
        if attempt.sandbox_status is not None:
            metrics.sandbox_runs.labels(attempt.sandbox_status).inc()
            metrics.sandbox_latency.observe(attempt.sandbox_seconds or 0.0)
    metrics.llm_samples.observe(reply.samples)
    metrics.llm_repairs.inc(reply.repairs)
    metrics.ask_stage_seconds.labels("retrieval").observe(reply.retrieval_seconds)
    metrics.ask_stage_seconds.labels("llm").observe(reply.llm_seconds or 0.0)
    metrics.ask_stage_seconds.labels("sandbox").observe(reply.sandbox_seconds or 0.0)
    vote = reply.vote
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
        functions=[
            OfferedFunction(name=f.name, similarity=round(f.similarity, 4)) for f in reply.functions
        ],
        model=reply.model,
        prompt_variant=reply.prompt_variant,
        isolation=reply.isolation,
        llm_seconds=reply.llm_seconds,
        sandbox_seconds=reply.sandbox_seconds,
        retrieval_seconds=reply.retrieval_seconds,
        total_seconds=reply.total_seconds,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        candidates=[
            AskCandidate(
                sample=a.sample,
                repair=a.repair,
                temperature=a.temperature,
                status=a.status,
                value=a.value,
                program=a.program,
                error=a.error,
                llm_seconds=a.llm_seconds,
                sandbox_seconds=a.sandbox_seconds,
            )
            for a in reply.attempts
        ],
        chosen=reply.chosen,
        vote=None
        if vote is None
        else AskVote(
            groups=[
                AskVoteGroup(value=g.value, votes=g.votes, samples=list(g.members))
                for g in vote.groups
            ],
            voters=vote.voters,
            samples=vote.samples,
            description=vote.describe(),
        ),
        request_id=uuid.uuid4().hex,
    )
