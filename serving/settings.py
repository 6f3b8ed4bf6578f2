"""Settings of the inference service (``FINMATH_SERVING_*``), beside the shared project settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINMATH_SERVING_", extra="ignore", frozen=True)

    model_alias: str = Field(default="champion", description="Registry alias the service follows.")
    model_uri: str | None = Field(
        default=None,
        description="Serve this MLflow model URI instead of following the alias "
        "(e.g. runs:/<run_id>/model); the refresher is then off.",
    )
    wait_for_model: bool = Field(
        default=False,
        description="Start even when the alias names no model yet, answer 503 until it does, "
        "and pick it up at the next poll (the compose stack starts before the first training "
        "run). Off: a service that cannot serve refuses to start.",
    )
    refresh_seconds: float = Field(
        default=30.0, gt=0, description="How often the registry is polled for a moved alias."
    )
    max_batch_items: int = Field(default=64, ge=1, le=1024)
    max_question_chars: int = Field(default=4000, ge=1)
    max_tables: int = Field(default=8, ge=0)
    max_table_chars: int = Field(default=20000, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="Extra wait for a batch to fill (0: take what is queued when a thread is "
        "free; under load batches form by themselves).",
    )
    batch_max_size: int = Field(default=8, ge=1, description="Largest micro-batch.")
    workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Inference threads, each running one micro-batch at a time (one per core).",
    )
    embed_threads: int = Field(
        default=0,
        ge=0,
        description="Cores the encoder uses (0: every core available). A request encoded while "
        "no other is gets all of them; overlapping ones get a share each (cores / workers).",
    )
    log_flush_seconds: float = Field(default=1.0, gt=0)
    forecast_max_tickers: int = Field(
        default=20, ge=1, le=1000, description="Most tickers in one /forecast request."
    )
    forecast_max_horizon: int = Field(
        default=60, ge=1, le=1000, description="Longest /forecast horizon (business days)."
    )
