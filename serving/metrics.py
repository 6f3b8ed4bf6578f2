"""Prometheus metrics of the service, on a registry of its own (one per app instance)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PREDICTION_BUCKETS = (-1e5, -1e3, -100, -10, 0, 1, 10, 100, 1e3, 1e4, 1e5, 1e6)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class ServiceMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "finmath_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "finmath_http_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Histogram(
            "finmath_prediction_value", "Predicted answers", buckets=PREDICTION_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "finmath_inference_batch_size",
            "Items per embedding+model batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model_info = Info("finmath_model", "The model being served", registry=r)
        self.model_ready = Gauge("finmath_model_ready", "1 when a model is loaded", registry=r)
        self.reloads = Counter("finmath_model_reloads", "Successful hot reloads", registry=r)
        self.drift_share = Gauge(
            "finmath_drift_share",
            "Share of drifted feature columns in the latest drift_report (-1: none yet)",
            registry=r,
        )
        self.embedding_drift_share = Gauge(
            "finmath_embedding_drift_share",
            "Share of drifted embedding dimensions in the latest drift_report (-1: none yet)",
            registry=r,
        )
        self.asks = Counter(
            "finmath_llm_asks",
            "POST /ask outcomes (ok, llm_error, no_program, error, timeout, no_number, "
            "no_endpoint)",
            ["outcome"],
            registry=r,
        )
        self.llm_latency = Histogram(
            "finmath_llm_call_seconds",
            "Latency of LLM calls (retries included)",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160),
            registry=r,
        )
        self.sandbox_runs = Counter(
            "finmath_sandbox_runs", "Programs run in the sandbox, by status", ["status"], registry=r
        )
        self.sandbox_latency = Histogram(
            "finmath_sandbox_seconds", "Sandbox run time", buckets=LATENCY_BUCKETS, registry=r
        )
        self.llm_samples = Histogram(
            "finmath_llm_samples_per_answer",
            "Programs sampled per /ask answer (self-consistency; 1: greedy only)",
            buckets=(1, 2, 3, 4, 5, 8, 16),
            registry=r,
        )
        self.llm_repairs = Counter(
            "finmath_llm_repairs",
            "Repair calls: a failed program sent back with its error",
            registry=r,
        )
        self.ask_stage_seconds = Histogram(
            "finmath_llm_ask_stage_seconds",
            "Time per /ask stage, summed over its attempts (retrieval, llm, sandbox)",
            ["stage"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160),
            registry=r,
        )
        self.drift_share.set(-1)
        self.embedding_drift_share.set(-1)
        self._drift_stamp: float | None = None
        self.reload_failures = Counter(
            "finmath_model_reload_failures",
            "Failed hot reloads (the old model kept serving)",
            registry=r,
        )
        # the market forecasters (POST /forecast), one per target
        self.forecasts = Counter(
            "finmath_forecast_requests",
            "Forecast requests by target and outcome (ok, unknown_ticker, no_model, error); "
            "bodies refused by validation are only in finmath_http_requests",
            ["target", "outcome"],
            registry=r,
        )
        self.forecast_latency = Histogram(
            "finmath_forecast_seconds",
            "Time to answer a forecast request, by target",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.forecast_model_info = Info(
            "finmath_forecast_model",
            "The forecaster served for each target",
            ["target"],
            registry=r,
        )
        self.forecast_model_ready = Gauge(
            "finmath_forecast_model_ready",
            "1 when a forecaster is loaded for the target",
            ["target"],
            registry=r,
        )
        self.forecast_reloads = Counter(
            "finmath_forecast_model_reloads", "Forecaster hot reloads", ["target"], registry=r
        )
        self.forecast_reload_failures = Counter(
            "finmath_forecast_model_reload_failures",
            "Failed forecaster reloads (the old version, if any, kept serving)",
            ["target"],
            registry=r,
        )

    def refresh_drift(self, path: Path) -> None:
        """Publish the pipeline's latest drift summary (a small JSON file, re-read only when it
        changes); a missing or unreadable file leaves the gauges as they were."""
        try:
            stamp = path.stat().st_mtime
            if stamp == self._drift_stamp:
                return
            summary = json.loads(path.read_text())
            self.drift_share.set(float(summary["drift_share"]))
            self.embedding_drift_share.set(float(summary["embedding_drift_share"]))
            self._drift_stamp = stamp
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logging.getLogger(__name__).warning("cannot read drift summary %s: %s", path, exc)
