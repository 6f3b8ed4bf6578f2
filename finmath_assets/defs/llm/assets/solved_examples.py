"""validated_records + question_embeddings -> solved_examples: the few-shot bank of the LLM
question answering (part of the FinanceMath graph; the evaluation is ``llm_eval``)."""

import dagster as dg
import pandas as pd

from finmath_assets.core.llm.retrieval import SOLVED_EXAMPLES_FILE, ExampleBank
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources import ProcessedFilesResource

GROUP = "llm"


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name=GROUP,
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "parquet"},
    ins={
        "validated_records": dg.AssetIn(key=[KEY_PREFIX, "validated_records"]),
        "question_embeddings": dg.AssetIn(key=[KEY_PREFIX, "question_embeddings"]),
    },
    description="The labelled records with an expert python_solution and their MiniLM vectors: "
    "the few-shot bank of the improved prompt. Also written to processed/solved_examples.parquet, "
    "which the service reads (it never opens the warehouse).",
)
def solved_examples(
    context: dg.AssetExecutionContext,
    validated_records: pd.DataFrame,
    question_embeddings: pd.DataFrame,
    processed_files: ProcessedFilesResource,
) -> pd.DataFrame:
    labelled = validated_records[
        validated_records["ground_truth"].notna()
        & validated_records["python_solution"].fillna("").str.strip().ne("")
    ]
    merged = labelled.merge(
        question_embeddings[["question_id", "model_id", "embedding"]], on="question_id"
    ).sort_values("question_id")
    if merged.empty:
        raise dg.Failure("no labelled record with a python_solution and an embedding")
    bank = ExampleBank.from_frame(merged[list(ExampleBank.COLUMNS)])
    frame = bank.to_frame()
    path = processed_files.write_parquet(frame, SOLVED_EXAMPLES_FILE)
    context.add_output_metadata({"examples": len(frame), "path": dg.MetadataValue.path(str(path))})
    return frame
