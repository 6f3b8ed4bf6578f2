"""The evaluation report: schema (a pydantic model, versioned) and how it is computed.

The JSON written to ``FINMATH_HOME/processed/evaluation_report.json`` is
``EvaluationReport.model_dump_json()``; its JSON Schema is ``EvaluationReport.model_json_schema()``.
Fields are only ever added within a ``schema_version``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NotRequired, TypedDict, Unpack

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from finmath_assets.core.modeling import regression_metrics

PREDICTORS: tuple[str, ...] = ("model", "mean_baseline", "median_baseline")


class Metrics(BaseModel):
    mae: float = Field(description="mean absolute error, original units")
    rmse: float = Field(description="root mean squared error, original units")
    median_ae: float = Field(description="median absolute error, original units")
    signed_log_mae: float = Field(description="MAE of sign(y)*log1p(|y|): the promotion metric")


class PredictorMetrics(BaseModel):
    model: Metrics
    mean_baseline: Metrics
    median_baseline: Metrics


class TopicMetrics(BaseModel):
    topic: str
    n: int
    metrics: PredictorMetrics


class EvaluationReport(BaseModel):
    schema_version: Literal["1.0"] = "1.0"
    created_at: datetime
    model_name: str
    model_version: str
    run_id: str
    promoted_to_champion: bool
    promotion_reason: str
    evaluation: Literal["out-of-fold cross-validation"] = "out-of-fold cross-validation"
    n_labelled: int
    cv_folds: int
    target_transform: str
    feature_set: str
    n_features: int
    feature_set_ablation: dict[str, float] = Field(
        description="model CV signed_log_mae per feature set, same folds and parameters"
    )
    overall: PredictorMetrics
    per_topic: list[TopicMetrics]
    beats_median_baseline: bool = Field(
        description="model signed_log_mae < median baseline signed_log_mae"
    )


class ReportFields(TypedDict):
    """The fields of :class:`EvaluationReport` that :func:`build_report` does not compute."""

    schema_version: NotRequired[Literal["1.0"]]
    created_at: datetime
    model_name: str
    model_version: str
    run_id: str
    promoted_to_champion: bool
    promotion_reason: str
    evaluation: NotRequired[Literal["out-of-fold cross-validation"]]
    cv_folds: int
    target_transform: str
    feature_set: str
    n_features: int
    feature_set_ablation: dict[str, float]


def predictor_metrics(frame: pd.DataFrame) -> PredictorMetrics:
    """``frame`` has ``ground_truth`` and one column per predictor (``PREDICTORS``)."""
    truth = frame["ground_truth"].to_numpy(dtype=np.float64)
    return PredictorMetrics(
        **{
            name: Metrics(**regression_metrics(truth, frame[name].to_numpy()))
            for name in PREDICTORS
        }
    )


def build_report(cv_predictions: pd.DataFrame, **fields: Unpack[ReportFields]) -> EvaluationReport:
    overall = predictor_metrics(cv_predictions)
    per_topic = [
        TopicMetrics(topic=str(topic), n=len(group), metrics=predictor_metrics(group))
        for topic, group in cv_predictions.groupby("topic", sort=True)
    ]
    return EvaluationReport(
        overall=overall,
        per_topic=per_topic,
        n_labelled=len(cv_predictions),
        beats_median_baseline=overall.model.signed_log_mae < overall.median_baseline.signed_log_mae,
        **fields,
    )


def report_rows(report: EvaluationReport) -> pd.DataFrame:
    """Long form: one row per (scope, predictor) with the four metrics."""
    rows = []
    scopes = [("overall", report.n_labelled, report.overall)] + [
        (t.topic, t.n, t.metrics) for t in report.per_topic
    ]
    for scope, n, metrics in scopes:
        for predictor in PREDICTORS:
            rows.append(
                {
                    "scope": scope,
                    "n": n,
                    "predictor": predictor,
                    **getattr(metrics, predictor).model_dump(),
                }
            )
    return pd.DataFrame(rows)


def report_markdown(report: EvaluationReport) -> str:
    """The headline table for the Dagster UI."""
    lines = [
        f"**{report.model_name} v{report.model_version}** — "
        f"{'promoted to champion' if report.promoted_to_champion else 'not promoted'}: "
        f"{report.promotion_reason}",
        "",
        f"{report.cv_folds}-fold out-of-fold predictions on {report.n_labelled} labelled questions",
        "",
        "| predictor | signed-log MAE | MAE | RMSE | median AE |",
        "|---|---:|---:|---:|---:|",
    ]
    for predictor in PREDICTORS:
        m = getattr(report.overall, predictor)
        lines.append(
            f"| {predictor} | {m.signed_log_mae:.3f} | {m.mae:,.1f} | {m.rmse:,.1f} | "
            f"{m.median_ae:,.2f} |"
        )
    lines += ["", "| feature set | model signed-log MAE |", "|---|---:|"]
    for feature_set, value in report.feature_set_ablation.items():
        marker = " (registered)" if feature_set == report.feature_set else ""
        lines.append(f"| {feature_set}{marker} | {value:.3f} |")
    lines += ["", "| topic | n | model | median baseline |", "|---|---:|---:|---:|"]
    for topic in report.per_topic:
        lines.append(
            f"| {topic.topic} | {topic.n} | {topic.metrics.model.signed_log_mae:.3f} | "
            f"{topic.metrics.median_baseline.signed_log_mae:.3f} |"
        )
    return "\n".join(lines)
