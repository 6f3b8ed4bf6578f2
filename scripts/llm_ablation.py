"""The LLM ablation table over both halves of the labelled questions:
``python scripts/llm_ablation.py`` (with ``FINMATH_HOME`` set as for ``make eval-llm``).

``llm_qa_eval`` keeps only its last materialisation in the warehouse, but each materialisation
logs every output, every attempt included, to its MLflow run (``llm_qa_outputs.json``). This
script takes the latest run of each half (``make eval-llm LLM_EVAL_QUESTIONS=tune`` and
``=holdout``), or the runs named with ``--run``, and replays every configuration both runs can
replay (``core/llm/ablation.py``) on ``tune``, ``holdout`` and all of them; it also prints each
run's own, official figures, for the check that the replay of its configuration matches them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from finmath_assets.core.llm.ablation import ablation, ablation_table, configs_up_to
from finmath_assets.settings import Settings


def _latest_runs(client: Any, experiment_id: str, run_ids: list[str]) -> list[Any]:
    if run_ids:
        return [client.get_run(run_id) for run_id in run_ids]
    runs = client.search_runs(
        [experiment_id],
        filter_string="tags.`dagster.asset` = 'llm/llm_qa_eval'",
        order_by=["attributes.start_time DESC"],
    )
    latest: dict[str, Any] = {}
    for run in runs:
        latest.setdefault(run.data.params.get("question_set", "all"), run)
    if not latest:
        raise SystemExit("no llm_qa_eval run in MLflow: run `make eval-llm` first")
    halves = [latest[name] for name in ("tune", "holdout") if name in latest]
    return halves or [latest["all"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], help="an MLflow run id (repeat)")
    args = parser.parse_args()
    import mlflow

    settings = Settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri_value)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        raise SystemExit(f"no MLflow experiment {settings.mlflow_experiment!r}")
    questions: dict[str, dict[str, Any]] = {}
    samples, repair, agree = 16, True, 2
    # what shapes the prompt: the variant, the solved examples (k) and the functions offered
    prompts: set[tuple[str, int, int]] = set()
    for run in _latest_runs(client, experiment.experiment_id, args.run):
        params = run.data.params
        prompts.add(
            (
                params.get("prompt", "improved"),
                int(params.get("few_shot", 0)),
                int(params.get("functions", 0)),
            )
        )
        samples = min(samples, int(params.get("samples", 1)))
        repair = repair and params.get("repair") == "True"
        agree = int(params.get("vote_agree", agree))
        with tempfile.TemporaryDirectory() as folder:
            path = client.download_artifacts(run.info.run_id, "llm_qa_outputs.json", folder)
            rows = json.loads(Path(path).read_text(encoding="utf-8"))
        print(
            f"run {run.info.run_id} ({params.get('question_set')}, "
            f"{params.get('prompt')} prompt, k {params.get('few_shot')}, "
            f"functions {params.get('functions', 0)}, "
            f"samples {params.get('samples')}, repair {params.get('repair')}): "
            f"{len(rows)} questions, official accuracy "
            f"{run.data.metrics.get('pot_accuracy')} %, median "
            f"{run.data.metrics.get('median_seconds_per_question', float('nan')):.1f} s"
        )
        for row in rows:
            questions[row["question_id"]] = {
                "split": row["split_half"],
                "attempts": json.loads(row["attempts"]),
                "retrieval_seconds": row.get("retrieval_seconds") or 0.0,
            }
    if len(prompts) > 1:  # a prompt change is not replayable: the halves must share it
        shapes = ", ".join(f"{p} k={k} functions={f}" for p, k, f in sorted(prompts))
        raise SystemExit(
            f"the runs were asked with different prompts ({shapes}): "
            "name runs of one configuration with --run"
        )
    (_, _, functions) = prompts.pop()
    configs = configs_up_to(samples, agree, repair, functions)
    print()
    print(ablation_table(ablation(list(questions.values()), configs)))


if __name__ == "__main__":
    main()
