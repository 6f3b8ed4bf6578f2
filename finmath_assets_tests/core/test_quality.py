"""The data-quality rules behind the asset checks, on crafted bad input and on good input."""

import math

import numpy as np

from finmath_assets.core import quality
from finmath_assets.core.features import feature_columns


def test_reject_rate() -> None:
    assert quality.reject_rate(1200, 0, 0.01).passed
    assert quality.reject_rate(1200, 12, 0.01).passed
    failed = quality.reject_rate(1200, 13, 0.01)
    assert not failed.passed and "13 of 1200" in failed.description
    assert not quality.reject_rate(0, 0, 0.01).passed  # an empty source is not a clean one


def test_unique_ids() -> None:
    assert quality.unique_ids(["a", "b"]).passed
    failed = quality.unique_ids(["a", "b", "a", "c", "c"])
    assert not failed.passed and failed.metadata["duplicated_ids"] == ["a", "c"]


def test_labelled_count() -> None:
    assert quality.labelled_count(200, 200).passed
    assert not quality.labelled_count(199, 200).passed


def test_numeric_parse_share_counts_only_cells_with_digits() -> None:
    texts = ["$ 57,000", "Truck", "12.5%", "1.3935/1.3983", "", "Class 1"]
    parsed = [True, False, True, False, False, False]
    outcome = quality.numeric_parse_share(texts, parsed, 0.5)
    assert outcome.metadata["numeric_looking_cells"] == 4 and outcome.metadata["parsed"] == 2
    assert outcome.passed  # 2 of 4 = 50 %
    assert not quality.numeric_parse_share(texts, parsed, 0.8).passed
    assert outcome.metadata["unparsed_examples"] == ["1.3935/1.3983", "Class 1"]


def _unit(n: int, dim: int = 4) -> np.ndarray:
    vectors = np.random.default_rng(0).normal(size=(n, dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_embeddings_rule() -> None:
    ids = ["q1", "q2", "q3"]
    assert quality.embeddings(ids, _unit(3), ids, 4).passed
    wrong_dim = quality.embeddings(ids, _unit(3, 5), ids, 4)
    assert not wrong_dim.passed and "dimension" in wrong_dim.description
    with_nan = _unit(3)
    with_nan[1, 2] = math.nan
    assert quality.embeddings(ids, with_nan, ids, 4).metadata["nan_vectors"] == 1
    assert not quality.embeddings(ids, _unit(3) * 2, ids, 4).passed  # not normalised
    missing = quality.embeddings(ids[:2], _unit(2), ids, 4)
    assert not missing.passed and "1 missing records" in missing.description
    doubled = quality.embeddings(["q1", "q1", "q2", "q3"], _unit(4), ids, 4)
    assert not doubled.passed and "repeated" in doubled.description


def test_feature_table_rule() -> None:
    columns = feature_columns(4)
    assert quality.feature_table(columns, [], 10, columns, 10).passed
    assert not quality.feature_table(columns, [], 9, columns, 10).passed
    assert not quality.feature_table(columns[:-1], [], 10, columns, 10).passed
    swapped = [columns[1], columns[0], *columns[2:]]
    order = quality.feature_table(swapped, [], 10, columns, 10)
    assert not order.passed and "order" in order.description
    nulls = quality.feature_table(columns, ["tbl_value_mean"], 10, columns, 10)
    assert not nulls.passed and "all-null" in nulls.description


def test_beats_baseline() -> None:
    assert quality.beats_baseline(2.84, 3.08, "cv_signed_log_mae").passed
    assert not quality.beats_baseline(3.08, 3.08, "cv_signed_log_mae").passed
    assert not quality.beats_baseline(math.nan, 3.08, "cv_signed_log_mae").passed
