"""Monitoring: the inference log as the service writes it, Evidently drift that flags a shifted
dataset and not an unshifted one, the regression report, and the monitoring assets on real runs."""

import json
import os
import socket
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from finmath_assets.core import monitoring
from finmath_assets.core.features import ID_COLUMNS
from finmath_assets.core.modeling import signed_log
from finmath_assets.defs.finmath.sensors import build_inference_log_sensor
from finmath_assets_tests.conftest import Materialized, materialize
from serving.inference_log import InferenceLogWriter

pytestmark = pytest.mark.slow  # Evidently reports on the real materialised features


@pytest.fixture(scope="module")
def real_features(materialized_real: Materialized) -> pd.DataFrame:
    with duckdb.connect(str(materialized_real.settings.warehouse_path), read_only=True) as conn:
        return conn.execute("SELECT * FROM finmath.features ORDER BY question_id").fetchdf()


def _feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ID_COLUMNS]


def _write_log(
    directory: Path, features: pd.DataFrame, n: int, writer_id: str = "w1", minute: int = 0
) -> None:
    """Predictions logged by the service's own writer, with real feature rows."""
    writer = InferenceLogWriter(directory, flush_seconds=0.05, writer_id=writer_id).start()
    columns = _feature_columns(features)
    for i, row in enumerate(features[columns].head(n).itertuples(index=False)):
        writer.write(
            {
                "timestamp": f"2026-11-2{7 if i % 2 else 6}T10:{minute + i:02d}:00+00:00",
                "request_id": f"r{i}",
                "item": 0,
                "model_name": "finmath-answer-regressor",
                "model_version": "1",
                "prediction": float(i),
                "features": dict(zip(columns, map(float, row), strict=True)),
            }
        )
    writer.close()


def test_inference_log_is_read_back_and_a_torn_line_is_reported(
    tmp_path: Path, real_features: pd.DataFrame
) -> None:
    _write_log(tmp_path, real_features, 10)
    with (tmp_path / "predictions-2026-11-27.w1.jsonl").open("a") as handle:
        handle.write('{"timestamp": "2026-11-27T10:00:01+00:00", "request_id": "torn", "it')
    log = monitoring.read_inference_log(tmp_path)
    assert len(log.frame) == 10 and log.files == [
        "predictions-2026-11-26.w1.jsonl",
        "predictions-2026-11-27.w1.jsonl",
    ]
    assert len(log.bad_lines) == 1
    assert log.bad_lines[0].startswith("predictions-2026-11-27.w1.jsonl:")
    columns = _feature_columns(real_features)
    back = monitoring.logged_features(log.frame[log.frame["request_id"] == "r3"], columns)
    expected = real_features[columns].iloc[[3]].reset_index(drop=True)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert monitoring.read_inference_log(tmp_path / "missing").frame.empty


def test_each_service_process_writes_its_own_files_and_they_are_read_in_time_order(
    tmp_path: Path, real_features: pd.DataFrame
) -> None:
    # two uvicorn workers or replicas on one volume: their minutes interleave
    _write_log(tmp_path, real_features, 6, writer_id="host-a-1", minute=0)
    _write_log(tmp_path, real_features, 6, writer_id="host-b-7", minute=30)
    default = InferenceLogWriter(tmp_path)
    assert default.writer_id == f"{socket.gethostname()}-{os.getpid()}"
    log = monitoring.read_inference_log(tmp_path)
    assert sorted(log.files) == sorted(
        f"predictions-2026-11-2{d}.{w}.jsonl" for d in (6, 7) for w in ("host-a-1", "host-b-7")
    )
    assert len(log.frame) == 12 and not log.bad_lines
    assert log.frame["timestamp"].is_monotonic_increasing


