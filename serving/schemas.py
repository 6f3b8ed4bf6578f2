"""Request and response bodies. Limits come from ``ServingSettings`` (read once at import)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from finmath_assets.core.records import Topic
from serving.settings import ServingSettings

_LIMITS = ServingSettings()

EXAMPLE = {
    "question": "A business swapped a truck bought three years ago for land. The truck cost "
    "$57,000 and is depreciated at 20% a year (declining balance); the land's fair value is "
    "$21,000. What gain or loss does it record?",
    "tables": [
        "| | Truck | Land |\n|---|---|---|\n| Original cost | $ 57,000 | $ 18,000 |\n"
        "| Current fair value | $ 27,000 | $ 21,000 |"
    ],
    "topic": "Accounting",
}

TableText = Annotated[str, StringConstraints(max_length=_LIMITS.max_table_chars)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    question: str = Field(min_length=1, max_length=_LIMITS.max_question_chars)
    tables: list[TableText] = Field(default_factory=list, max_length=_LIMITS.max_tables)
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

    items: list[PredictRequest] = Field(min_length=1, max_length=_LIMITS.max_batch_items)


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
