"""The FinanceMath record contract and row-level validation with quarantine.

``validate_records`` never drops a row silently: each input row ends up either as a
:class:`FinanceMathRecord` or as a :class:`Rejection` carrying the raw payload and every reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Split = Literal["validation", "test"]
LABELLED_SPLITS: frozenset[str] = frozenset({"validation"})

# The seven topics of FinanceMath. Fixed here, not learnt from data, because the topic one-hot
# features and the serving API's accepted values must not change with what a run happened to see.
Topic = Literal[
    "Accounting",
    "Asset Classes & Derivatives",
    "Corporate & Securities Issuance",
    "Market Analysis & Economics",
    "Portfolio Management & Strategy",
    "Quantitative Analysis & Valuation",
    "Risk Management",
]
TOPICS: tuple[str, ...] = get_args(Topic)
QUESTION_ID_PATTERN = r"^(validation|test)-\d+$"
RECORD_FIELDS: tuple[str, ...] = (
    "question_id",
    "question",
    "tables",
    "python_solution",
    "ground_truth",
    "topic",
)


class FinanceMathRecord(BaseModel):
    """One validated FinanceMath question.

    Strict: a string ``"12.5"`` is not a number, a table must be a string, and a labelled
    (``validation``) row must carry a finite ``ground_truth`` while an unlabelled (``test``)
    row must not carry one.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    split: Split
    question_id: str = Field(pattern=QUESTION_ID_PATTERN)
    question: str = Field(min_length=1)
    tables: list[str]
    python_solution: str | None = None
    ground_truth: float | None = Field(default=None, allow_inf_nan=False)
    topic: Topic

    @field_validator("question")
    @classmethod
    def _question_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is blank")
        return value

    @model_validator(mode="after")
    def _split_rules(self) -> FinanceMathRecord:
        prefix = self.question_id.split("-", 1)[0]
        if prefix != self.split:
            raise ValueError(
                f"question_id {self.question_id!r} does not belong to split {self.split!r}"
            )
        if self.split in LABELLED_SPLITS and self.ground_truth is None:
            raise ValueError("labelled row has no ground_truth")
        if self.split not in LABELLED_SPLITS and self.ground_truth is not None:
            raise ValueError("unlabelled row carries a ground_truth")
        return self

    @property
    def labelled(self) -> bool:
        return self.split in LABELLED_SPLITS


@dataclass(frozen=True)
class Rejection:
    """A quarantined row: where it came from, what it held, and every reason it failed."""

    split: str | None
    row_index: int
    question_id: str | None
    payload: Mapping[str, Any]
    reasons: tuple[str, ...]


@dataclass
class ValidationResult:
    valid: list[FinanceMathRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def reject_rate(self) -> float:
        total = len(self.valid) + len(self.rejected)
        return len(self.rejected) / total if total else 0.0


def _describe(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ())) or "record"
    message = error.get("msg", "invalid")
    if error.get("type") == "finite_number":
        message = "must be a finite number (NaN and infinity are not allowed)"
    elif error.get("type") == "missing":
        message = "field is missing"
    elif error.get("type") == "literal_error" and location == "topic":
        message = f"unknown topic {error.get('input')!r}; known topics: {', '.join(TOPICS)}"
    return f"{location}: {message}"


def validate_record(row: Mapping[str, Any]) -> FinanceMathRecord | list[str]:
    """Validate one row (a mapping with ``split`` and the record fields)."""
    if not isinstance(row, Mapping):
        return [f"record: expected a JSON object, got {type(row).__name__}"]
    try:
        return FinanceMathRecord.model_validate(dict(row))
    except ValidationError as exc:
        return [_describe(error) for error in exc.errors(include_url=False)]


def validate_records(rows: Iterable[tuple[int, Mapping[str, Any]]]) -> ValidationResult:
    """Validate ``(row_index, row)`` pairs; duplicate question ids after the first are rejected."""
    result = ValidationResult()
    first_seen: dict[str, tuple[str | None, int]] = {}
    for row_index, row in rows:
        outcome = validate_record(row)
        payload = row if isinstance(row, Mapping) else {"value": row}
        split = payload.get("split") if isinstance(payload.get("split"), str) else None
        question_id = payload.get("question_id")
        question_id = question_id if isinstance(question_id, str) else None
        reasons = list(outcome) if isinstance(outcome, list) else []
        if question_id is not None:
            if question_id in first_seen:
                first_split, first_row = first_seen[question_id]
                reasons.append(
                    f"question_id: duplicate of row {first_row} of split {first_split!r}"
                )
            elif not reasons:
                first_seen[question_id] = (split, row_index)
        if reasons:
            result.rejected.append(
                Rejection(
                    split=split,
                    row_index=row_index,
                    question_id=question_id,
                    payload=payload,
                    reasons=tuple(reasons),
                )
            )
        else:
            assert isinstance(outcome, FinanceMathRecord)
            result.valid.append(outcome)
    return result
