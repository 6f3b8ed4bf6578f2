"""Names shared by the Dagster definitions."""

KEY_PREFIX = "finmath"  # asset key prefix and DuckDB schema
DUCKDB_POOL = "duckdb"  # concurrency pool of every asset that writes the warehouse (limit 1)
WAREHOUSE_IO_MANAGER = "warehouse_io_manager"

# The data spine, raw records to features, in graph order (also the warehouse tables it writes).
DATA_SPINE_ASSETS = (
    "raw_records",
    "validated_records",
    "rejected_records",
    "question_tables",
    "question_embeddings",
    "features",
)
MODEL_ASSETS = ("answer_model", "cv_predictions", "evaluation_report", "batch_predictions")
MONITORING_ASSETS = ("inference_log", "drift_report", "regression_quality_report")
LLM_ASSETS = ("solved_examples",)

MARKET_PREFIX = "market"  # asset key prefix and DuckDB schema of the market-data half
MARKET_HISTORY_START = "2000-03-01"  # first trading day of the bundled history (and partition)
LLM_PREFIX = "llm"  # asset key prefix and DuckDB schema of the LLM evaluation
