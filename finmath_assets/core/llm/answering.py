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

With a :class:`~finmath_assets.core.llm.functions.FunctionRetrieval` the improved prompt also
offers finance library functions: their signatures follow the question, and their source runs
in front of every program (so a traceback's line numbers count the offered source too).

With :class:`Sampling` it asks for several programs (self-consistency: the majority over their
numbers, stopping once enough agree) and sends a failed program back once with its error.
Every attempt is kept in ``LLMAnswer.attempts``.

Invalid arguments and misconfiguration (the improved prompt without a bank or an embedder, an
embedder of another model than the bank's vectors) still raise: they are programming errors.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from finmath_assets.core.llm.client import LLMClient, LLMError
from finmath_assets.core.llm.functions import FunctionRetrieval, Offered, functions_block, preamble
from finmath_assets.core.llm.prompts import (
    PROMPT_VARIANTS,
    Message,
    PromptVariant,
    build_prompt,
    repair_messages,
)
from finmath_assets.core.llm.retrieval import ExampleBank, QueryEmbedder, Retrieved
from finmath_assets.core.llm.scoring import extract_program, extract_program_lenient
from finmath_assets.core.llm.voting import Vote, tally
from finmath_assets.core.sandbox import MARKER, Limits, run_solution

AnswerStatus = Literal["ok", "llm_error", "no_program", "error", "timeout", "no_number"]


@dataclass(frozen=True)
class RetrievedRef:
    question_id: str
    similarity: float


@dataclass(frozen=True)
class OfferedRef:
    name: str
    similarity: float


@dataclass(frozen=True)
class Sampling:
    """How many programs to ask for, and what to do when one fails.

    ``samples`` > 1 is self-consistency: the first program is greedy (temperature 0), the
    others are sampled at ``temperature`` with seeds 1, 2, ...; sampling stops once ``agree``
    programs returned the same answer (:mod:`finmath_assets.core.llm.voting`), so a question
    the model answers consistently costs two calls. ``repair``: a program that does not parse,
    raises, times out or returns no number is sent back once with the error, and the repaired
    program replaces it in the vote.
    """

    samples: int = 1
    agree: int = 2
    temperature: float = 0.6
    repair: bool = False

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be 1 or more, got {self.samples}")
        if self.agree < 1:
            raise ValueError(f"agree must be 1 or more, got {self.agree}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be 0 or more, got {self.temperature}")


GREEDY = Sampling()
REPAIRABLE: tuple[AnswerStatus, ...] = ("no_program", "error", "timeout", "no_number")


@dataclass(frozen=True)
class Attempt:
    """One LLM call and the run of its program."""

    sample: int  # which sample it belongs to (0: the greedy one)
    repair: bool  # True: the second call of that sample, sent the first one's error
    temperature: float
    seed: int | None
    status: AnswerStatus
    value: float | None
    error: str | None  # the LLM error, why there is no program, or the sandbox's output
    raw_output: str | None  # the model's text (prefill + completion when the prefill was used)
    raw_response: dict[str, Any] | None  # the server's JSON body (on llm_error: what it sent)
    program: str | None  # FinanceMath's extraction: the program that was run
    program_lenient: str | None  # ours, more forgiving (None: nothing found); not run
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    llm_seconds: float | None
    sandbox_status: str | None
    sandbox_seconds: float | None
    isolation: str | None


@dataclass(frozen=True)
class LLMAnswer:
    """The answer: the fields from ``status`` to ``isolation`` are those of the chosen attempt
    (``attempts[chosen]``: a program of the winning group, else the greedy sample's last
    attempt); seconds and tokens are summed over every attempt."""

    status: AnswerStatus
    value: float | None
    error: str | None
    prompt_variant: PromptVariant
    messages: list[Message]  # as sent first, the prefill (if any) as the final assistant message
    prefill: str | None
    retrieved: tuple[RetrievedRef, ...]  # few-shot examples, most similar first
    model: str
    functions: tuple[OfferedRef, ...]  # library functions offered, most similar first
    preamble: str  # their source, run in front of every program
    raw_output: str | None
    raw_response: dict[str, Any] | None
    program: str | None
    program_lenient: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    llm_seconds: float | None
    retrieval_seconds: float
    sandbox_status: str | None
    sandbox_seconds: float | None
    isolation: str | None
    total_seconds: float
    attempts: tuple[Attempt, ...] = ()
    chosen: int | None = None  # index in attempts
    vote: Vote | None = None  # over each sample's last attempt
    sampling: Sampling = GREEDY

    @property
    def samples(self) -> int:
        return len({a.sample for a in self.attempts})

    @property
    def repairs(self) -> int:
        return sum(a.repair for a in self.attempts)

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


def _problem(attempt: Attempt) -> str:
    """What to tell the model about its failed attempt."""
    if attempt.status == "no_number":
        returned = [
            line[len(MARKER) :] for line in (attempt.error or "").splitlines() if MARKER in line
        ]
        what = returned[-1] if returned else "nothing"
        return f"solution() did not return a finite number; it returned {what}"
    if attempt.status == "timeout":
        return f"solution() did not finish in time.\n{attempt.error or ''}"
    return _own_frames(attempt.error or attempt.status)


def _own_frames(output: str) -> str:
    """A traceback without the sandbox runner's frames: the model only wrote ``<solution>``."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if '"<solution>"' in line), None)
    if start is None or not any(line.startswith("Traceback") for line in lines[:start]):
        return output
    return "\n".join(["Traceback (most recent call last):", *lines[start:]])


def _attempt(
    client: LLMClient,
    messages: list[Message],
    prefill: str | None,
    *,
    sample: int,
    repair: bool,
    temperature: float,
    limits: Limits | None,
    preamble: str = "",
) -> Attempt:
    """One call and, if a program came back, its run in the sandbox (after ``preamble``, the
    offered functions' source). Never raises on a model or program failure."""
    seed = sample if temperature > 0 else None
    head: dict[str, Any] = {
        "sample": sample,
        "repair": repair,
        "temperature": temperature,
        "seed": seed,
    }
    try:
        completion = client.complete(messages, prefill=prefill, temperature=temperature, seed=seed)
    except LLMError as exc:
        return Attempt(
            status="llm_error",
            value=None,
            error=str(exc),
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
            **head,
        )
    program = extract_program(completion.text)
    from_llm: dict[str, Any] = {
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
        return Attempt(
            status="no_program",
            value=None,
            error=problem,
            sandbox_status=None,
            sandbox_seconds=None,
            isolation=None,
            **head,
            **from_llm,
        )
    result = run_solution(preamble + program, limits)
    return Attempt(
        status=result.status,
        value=result.value,
        error=None if result.status == "ok" else result.output,
        sandbox_status=result.status,
        sandbox_seconds=result.seconds,
        isolation=result.isolation,
        **head,
        **from_llm,
    )


def _sum(values: Sequence[float | int | None]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


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
    sampling: Sampling = GREEDY,
    functions: FunctionRetrieval | None = None,
) -> LLMAnswer:
    """Answer one question. ``k`` solved examples are retrieved from ``bank`` (never
    ``exclude_id``, the question's own id when evaluating on the labelled records) for the
    improved prompt, and so are library ``functions`` (their signatures in the prompt, their
    source run in front of the program); the paper's prompt is zero-shot and ignores both.
    ``sampling`` says how many programs to ask for and whether a failed one is repaired (one
    greedy program by default)."""
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
    offered: list[Offered] = []
    if prompt_variant == "improved" and functions is not None and functions.count > 0:
        if embedder is None:
            raise ValueError("offering library functions needs an embedder")
        offered = functions.offer(question, embedder)
    setup = preamble(offered)
    retrieval_seconds = time.perf_counter() - started
    prompt = build_prompt(
        prompt_variant,
        question,
        tables,
        examples=[r.example for r in retrieved],
        example_ids=[r.example.question_id for r in retrieved],
        model=client.model,
        functions=functions_block(offered),
    )

    attempts: list[Attempt] = []
    finals: list[Attempt] = []  # each sample's last attempt: these vote
    vote = tally([])
    for sample in range(sampling.samples):
        temperature = 0.0 if sample == 0 else sampling.temperature
        call = functools.partial(
            _attempt,
            client,
            prefill=prompt.prefill,
            sample=sample,
            limits=limits,
            preamble=setup,
        )
        attempt = call(prompt.messages, repair=False, temperature=temperature)
        attempts.append(attempt)
        if attempt.status == "llm_error":
            break  # the endpoint is failing: do not keep calling it
        if sampling.repair and attempt.status in REPAIRABLE:
            fixed = call(
                repair_messages(prompt.messages, attempt.raw_output or "", _problem(attempt)),
                repair=True,
                temperature=temperature,
            )
            attempts.append(fixed)
            if fixed.status != "llm_error":
                attempt = fixed
        finals.append(attempt)
        vote = tally([a.value if a.status == "ok" else None for a in finals])
        if vote.settled(sampling.agree):
            break

    if vote.winner is not None:
        chosen_final = finals[vote.winner.members[0]]
    else:
        chosen_final = finals[0] if finals else attempts[0]
    chosen = attempts.index(chosen_final)
    return LLMAnswer(
        status=chosen_final.status,
        value=chosen_final.value,
        error=chosen_final.error,
        prompt_variant=prompt_variant,
        messages=prompt.request_messages,
        prefill=prompt.prefill,
        retrieved=tuple(RetrievedRef(r.example.question_id, r.similarity) for r in retrieved),
        model=_model(chosen_final, client.model),
        functions=tuple(OfferedRef(o.function.name, o.similarity) for o in offered),
        preamble=setup,
        raw_output=chosen_final.raw_output,
        raw_response=chosen_final.raw_response,
        program=chosen_final.program,
        program_lenient=chosen_final.program_lenient,
        finish_reason=chosen_final.finish_reason,
        prompt_tokens=_sum([a.prompt_tokens for a in attempts]),
        completion_tokens=_sum([a.completion_tokens for a in attempts]),
        llm_seconds=_sum([a.llm_seconds for a in attempts]),
        retrieval_seconds=retrieval_seconds,
        sandbox_status=chosen_final.sandbox_status,
        sandbox_seconds=_sum([a.sandbox_seconds for a in attempts]),
        isolation=chosen_final.isolation,
        total_seconds=time.perf_counter() - started,
        attempts=tuple(attempts),
        chosen=chosen,
        vote=vote,
        sampling=sampling,
    )


def _model(attempt: Attempt, requested: str) -> str:
    """The model as the server named it in its response, else as requested."""
    body = attempt.raw_response if attempt.status != "llm_error" else None
    name = body.get("model") if isinstance(body, dict) else None
    return name if isinstance(name, str) and name else requested
