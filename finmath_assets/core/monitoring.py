"""Monitoring: read the service's inference log, and build the Evidently drift and
regression-quality reports (Evidently 0.7 API). No Dagster here; the assets call these.

Embedding dimensions are summarised, not charted one by one (the drift preset costs ~70 ms and
~80 KB of HTML per column): the summary columns get Evidently's DataDriftPreset, the embedding
columns one ``DriftedColumnsCount``, and each row's cosine distance to the reference centroid
becomes one more column that the preset does test (one chart for "are questions about other
things now").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from finmath_assets.core.features import EMBEDDING_PREFIX
from finmath_assets.core.modeling import signed_log

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

INFERENCE_LOG_COLUMNS = (
    "timestamp",
    "request_id",
    "item",
    "model_name",
    "model_version",
    "prediction",
    "features",
)
CENTROID_DISTANCE = "emb_centroid_cosine_distance"


@dataclass
class InferenceLog:
    frame: pd.DataFrame
    files: list[str]
    bad_lines: list[str] = field(
        default_factory=list
    )  # "file:line: reason", never dropped silently


def read_inference_log(directory: Path) -> InferenceLog:
    """Every prediction the service logged (``predictions-YYYY-MM-DD[.<writer>].jsonl``, one
    file per day and service process), in time order.

    A line that is not a complete record (a crash mid-write leaves at most one) is reported in
    ``bad_lines`` with its place and reason.
    """
    rows: list[dict[str, Any]] = []
    bad: list[str] = []
    files = sorted(Path(directory).glob("predictions-*.jsonl")) if Path(directory).is_dir() else []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                missing = [c for c in INFERENCE_LOG_COLUMNS if c not in record]
                if missing:
                    raise ValueError(f"missing {missing}")
                rows.append(
                    {
                        **{c: record[c] for c in INFERENCE_LOG_COLUMNS if c != "features"},
                        "features": json.dumps(record["features"]),
                    }
                )
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                bad.append(f"{path.name}:{number}: {exc}")
    frame = pd.DataFrame(rows, columns=list(INFERENCE_LOG_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["item"] = frame["item"].astype("int64")
    frame["prediction"] = frame["prediction"].astype("float64")
    # several processes (uvicorn workers, replicas) write files side by side
    frame = frame.sort_values("timestamp", kind="stable", ignore_index=True)
    return InferenceLog(frame=frame, files=[p.name for p in files], bad_lines=bad)


def logged_features(log: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The feature values the service computed, as a frame with ``columns``."""
    return pd.DataFrame([json.loads(f) for f in log["features"]], columns=list(columns))


@dataclass
class DriftSummary:
    drift_share: float  # of the summary columns (and the centroid distance)
    drifted_columns: list[str]
    embedding_drift_share: float  # of the raw embedding dimensions, for reference
    columns: pd.DataFrame  # column, method, value, threshold, drifted


def _with_centroid_distance(
    frame: pd.DataFrame, embedding_columns: list[str], centroid: np.ndarray
) -> pd.DataFrame:
    vectors = frame[embedding_columns].to_numpy(dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(centroid)
    cosine = (vectors @ centroid) / np.where(norms == 0, 1.0, norms)
    return frame.assign(**{CENTROID_DISTANCE: 1.0 - cosine})


def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, feature_columns: Sequence[str]
) -> tuple[Snapshot, DriftSummary]:
    """Evidently drift of ``current`` against ``reference`` over ``feature_columns``."""
    from evidently import Report
    from evidently.metrics import DriftedColumnsCount
    from evidently.presets import DataDriftPreset

    if len(reference) < 2 or len(current) < 2:
        raise ValueError(
            f"drift needs at least 2 reference and 2 current rows (got {len(reference)}, "
            f"{len(current)})"
        )
    embedding = [c for c in feature_columns if c.startswith(EMBEDDING_PREFIX)]
    summary = [c for c in feature_columns if c not in set(embedding)]
    if embedding:
        centroid = reference[embedding].to_numpy(dtype=np.float64).mean(axis=0)
        reference = _with_centroid_distance(reference, embedding, centroid)
        current = _with_centroid_distance(current, embedding, centroid)
        summary = [*summary, CENTROID_DISTANCE]
    # two reports: run together over 418 columns, Evidently took 21 s against 3 + 3.6 s apart,
    # and only the summary one is worth reading as HTML (its charts are the tested columns)
    snapshot = Report([DataDriftPreset(columns=summary)]).run(
        current_data=current[summary].reset_index(drop=True),
        reference_data=reference[summary].reset_index(drop=True),
    )
    results = snapshot.dict()["metrics"]
    embedding_share = 0.0
    if embedding:
        counted = Report([DriftedColumnsCount(columns=embedding)]).run(
            current_data=current[embedding].reset_index(drop=True),
            reference_data=reference[embedding].reset_index(drop=True),
        )
        embedding_share = float(counted.dict()["metrics"][0]["value"]["share"])
    rows = []
    for metric in results:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            method, threshold, value = config["method"], config["threshold"], metric["value"]
            # p-value tests drift below the threshold, distances above it
            drifted = value < threshold if "p_value" in method else value >= threshold
            rows.append((config["column"], method, float(value), float(threshold), drifted))
    table = pd.DataFrame(rows, columns=["column", "method", "value", "threshold", "drifted"])
    drifted = table.loc[table["drifted"], "column"].tolist()
    return snapshot, DriftSummary(
        drift_share=len(drifted) / len(table) if len(table) else 0.0,
        drifted_columns=drifted,
        embedding_drift_share=embedding_share,
        columns=table,
    )


def regression_report(
    ground_truth: Sequence[float], prediction: Sequence[float], topic: Sequence[str]
) -> tuple[Snapshot, dict[str, float]]:
    """Evidently's RegressionPreset on the signed-log scale the model is trained and promoted on
    (raw answers span twelve orders of magnitude, so raw-scale errors are the few largest)."""
    from evidently import DataDefinition, Dataset, Regression, Report
    from evidently.presets import RegressionPreset

    frame = pd.DataFrame(
        {
            "target": signed_log(np.asarray(ground_truth, dtype=np.float64)),
            "prediction": signed_log(np.asarray(prediction, dtype=np.float64)),
            "topic": list(topic),
        }
    )
    definition = DataDefinition(
        numerical_columns=["target", "prediction"],
        categorical_columns=["topic"],
        regression=[Regression(target="target", prediction="prediction")],
    )
    snapshot = Report([RegressionPreset()]).run(
        current_data=Dataset.from_pandas(frame, data_definition=definition), reference_data=None
    )
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"].split("(")[0]
        value = metric["value"]
        if name in {"MAE", "RMSE", "R2Score", "MeanError", "AbsMaxError"}:
            values[name] = float(value["mean"] if isinstance(value, dict) else value)
    return snapshot, values
