"""Answer a FinanceMath question by program-of-thought: build the prompt (retrieving solved
examples for the improved variant), ask the model, extract its program, run it in the sandbox.

:func:`answer` never raises because the model or its program failed; ``LLMAnswer.status`` says
what happened:

* ``llm_error``: no completion (unreachable endpoint, HTTP error, timeout, malformed body);
* ``no_program``: the output holds no parseable program defining ``solution()`` (nothing was
  run);
* ``error`` / ``timeout`` / ``no_number``: the sandbox ran the program and it failed, ran out
  of time, or returned something that is not a finite number;
* ``ok``: ``value`` is the number ``solution()`` returned.

Invalid arguments and misconfiguration (the improved prompt without a bank or an embedder, an
embedder of another model than the bank's vectors) still raise: they are programming errors.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from finmath_assets.core.llm.client import LLMClient, LLMError
from finmath_assets.core.llm.prompts import PROMPT_VARIANTS, Message, PromptVariant, build_prompt
from finmath_assets.core.llm.retrieval import ExampleBank, QueryEmbedder, Retrieved
from finmath_assets.core.llm.scoring import extract_program, extract_program_lenient
from finmath_assets.core.sandbox import Limits, run_solution

AnswerStatus = Literal["ok", "llm_error", "no_program", "error", "timeout", "no_number"]


@dataclass(frozen=True)
class RetrievedRef:
    question_id: str
    similarity: float


@dataclass(frozen=True)
class LLMAnswer:
    status: AnswerStatus
    value: float | None
    error: str | None  # the LLM error, why there is no program, or the sandbox's output
    prompt_variant: PromptVariant
    messages: list[Message]  # as sent, the prefill (if any) as the final assistant message
    prefill: str | None
    retrieved: tuple[RetrievedRef, ...]  # few-shot examples, most similar first
    model: str
    raw_output: str | None  # the model's text (prefill + completion when the prefill was used)
    raw_response: dict[str, Any] | None  # the server's JSON body (on llm_error: what it sent)
    program: str | None  # FinanceMath's extraction: the program that was run
    program_lenient: str | None  # ours, more forgiving (None: nothing found); not run
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    llm_seconds: float | None
    retrieval_seconds: float
    sandbox_status: str | None
    sandbox_seconds: float | None
    isolation: str | None
    total_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (for logs, the evaluation table, the API)."""
        return dataclasses.asdict(self)


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it, else its text (an error body may be anything)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def program_problem(program: str | None) -> str | None:
    """Why ``program`` cannot be run (None when it can): empty, unparseable, or without a
    top-level ``solution`` function. Parsing only; nothing is executed here."""
    if not program or not program.strip():
        return "the output holds no program"
    try:
        tree = ast.parse(program)
    except SyntaxError as exc:
        return f"the program does not parse: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        return f"the program does not parse: {type(exc).__name__}"
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    return None if "solution" in functions else "the program defines no solution()"


def answer(
    question: str,
    tables: Sequence[str],
    *,
    client: LLMClient,
    prompt_variant: PromptVariant,
    bank: ExampleBank | None = None,
    embedder: QueryEmbedder | None = None,
    k: int = 0,
    limits: Limits | None = None,
    exclude_id: str | None = None,
) -> LLMAnswer:
    """Answer one question. ``k`` solved examples are retrieved from ``bank`` (never
    ``exclude_id``, the question's own id when evaluating on the labelled records) for the
    improved prompt; the paper's prompt is zero-shot and ignores them."""
    if prompt_variant not in PROMPT_VARIANTS:
        raise ValueError(f"unknown prompt variant {prompt_variant!r}; choose {PROMPT_VARIANTS}")
    if k < 0:
        raise ValueError(f"k must be 0 or more, got {k}")
    tables = [str(table) for table in tables or ()]
    started = time.perf_counter()

    retrieved: list[Retrieved] = []
    if prompt_variant == "improved" and k > 0:
        if bank is None or embedder is None:
            raise ValueError("the improved prompt with k > 0 needs a bank and an embedder")
        retrieved = bank.similar(question, tables, embedder, k, exclude_id=exclude_id)
    retrieval_seconds = time.perf_counter() - started
    prompt = build_prompt(
        prompt_variant,
        question,
        tables,
        examples=[r.example for r in retrieved],
        example_ids=[r.example.question_id for r in retrieved],
        model=client.model,
    )
    common: dict[str, Any] = {
        "prompt_variant": prompt_variant,
        "messages": prompt.request_messages,
        "prefill": prompt.prefill,
        "retrieved": tuple(RetrievedRef(r.example.question_id, r.similarity) for r in retrieved),
        "retrieval_seconds": retrieval_seconds,
    }

    try:
        completion = client.complete(prompt.messages, prefill=prompt.prefill)
    except LLMError as exc:
        return LLMAnswer(
            status="llm_error",
            value=None,
            error=str(exc),
            model=client.model,
            raw_output=None,
            raw_response={
                "error_kind": exc.kind,
                "status_code": exc.status_code,
                "body": _jsonable(exc.response),
            },
            program=None,
            program_lenient=None,
            finish_reason=None,
            prompt_tokens=None,
            completion_tokens=None,
            llm_seconds=None,
            sandbox_status=None,
            sandbox_seconds=None,
            isolation=None,
            total_seconds=time.perf_counter() - started,
            **common,
        )

    program = extract_program(completion.text)
    from_llm: dict[str, Any] = {
        "model": completion.model,
        "raw_output": completion.text,
        "raw_response": completion.raw_response,
        "program": program,
        "program_lenient": extract_program_lenient(completion.text),
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "llm_seconds": completion.latency_seconds,
    }
    problem = program_problem(program)
    if problem is not None:
        return LLMAnswer(
            status="no_program",
            value=None,
            error=problem,
            sandbox_status=None,
            sandbox_seconds=None,
            isolation=None,
            total_seconds=time.perf_counter() - started,
            **common,
            **from_llm,
        )

    result = run_solution(program, limits)
    return LLMAnswer(
        status=result.status,
        value=result.value,
        error=None if result.status == "ok" else result.output,
        sandbox_status=result.status,
        sandbox_seconds=result.seconds,
        isolation=result.isolation,
        total_seconds=time.perf_counter() - started,
        **common,
        **from_llm,
    )
