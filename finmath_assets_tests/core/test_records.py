"""Row validation: each kind of bad row is quarantined with its reason; good rows survive."""

import math

import pytest
from pydantic import ValidationError

from finmath_assets.core.records import TOPICS, FinanceMathRecord, validate_records


def _good(i: int = 0, split: str = "validation") -> dict:
    return {
        "split": split,
        "question_id": f"{split}-{i}",
        "question": "What is the loss?",
        "tables": ["| a | b |\n|---|---|\n| 1 | 2 |"],
        "python_solution": "def solution():\n    return 1",
        "ground_truth": 1.5 if split == "validation" else None,
        "topic": "Accounting",
    }


def _reasons(row: dict) -> list[str]:
    result = validate_records([(0, row)])
    assert not result.valid
    assert len(result.rejected) == 1
    return list(result.rejected[0].reasons)


def test_the_real_data_is_all_valid(real_validation: list, real_test: list) -> None:
    rows = [(i, {**r, "split": "validation"}) for i, r in enumerate(real_validation)]
    rows += [(i, {**r, "split": "test"}) for i, r in enumerate(real_test)]
    result = validate_records(rows)
    assert (len(result.valid), len(result.rejected)) == (1200, 0)
    assert sum(r.labelled for r in result.valid) == 200
    assert {r.topic for r in result.valid} == set(TOPICS)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"question": None}, "question: "),
        ({"question": ""}, "question: "),
        ({"question": "   "}, "question is blank"),
        ({"ground_truth": math.nan}, "ground_truth: must be a finite number"),
        ({"ground_truth": math.inf}, "ground_truth: must be a finite number"),
        ({"ground_truth": "12.5"}, "ground_truth: "),
        ({"ground_truth": None}, "labelled row has no ground_truth"),
        ({"ground_truth": True}, "ground_truth: "),
        ({"question_id": "val-1"}, "question_id: String should match pattern"),
        ({"question_id": "test-1"}, "does not belong to split 'validation'"),
        ({"question_id": 17}, "question_id: "),
        ({"tables": "| a |"}, "tables: "),
        ({"tables": [1, 2]}, "tables.0: "),
        ({"topic": "Astrology"}, "topic: unknown topic 'Astrology'"),
        ({"unexpected": 1}, "unexpected: "),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(change: dict, expected: str) -> None:
    reasons = _reasons({**_good(), **change})
    assert any(expected in reason for reason in reasons), reasons


def test_missing_field_is_named() -> None:
    row = _good()
    del row["question"]
    assert _reasons(row) == ["question: field is missing"]


def test_unlabelled_row_must_not_carry_an_answer() -> None:
    assert _reasons({**_good(split="test"), "ground_truth": 3.0}) == [
        "record: Value error, unlabelled row carries a ground_truth"
    ]


def test_every_reason_is_kept() -> None:
    reasons = _reasons({**_good(), "question": "", "topic": "Astrology", "ground_truth": "x"})
    assert len(reasons) == 3


def test_a_malformed_row_is_quarantined_not_raised() -> None:
    result = validate_records([(0, _good(0)), (1, ["not", "an", "object"]), (2, _good(2))])
    assert [r.question_id for r in result.valid] == ["validation-0", "validation-2"]
    assert result.rejected[0].row_index == 1
    assert result.rejected[0].reasons == ("record: expected a JSON object, got list",)
    assert result.rejected[0].payload == {"value": ["not", "an", "object"]}


def test_duplicate_ids_keep_the_first_and_reject_the_rest() -> None:
    result = validate_records(
        [(0, _good(0)), (1, _good(1)), (2, {**_good(0), "question": "Another?"})]
    )
    assert [r.question_id for r in result.valid] == ["validation-0", "validation-1"]
    assert result.rejected[0].reasons == ("question_id: duplicate of row 0 of split 'validation'",)
    assert result.reject_rate == pytest.approx(1 / 3)


def test_good_rows_survive_beside_bad_ones() -> None:
    rows = [(i, _good(i)) for i in range(5)] + [(5, {**_good(5), "ground_truth": math.nan})]
    result = validate_records(rows)
    assert len(result.valid) == 5 and len(result.rejected) == 1
    assert result.rejected[0].payload["question_id"] == "validation-5"


def test_record_model_is_strict_and_frozen() -> None:
    record = FinanceMathRecord.model_validate(_good())
    assert record.labelled
    with pytest.raises(ValidationError, match="frozen"):
        record.question = "changed"  # type: ignore[misc]
