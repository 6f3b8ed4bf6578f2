"""llm_qa_eval: an LLM endpoint evaluated on the labelled validation split (its own job,
``llm_eval_job``; it needs FINMATH_LLM_BASE_URL and fails with that message without it).

Each question is answered with program-of-thought (the model writes ``def solution():``, the
sandbox runs it), with similar solved examples retrieved for the improved prompt (never the
question itself), and scored exactly as the FinanceMath paper scores, against the executed gold
program; a lenient-extraction accuracy is reported separately, never mixed in.
"""

import dataclasses
import functools
import json
import math
import re
import time
from typing import Any

import dagster as dg
import pandas as pd

from finmath_assets.core.llm.ablation import (
    SPLITS,
    ablation,
    ablation_table,
    configs_up_to,
    question_number,
    split_of,
)
from finmath_assets.core.llm.answering import LLMAnswer, answer
from finmath_assets.core.llm.retrieval import ExampleBank
from finmath_assets.core.llm.scoring import (
    PAPER_LIMITS,
    Accuracy,
    ScoredOutput,
    gold_answer,
    score_output,
)
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX, LLM_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources import (
    EmbeddingModelResource,
    LLMResource,
    MlflowTrackingResource,
    SandboxResource,
)

GROUP = "llm_eval"
# The paper's published PoT accuracy on the validation split, for reference beside ours.
PAPER_POT_ACCURACY = {"gpt-4o": 67.0, "claude-3.5-sonnet": 59.5, "Llama-3.1-8B-Instruct": 21.0}


class LLMEvalConfig(dg.Config):
    limit: int | None = None  # the first N validation questions of `questions` (None: all)
    prompt: str | None = None  # override FINMATH_LLM_PROMPT ("paper" or "improved")
    # "all" 200, or one half of the fixed split (core.llm.ablation): "tune" or "holdout"
    questions: str = "all"


def _attempt_rows(reply: LLMAnswer, scores: list[ScoredOutput]) -> list[dict[str, Any]]:
    """Every attempt with its own score, the paper's way (what the ablation replays)."""
    rows = []
    for attempt, scored in zip(reply.attempts, scores, strict=True):
        rows.append(
            {
                "sample": attempt.sample,
                "repair": attempt.repair,
                "temperature": attempt.temperature,
                "seed": attempt.seed,
                "status": attempt.status,
                "value": attempt.value,
                "correct": scored.correct,
                "executed": scored.executed,
                "llm_seconds": attempt.llm_seconds,
                "sandbox_seconds": attempt.sandbox_seconds,
                "prompt_tokens": attempt.prompt_tokens,
                "completion_tokens": attempt.completion_tokens,
                "raw_output": attempt.raw_output,
                "error": (attempt.error or "")[-600:] or None,
            }
        )
    return rows


def _metric_name(topic: str) -> str:
    """An MLflow-safe metric suffix ("Market Analysis & Economics": market_analysis_economics)."""
    return re.sub(r"[^a-z0-9]+", "_", topic.lower()).strip("_")


def _accuracy_table(accuracy: Accuracy) -> str:
    lines = [
        "| topic | n | accuracy % | execution % | lenient accuracy % |",
        "|---|---|---|---|---|",
    ]
    rows = [("all", accuracy), *sorted(accuracy.by_topic.items())]
    for topic, a in rows:
        lines.append(
            f"| {topic} | {a.n} | {a.accuracy:.1f} | {a.execution_rate:.1f} | "
            f"{a.lenient_accuracy:.1f} |"
        )
    lines.append("")
    lines.append(
        "Paper (validation, PoT): " + ", ".join(f"{k} {v}" for k, v in PAPER_POT_ACCURACY.items())
    )
    return "\n".join(lines)


