"""Request and response bodies of every route, and the error bodies they document.

The request models hold the rules that never change (types, patterns, unknown fields refused). Their
size limits are each app's own, from the ``ServingSettings`` given to ``create_app``:
``serving/limits.py`` adds them, for validation and for ``/openapi.json``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_validator

from finmath_assets.core.market.forecasting import Target
from finmath_assets.core.records import Topic

EXAMPLE: dict[str, JsonValue] = {
    "question": "A business swapped a truck bought three years ago for land. The truck cost "
    "$57,000 and is depreciated at 20% a year (declining balance); the land's fair value is "
    "$21,000. What gain or loss does it record?",
    "tables": [
        "| | Truck | Land |\n|---|---|---|\n| Original cost | $ 57,000 | $ 18,000 |\n"
        "| Current fair value | $ 27,000 | $ 21,000 |"
    ],
    "topic": "Accounting",
}

# the fixed rules of the fields that also have a limit (serving/limits.py restates the field with
# the app's limit added)
Question = Annotated[str, Field(min_length=1)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    question: Question
    tables: list[str] = Field(default_factory=list)
    topic: Topic


class PredictResponse(BaseModel):
    prediction: float
    model_name: str
    model_version: str
    request_id: str


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"items": [EXAMPLE]}]}
    )

    items: list[PredictRequest] = Field(min_length=1)


class BatchResponse(BaseModel):
    predictions: list[float]
    model_name: str
    model_version: str
    request_id: str


class ModelDescription(BaseModel):
    name: str
    version: str
    alias: str | None
    run_id: str
    cv_metrics: dict[str, float]
    trained_at: str | None
    loaded_at: str
    feature_count: int
    embedding_model_id: str | None


class Readiness(BaseModel):
    ready: bool
    model_version: str | None
    last_reload_error: str | None
    reloads: int
    reload_failures: int


# the ticker rule of the price feed (finmath_assets.core.market.prices.PriceBar)
Ticker = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9.\-]{0,9}$")]
# uniqueItems: what ForecastRequest._unique enforces
Tickers = Annotated[list[Ticker], Field(min_length=1, json_schema_extra={"uniqueItems": True})]
Horizon = Annotated[int, Field(ge=1, description="Business days.")]


class ForecastRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"tickers": ["AAPL", "IBM"], "horizon": 5, "target": "log_volume"}]
        },
    )

    tickers: Tickers
    horizon: Horizon
    target: Target = "log_volume"

    @field_validator("horizon", mode="before")
    @classmethod
    def _whole_number(cls, horizon: object) -> object:
        # JSON Schema's "integer" includes 5.0; strict mode still refuses "5" and 2.5
        if isinstance(horizon, float) and horizon.is_integer():
            return int(horizon)
        return horizon

    @field_validator("tickers")
    @classmethod
    def _unique(cls, tickers: list[str]) -> list[str]:
        repeated = sorted({t for t in tickers if tickers.count(t) > 1})
        if repeated:
            raise ValueError(f"tickers repeated: {repeated}")
        return tickers


class ForecastPoint(BaseModel):
    ticker: str
    date: dt.date
    value: float = Field(description="The forecast of the target (log1p shares or log return).")
    volume: float | None = Field(
        default=None, description="log_volume only: expm1(value), in shares."
    )
    price_ratio: float | None = Field(
        default=None,
        description="log_return only: exp of the log returns summed up to this day, the implied "
        "price relative to the last close.",
    )


class ForecastResponse(BaseModel):
    model_name: str
    model_version: str
    target: Target
    horizon: int
    last_observed: dict[str, dt.date] = Field(
        description="Each ticker's last training day: the forecast starts the business day after."
    )
    forecasts: list[ForecastPoint]


class ForecasterDescription(BaseModel):
    target: Target
    name: str
    alias: str
    loaded: bool
    version: str | None
    run_id: str | None
    backtest_metrics: dict[str, float]
    trained_at: str | None
    loaded_at: str | None
    tickers: list[str]
    last_observed: dict[str, dt.date]
    last_reload_error: str | None


class AskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{k: v for k, v in EXAMPLE.items() if k != "topic"}]},
    )

    question: Question
    tables: list[str] = Field(default_factory=list)


class RetrievedExample(BaseModel):
    question_id: str
    similarity: float


class OfferedFunction(BaseModel):
    """A finance library function shown to the model (its source ran before the program)."""

    name: str
    similarity: float


class AskCandidate(BaseModel):
    """One LLM call: a sampled program, or the repair of a failed one."""

    sample: int  # 0: the greedy program; 1, 2, ...: sampled at `temperature` with seed = sample
    repair: bool  # the second call of that sample, sent the first one's error
    temperature: float
    status: str  # ok | llm_error | no_program | error | timeout | no_number
    value: float | None  # what its program returned
    program: str | None
    error: str | None
    llm_seconds: float | None
    sandbox_seconds: float | None


class AskVoteGroup(BaseModel):
    value: float  # the group's first value (the paper's comparison groups equal answers)
    votes: int
    samples: list[int]


class AskVote(BaseModel):
    groups: list[AskVoteGroup]  # most votes first; a tie goes to the earliest sample
    voters: int  # samples whose program returned a number
    samples: int
    description: str


class AskResponse(BaseModel):
    answer: float | None  # the number the chosen program returned (None: see status)
    status: str  # ok | llm_error | no_program | error | timeout | no_number
    error: str | None
    program: str | None  # what the sandbox ran (FinanceMath's extraction)
    raw_output: str | None  # the model's text, always kept
    retrieved: list[RetrievedExample]  # few-shot examples, most similar first
    functions: list[OfferedFunction]  # library functions offered, most similar first
    model: str
    prompt_variant: str
    isolation: str | None
    llm_seconds: float | None  # summed over every call
    sandbox_seconds: float | None  # summed over every run
    retrieval_seconds: float
    total_seconds: float
    prompt_tokens: int | None
    completion_tokens: int | None
    candidates: list[AskCandidate]  # every call, in order; `chosen` indexes it
    chosen: int | None
    vote: AskVote | None
    request_id: str


# error bodies: every 4xx/5xx a route answers is documented with one of these


class ErrorMessage(BaseModel):
    detail: str


class ValidationProblem(BaseModel):
    type: str
    loc: list[str | int] = Field(description="Where: ``body``, then the field path.")
    msg: str
    input: Any = Field(default=None, description="The offending value, only when small JSON.")
    ctx: dict[str, Any] | None = None


class ValidationErrors(BaseModel):
    detail: list[ValidationProblem]


class UnknownTickers(BaseModel):
    detail: str
    unknown: list[str]
    known: list[str] = Field(description="The tickers the forecaster was trained on.")


class SimilarSolvedExample(BaseModel):
    note: str
    question_id: str
    similarity: float
    question: str
    python_solution: str


class AskUnavailableDetail(BaseModel):
    message: str
    most_similar_solved_example: SimilarSolvedExample | None = Field(
        default=None, description="For reference only: never an answer to the question."
    )


class AskUnavailable(BaseModel):
    detail: AskUnavailableDetail