def test_drift_flags_a_shifted_dataset_and_not_an_unshifted_one(real_features) -> None:
    columns = _feature_columns(real_features)
    shuffled = real_features.sample(frac=1.0, random_state=0).reset_index(drop=True)
    reference, current = shuffled.iloc[:600], shuffled.iloc[600:]
    _, same = monitoring.drift_report(reference, current, columns)
    assert same.drift_share <= 0.1, same.drifted_columns
    shifted = current.copy()
    shifted["question_chars"] *= 3
    shifted["question_words"] *= 3
    for stat in ("tbl_value_mean", "tbl_value_max", "q_number_mean", "q_number_max"):
        shifted[stat] = shifted[stat] * 1000 + 5
    embedding = [c for c in columns if c.startswith("emb_")]
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(len(shifted), len(embedding)))
    shifted[embedding] = shifted[embedding].to_numpy() + 0.2 * noise
    _, moved = monitoring.drift_report(reference, shifted, columns)
    assert moved.drift_share > 0.2
    assert {"question_chars", "tbl_value_mean", monitoring.CENTROID_DISTANCE} <= set(
        moved.drifted_columns
    )
    assert moved.embedding_drift_share > same.embedding_drift_share
    with pytest.raises(ValueError, match="at least 2"):
        monitoring.drift_report(reference, current.iloc[:1], columns)


def test_regression_report_is_on_the_signed_log_scale(materialized_real: Materialized) -> None:
    with duckdb.connect(str(materialized_real.settings.warehouse_path), read_only=True) as conn:
        cv = conn.execute("SELECT * FROM finmath.cv_predictions").fetchdf()
    _, values = monitoring.regression_report(cv["ground_truth"], cv["model"], cv["topic"])
    expected = np.mean(np.abs(signed_log(cv["model"].to_numpy()) - signed_log(cv["ground_truth"])))
    assert values["MAE"] == pytest.approx(expected)
    assert {"RMSE", "R2Score", "MeanError"} <= set(values)


def test_monitoring_assets_in_the_real_run(materialized_real: Materialized) -> None:
    drift = materialized_real.metadata("drift_report")
    assert drift["current_source"] == "test_split" and drift["current_rows"] == 1000
    assert Path(drift["report"]).stat().st_size > 100_000
    assert 0 <= drift["drift_share"] <= 0.3
    regression = materialized_real.metadata("regression_quality_report")
    assert Path(regression["report"]).exists() and regression["MAE"] > 0
    with duckdb.connect(str(materialized_real.settings.warehouse_path), read_only=True) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM finmath.drift_history").fetchone()
    assert rows >= 1


def test_drift_compares_the_inference_log_once_it_is_long_enough(
    warm_copy: Path, real_features, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_log(warm_copy / "inference_log", real_features, 60)
    with dg.instance_for_test() as instance:
        run = materialize(
            warm_copy,
            monkeypatch,
            instance,
            selection=["inference_log", "drift_report"],
            drift_min_rows=50,
        )
        log_meta, drift_meta = run.metadata("inference_log"), run.metadata("drift_report")
    assert log_meta["rows"] == 60 and log_meta["bad_lines"] == 0
    assert drift_meta["current_source"] == "inference_log" and drift_meta["current_rows"] == 60


def test_inference_log_sensor_requests_a_run_when_files_grow(tmp_path: Path) -> None:
    sensor = build_inference_log_sensor(tmp_path)
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None):
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            return sensor(context), context.cursor

        result, cursor = tick(None)
        assert isinstance(result, dg.SkipReason)  # no files yet
        (tmp_path / "predictions-2026-11-27.jsonl").write_text(json.dumps({"a": 1}) + "\n")
        first, cursor = tick(cursor)
        assert isinstance(first, dg.RunRequest)
        again, cursor = tick(cursor)
        assert isinstance(again, dg.SkipReason)  # nothing new
        with (tmp_path / "predictions-2026-11-27.jsonl").open("a") as handle:
            handle.write(json.dumps({"a": 2}) + "\n")
        grown, _ = tick(cursor)
        assert isinstance(grown, dg.RunRequest) and grown.run_key != first.run_key