@dg.asset(
    key_prefix=LLM_PREFIX,
    group_name=GROUP,
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "mlflow", "openai"},
    ins={
        "validated_records": dg.AssetIn(key=[KEY_PREFIX, "validated_records"]),
        "solved_examples": dg.AssetIn(key=[KEY_PREFIX, "solved_examples"]),
    },
    description="Program-of-thought answers of the configured LLM endpoint on the labelled "
    "validation split, scored as the FinanceMath paper scores them (raw outputs kept); accuracy "
    "and execution rate overall and per topic in the metadata and in MLflow. Needs "
    "FINMATH_LLM_BASE_URL.",
)
def llm_qa_eval(
    context: dg.AssetExecutionContext,
    config: LLMEvalConfig,
    validated_records: pd.DataFrame,
    solved_examples: pd.DataFrame,
    llm: LLMResource,
    embedding_model: EmbeddingModelResource,
    mlflow_tracking: MlflowTrackingResource,
    sandbox: SandboxResource,
) -> pd.DataFrame:
    import mlflow

    variant = config.prompt or llm.prompt
    if variant not in ("paper", "improved"):
        raise dg.Failure(f"prompt must be 'paper' or 'improved', got {variant!r}")
    client = llm.client()  # a clear Failure when no endpoint is configured
    limits = sandbox.limits(PAPER_LIMITS)
    labelled = validated_records[
        (validated_records["split"] == "validation") & validated_records["ground_truth"].notna()
    ].copy()
    labelled["index"] = labelled["question_id"].map(question_number)
    if config.questions not in ("all", *SPLITS):
        raise dg.Failure(f"questions must be 'all', 'tune' or 'holdout', got {config.questions!r}")
    halves = split_of(labelled["question_id"])
    labelled["split_half"] = labelled["question_id"].map(halves)
    if config.questions != "all":
        labelled = labelled[labelled["split_half"] == config.questions]
    labelled = labelled.sort_values("index").head(config.limit or len(labelled))
    sampling = llm.sampling()
    bank = ExampleBank.from_frame(solved_examples)
    k = llm.few_shot if variant == "improved" else 0
    offers_functions = variant == "improved" and llm.functions > 0
    embedder = embedding_model.get_embedder() if k or offers_functions else None
    functions = llm.function_retrieval(embedder) if offers_functions and embedder else None
    offered_per_question = functions.count if functions else 0
    rows, scored, started = [], [], time.perf_counter()
    with client:
        for number, record in enumerate(labelled.itertuples(index=False), start=1):
            gold = gold_answer(record.python_solution, limits=sandbox.limits())
            reply = answer(
                record.question,
                list(record.tables if record.tables is not None else ()),
                client=client,
                prompt_variant=variant,
                bank=bank,
                embedder=embedder,
                k=k,
                limits=limits,
                exclude_id=record.question_id,  # an item never retrieves itself
                sampling=sampling,
                functions=functions,
            )
            # every attempt scored on its own output (after the offered functions' source, as
            # it ran); the chosen one's score is the answer's
            score = functools.partial(
                score_output, gold=gold, limits=limits, preamble=reply.preamble
            )
            scores = [score(a.raw_output or "") for a in reply.attempts]
            result = (
                scores[reply.chosen] if reply.chosen is not None else score(reply.raw_output or "")
            )
            scored.append(result)
            rows.append(
                {
                    "question_id": record.question_id,
                    "split_half": record.split_half,
                    "topic": record.topic,
                    "prompt_variant": variant,
                    "model": reply.model,
                    "status": reply.status,
                    "gold": gold,
                    # the paper keeps NaN/inf returns; the table stores them as NULL
                    "value": result.value
                    if result.value is not None and math.isfinite(result.value)
                    else None,
                    "correct": result.correct,
                    "correct_lenient": result.correct_lenient,
                    "executed": result.executed,
                    "reason": result.reason,
                    "program": result.program,
                    "raw_output": reply.raw_output,
                    "llm_error": reply.error if reply.status == "llm_error" else None,
                    "retrieved_ids": json.dumps([r.question_id for r in reply.retrieved]),
                    "functions": json.dumps([f.name for f in reply.functions]),
                    "llm_seconds": reply.llm_seconds,
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                    "total_seconds": reply.total_seconds,
                    "retrieval_seconds": reply.retrieval_seconds,
                    "samples": reply.samples,
                    "repairs": reply.repairs,
                    "llm_calls": len(reply.attempts),
                    "vote": reply.vote.describe() if reply.vote else None,
                    "attempts": json.dumps(_attempt_rows(reply, scores)),
                }
            )
            if number % 10 == 0 or number == len(labelled):
                correct = sum(s.correct for s in scored)
                context.log.info(
                    f"{number}/{len(labelled)} answered, {correct} correct, "
                    f"{sum(r['llm_calls'] for r in rows)} LLM calls, "
                    f"{time.perf_counter() - started:.0f} s"
                )
    frame = pd.DataFrame(rows)
    accuracy = Accuracy.of(scored, topics=list(frame["topic"]))
    llm_errors = int((frame["status"] == "llm_error").sum()) if len(frame) else 0
    ablation_rows = ablation(
        [
            {
                "split": row["split_half"],
                "attempts": json.loads(row["attempts"]),
                "retrieval_seconds": row["retrieval_seconds"],
            }
            for row in rows
        ],
        configs_up_to(sampling.samples, sampling.agree, sampling.repair, offered_per_question),
    )
    seconds = frame["total_seconds"] if len(frame) else pd.Series([0.0])
    with mlflow_tracking.start_run(
        run_name=f"llm-qa-eval-{context.run_id[:8]}",
        tags={"dagster.run_id": context.run_id, "dagster.asset": f"{LLM_PREFIX}/llm_qa_eval"},
    ):
        mlflow.log_params(
            {
                "llm_model": llm.model,
                "llm_base_url": llm.base_url,
                "prompt": variant,
                "few_shot": k,
                "questions": len(frame),
                "question_set": config.questions,
                "max_tokens": llm.max_tokens,
                "samples": sampling.samples,
                "vote_agree": sampling.agree,
                "temperature": sampling.temperature,
                "repair": sampling.repair,
                "functions": offered_per_question,
                "function_min_similarity": llm.function_min_similarity,
            }
        )
        mlflow.log_metrics(
            {
                "pot_accuracy": accuracy.accuracy,
                "pot_execution_rate": accuracy.execution_rate,
                "lenient_accuracy": accuracy.lenient_accuracy,
                "llm_errors": llm_errors,
                "median_seconds_per_question": float(seconds.median()),
                "mean_llm_calls": float(frame["llm_calls"].mean()) if len(frame) else 0.0,
                "repairs": int(frame["repairs"].sum()) if len(frame) else 0,
            }
            | {f"pot_accuracy_{_metric_name(t)}": a.accuracy for t, a in accuracy.by_topic.items()}
            | {
                f"ablation_{_metric_name(r.config.label)}_{r.split}_accuracy": r.accuracy
                for r in ablation_rows
            }
        )
        mlflow.log_text(ablation_table(ablation_rows), "ablation.md")
        mlflow.log_dict(frame.to_dict(orient="records"), "llm_qa_outputs.json")
    context.add_output_metadata(
        {
            "accuracy": accuracy.accuracy,
            "execution_rate": accuracy.execution_rate,
            "lenient_accuracy": accuracy.lenient_accuracy,
            "questions": len(frame),
            "llm_errors": llm_errors,
            "model": llm.model,
            "prompt": variant,
            "question_set": config.questions,
            "sampling": dg.MetadataValue.json(dataclasses.asdict(sampling)),
            "functions": dg.MetadataValue.json(
                {
                    "offered_per_question": offered_per_question,
                    "min_similarity": llm.function_min_similarity,
                    "questions_offered_any": int((frame["functions"] != "[]").sum())
                    if len(frame)
                    else 0,
                }
            ),
            "median_seconds_per_question": float(seconds.median()),
            "by_topic": dg.MetadataValue.md(_accuracy_table(accuracy)),
            "ablation": dg.MetadataValue.md(ablation_table(ablation_rows)),
        }
    )
    return frame
