"""Re-score the FinanceMath paper's own published PoT outputs with our port of its scoring.

    .venv/bin/python scripts/rescore_paper_outputs.py [FOLDER]

FOLDER holds the repository's ``validation_pot_processed_<model>.json`` files and
``validation_pot_results.json`` (yale-nlp/FinanceMath, ``outputs/``; default: the copy in
``../shared/data/financemath/paper_outputs``). For each model: how many of the 200 per-question
verdicts (correct, executed) the port reproduces, and our accuracy / execution rate beside the
published ones. The test suite proves the port on an excerpt shipped as a fixture; this script
is the full-file check.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from finmath_assets.core.llm.scoring import Accuracy, gold_answer, score_output

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "data" / "financemath" / "paper_outputs"


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    files = sorted(folder.glob("validation_pot_processed_*.json"))
    if not files:
        print(f"no validation_pot_processed_*.json in {folder}", file=sys.stderr)
        return 1
    validation = json.loads((ROOT / "finmath_assets/data/financemath/validation.json").read_text())
    with ThreadPoolExecutor(2) as pool:
        golds = dict(
            zip(
                [r["question_id"] for r in validation],
                pool.map(lambda r: gold_answer(r["python_solution"]), validation),
                strict=True,
            )
        )
    published = {
        row["model_name"]: row
        for row in json.loads((folder / "validation_pot_results.json").read_text())
    }
    for path in files:
        model = path.stem.removeprefix("validation_pot_processed_")
        items = json.loads(path.read_text(encoding="utf-8"))
        with ThreadPoolExecutor(2) as pool:
            scored = list(
                pool.map(lambda x: score_output(x["output"][0], golds[x["question_id"]]), items)
            )
        same = sum(
            (int(s.correct), int(s.executed)) == (x["result"]["acc"], x["result"]["execution_rate"])
            for x, s in zip(items, scored, strict=True)
        )
        ours = Accuracy.of(scored, [x["topic"] for x in items])
        paper = published.get(model, {})
        print(
            f"{model}: verdicts reproduced {same}/{len(items)}; accuracy {ours.accuracy} "
            f"(published {paper.get('accuracy')}), execution {ours.execution_rate} "
            f"(published {paper.get('execution_rate')}), lenient accuracy {ours.lenient_accuracy}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
