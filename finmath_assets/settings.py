"""One settings object for the whole project, read from ``FINMATH_*`` environment variables.

Framework-free on purpose: the Dagster definitions and the serving service read the same
settings. Every field is documented in docs/configuration.md.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from finmath_assets.core.embeddings import (
    DEFAULT_BACKEND,
    DEFAULT_MODEL_NAME,
    Backend,
    Embedder,
)

if TYPE_CHECKING:  # the client imports the openai SDK: only code that calls an LLM pays for it
    from finmath_assets.core.llm.answering import Sampling
    from finmath_assets.core.llm.client import LLMClientConfig

ExecutorName = Literal["in_process", "multiprocess", "k8s", "celery"]

# drift_report writes it (relative to FINMATH_HOME/processed), the service publishes it
DRIFT_SUMMARY_FILE = "reports/drift_latest.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINMATH_", extra="ignore", frozen=True)

    # -- Home -------------------------------------------------------------------------------------
    home: Path = Field(
        default=Path("data"), description="Root of every file the pipeline writes (git-ignored)."
    )

    # -- FinanceMath source -----------------------------------------------------------------------
    source: Literal["local", "huggingface"] = Field(
        default="local",
        description="'local': the embedded pinned snapshot (or FINMATH_LOCAL_DATA_DIR); "
        "'huggingface': datasets.load_dataset(FINMATH_HF_DATASET).",
    )
    local_data_dir: Path | None = Field(
        default=None,
        description="Folder with validation.json and test.json for the local source "
        "(default: the snapshot shipped in the package).",
    )
    hf_dataset: str = Field(
        default="yale-nlp/FinanceMath",
        description="Hub dataset id, or a local folder laid out like the hub repository.",
    )
    hf_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("FINMATH_HF_TOKEN", "HF_TOKEN"),
        description="Token for the gated dataset (FINMATH_HF_TOKEN, else HF_TOKEN).",
    )
    hf_revision: str | None = Field(default=None, description="Pin a hub revision (commit sha).")
    hf_cache_dir: Path = Field(
        default=Path(".cache/hf"), description="datasets cache for both sources."
    )

    # -- FinanceMath data quality checks ----------------------------------------------------------
    check_max_reject_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="validated_records check: largest share of raw rows that may be rejected.",
    )
    check_expected_labelled: int = Field(
        default=200, ge=0, description="validated_records check: labelled records expected."
    )
    check_min_numeric_share: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="question_tables check: smallest share of numeric-looking cells that parse.",
    )
    check_max_rejected_records: int = Field(
        default=0,
        ge=0,
        description="rejected_records check (warn): largest number of quarantined FinanceMath "
        "rows (the pinned snapshot has none).",
    )

    # -- Embeddings -------------------------------------------------------------------------------
    embedding_model: str = Field(
        default=DEFAULT_MODEL_NAME,
        description="sentence-transformers model: the packaged MiniLM name or a local folder.",
    )
    embedding_backend: Backend = Field(
        default=DEFAULT_BACKEND,
        description="'openvino': OpenVINO on a one-time ONNX export of the model, in bf16 where "
        "the CPU has it (1.4x 'onnx' under load here, same accuracy); 'onnx': ONNX Runtime, "
        "fp32, the torch vectors to 2e-7; 'torch': sentence-transformers; 'onnx-int8': faster, "
        "costs accuracy. Shared by the assets and the service; part of the embedding model id, "
        "so changing it re-embeds and needs a retrain.",
    )
    embedding_batch_size: int = Field(
        default=1,
        ge=1,
        le=4096,
        description="Texts per forward pass (1 is fastest on 2 CPU cores: padding costs more "
        "than batching saves).",
    )
    embedding_threads: int = Field(
        default=0, ge=0, description="Threads per encode call in the assets (0: every core)."
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where the ONNX export of the embedding model is cached "
        "(default FINMATH_HOME/models).",
    )

    # -- Answer model training and MLflow registry ------------------------------------------------
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI (default sqlite:///FINMATH_HOME/mlflow.db)."
    )
    mlflow_registry_uri: str | None = Field(
        default=None, description="MLflow registry URI (default: the tracking URI)."
    )
    mlflow_artifact_location: str | None = Field(
        default=None,
        description="Artefact root of a new experiment (default FINMATH_HOME/mlartifacts; with an "
        "http(s) tracking server, the server's own proxied store).",
    )
    mlflow_experiment: str = Field(default="finmath")
    model_name: str = Field(
        default="finmath-answer-regressor", description="Registered model name."
    )
    model_target_transform: Literal["signed_log", "identity"] = Field(
        default="signed_log", description="Train on sign(y)*log1p(|y|) or on y itself."
    )
    model_feature_set: Literal["all", "no_embeddings"] = Field(
        default="all", description="Feature columns the model trains on."
    )
    model_cv_folds: int = Field(default=5, ge=2, le=20)
    model_seed: int = Field(default=42)

    # -- Automation and freshness -----------------------------------------------------------------
    ingest_cron: str = Field(
        default="0 3 * * *",
        description="When automation re-reads the source (cron, UTC); downstream assets follow "
        "when their blocking checks pass.",
    )
    automation_interval_seconds: int = Field(
        default=30,
        ge=1,
        description="How often the automation sensor evaluates the conditions (Dagster's "
        "default: 30 s).",
    )
    sensor_interval_seconds: int = Field(
        default=60,
        ge=1,
        description="How often the drop-folder sensors (price and transaction files) and the "
        "inference-log sensor look for new files.",
    )
    freshness_warn_hours: float = Field(
        default=26, gt=0, description="Freshness policy: warn when older than this."
    )
    freshness_fail_hours: float = Field(
        default=48, gt=0, description="Freshness policy: fail when older than this."
    )

    # -- Monitoring and alerts --------------------------------------------------------------------
    drift_min_rows: int = Field(
        default=200,
        ge=2,
        description="drift_report compares the inference log once it holds this many "
        "predictions, the unlabelled test split before that.",
    )
    drift_max_share: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="drift_report check (warn): largest share of drifted columns.",
    )
    alert_interval_seconds: int = Field(
        default=30,
        ge=1,
        description="How often the alert sensors read failed checks and failed runs.",
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="Also POST alerts here as Slack-compatible JSON (they always go to the run "
        "log and FINMATH_HOME/alerts.jsonl).",
    )

    # -- Market feeds and their checks ------------------------------------------------------------
    market_freshness_fail_hours: float = Field(
        default=100,
        gt=0,
        description="Freshness policy of market_prices: fail when no partition was written for "
        "this long (a weekend plus a holiday).",
    )
    transactions_seed: int = Field(
        default=7, description="Seed of the synthetic card-transaction generator."
    )
    check_max_rejected_bars_per_day: int = Field(
        default=0,
        ge=0,
        description="rejected_market_prices check: largest number of rejected bars in one "
        "trading day (the bundled history has none); a landing file rejected whole always fails.",
    )
    check_max_transaction_reject_share: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="rejected_card_transactions check: largest share of a landed file's rows "
        "that may be quarantined (the synthetic feed breaks 1 %); a file rejected whole always "
        "fails.",
    )

    # -- Market forecasting -----------------------------------------------------------------------
    forecast_horizon: int = Field(
        default=5, ge=1, le=60, description="Backtest horizon of the forecasters (business days)."
    )
    forecast_backtest_windows: int = Field(
        default=50, ge=1, description="Forecast origins of the rolling backtest (one a week)."
    )
    forecast_backtest_refit: bool = Field(
        default=True,
        description="Retrain the forecaster at every backtest origin (honest; false trains once "
        "before the first origin, ~8x faster).",
    )
    volume_forecaster_name: str = Field(
        default="finmath-volume-forecaster", description="Registered log-volume forecaster."
    )
    return_forecaster_name: str = Field(
        default="finmath-return-forecaster", description="Registered log-return forecaster."
    )

    # -- LLM question answering and sandbox -------------------------------------------------------
    llm_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint (vLLM, Ollama's /v1, a llama.cpp server, "
        "OpenAI); unset: /ask answers 503 and llm_qa_eval is not materialised.",
    )
    llm_api_key: SecretStr = Field(
        default=SecretStr("not-needed"),
        description="API key for the endpoint (local servers ignore it).",
    )
    llm_model: str = Field(default="qwen2.5-coder-1.5b-instruct", description="Model name sent.")
    llm_prompt: Literal["paper", "improved"] = Field(
        default="improved",
        description="'paper': FinanceMath's PoT prompt verbatim; 'improved': ours (retrieved "
        "solved examples, the answer started as `def solution():`).",
    )
    llm_few_shot: int = Field(
        default=1,
        ge=0,
        le=8,
        description="Retrieved solved examples in the improved prompt (docs/llm.md: how many).",
    )
    llm_prefill_mode: Literal["chat", "vllm", "chatml"] = Field(
        default="chat",
        description="How the improved prompt's `def solution():` prefill is sent: 'chat' (a "
        "final assistant message: llama.cpp's llama-server continues it), 'vllm' (plus "
        "continue_final_message), 'chatml' (ChatML text to /v1/completions: llama-cpp-python's "
        "server, Qwen models).",
    )
    llm_samples: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Programs asked for per question at most (self-consistency: the first "
        "greedy, the rest sampled; the answer is the majority of their numbers); 1: one greedy "
        "program.",
    )
    llm_vote_agree: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Stop sampling once this many programs returned the same answer.",
    )
    llm_temperature: float = Field(
        default=0.6, ge=0, le=2, description="Temperature of the samples after the greedy one."
    )
    llm_repair: bool = Field(
        default=False,
        description="Send a program that fails to run (or returns no number) back to the model "
        "once, with the error.",
    )
    llm_functions: int = Field(
        default=0,
        ge=0,
        le=8,
        description="Finance library functions offered per question in the improved prompt "
        "(the most similar to the question; their signatures are shown, their source runs in "
        "front of the program); 0: none.",
    )
    llm_function_min_similarity: float = Field(
        default=0.45,
        ge=-1,
        le=1,
        description="Offer a library function only when its description's cosine to the "
        "question is at least this.",
    )
    llm_max_tokens: int = Field(default=512, ge=16, le=8192, description="Completion limit.")
    llm_timeout_seconds: float = Field(default=120, gt=0, description="Per LLM call.")
    llm_max_retries: int = Field(default=2, ge=0, le=10, description="Retries per LLM call.")
    sandbox_isolation: Literal["auto", "bubblewrap", "seccomp"] = Field(
        default="auto",
        description="How model-written and gold programs are isolated: 'bubblewrap' (required: "
        "fail without it), 'seccomp' (the fallback: no namespaces, filesystem readable), "
        "'auto' (bubblewrap when it works here, else seccomp).",
    )

    # -- Execution and deployment -----------------------------------------------------------------
    executor: ExecutorName = Field(
        default="in_process",
        description="Dagster executor: 'in_process' (one process per run: one DuckDB writer, the "
        "model loads once), 'multiprocess', or 'k8s'/'celery' (optional extras; "
        "docs/deployment.md, 'Scale-out').",
    )

    @field_validator("home", "hf_cache_dir", "local_data_dir", "model_cache_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @property
    def hf_token_value(self) -> str | None:
        return self.hf_token.get_secret_value() if self.hf_token else None

    @cached_property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @cached_property
    def processed_dir(self) -> Path:
        return self.home / "processed"

    @property
    def mlflow_tracking_uri_value(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_artifact_location_value(self) -> str | None:
        """A local store keeps artefacts under FINMATH_HOME; a tracking server picks its own
        (``mlflow-artifacts:/``, proxied), so every client reaches them through the server."""
        if self.mlflow_artifact_location:
            return self.mlflow_artifact_location
        if self.mlflow_tracking_uri_value.startswith(("http://", "https://")):
            return None
        return (self.home / "mlartifacts").as_uri()

    @property
    def drift_summary_path(self) -> Path:
        """The latest drift share, written by drift_report, published by the service."""
        return self.processed_dir / DRIFT_SUMMARY_FILE

    @property
    def inference_log_dir(self) -> Path:
        """Where the service appends predictions and the inference_log asset reads them."""
        return self.home / "inference_log"

    @property
    def model_cache_dir_value(self) -> Path:
        return self.model_cache_dir or self.home / "models"

    def embedder(self, *, threads: int | None = None, parallel: int = 1) -> Embedder:
        """The one way the assets, the service and the benchmarks build an embedder, so they
        always embed with the same model and backend (``parallel``: concurrent callers)."""
        return Embedder(
            self.embedding_model,
            batch_size=self.embedding_batch_size,
            backend=self.embedding_backend,
            models_dir=self.model_cache_dir_value,
            threads=self.embedding_threads if threads is None else threads,
            parallel=parallel,
        )

    @cached_property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def landing_dir(self) -> Path:
        """Drop folders of the market feeds: ``prices/`` and ``transactions/``."""
        return self.home / "landing"

    @property
    def forecaster_names(self) -> dict[str, str]:
        """Registered model name per forecast target."""
        return {
            "log_volume": self.volume_forecaster_name,
            "log_return": self.return_forecaster_name,
        }

    @property
    def llm_api_key_value(self) -> str:
        return self.llm_api_key.get_secret_value()

    def llm_sampling(self) -> Sampling:
        """Self-consistency and repair, as ``/ask`` and ``llm_qa_eval`` answer."""
        from finmath_assets.core.llm.answering import Sampling

        return Sampling(
            samples=self.llm_samples,
            agree=self.llm_vote_agree,
            temperature=self.llm_temperature,
            repair=self.llm_repair,
        )

    def llm_client_config(self) -> LLMClientConfig:
        """The LLM client's configuration (the service's ``/ask``); raises ValueError when no
        endpoint is configured."""
        from finmath_assets.core.llm.client import LLMClientConfig

        if not self.llm_base_url:
            raise ValueError("FINMATH_LLM_BASE_URL is not set: no LLM endpoint configured")
        return LLMClientConfig(
            base_url=self.llm_base_url,
            model=self.llm_model,
            api_key=self.llm_api_key_value,
            max_tokens=self.llm_max_tokens,
            timeout_seconds=self.llm_timeout_seconds,
            max_retries=self.llm_max_retries,
            prefill_mode=self.llm_prefill_mode,
        )
