"""The FinanceMath paper's PoT scoring, ported: checked against the paper's own per-question
verdicts (an excerpt of its published outputs, ``fixtures/financemath_pot``), rule by rule, and
on the 200 validation gold programs (bubblewrap is installed when missing, as in
``test_sandbox``)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from finmath_assets.core import sandbox
from finmath_assets.core.llm.scoring import (
    Accuracy,
    ScoredOutput,
    compare_two_numbers,
    extract_program,
    extract_program_lenient,
    gold_answer,
    score_output,
)
from finmath_assets_tests.conftest import system_binary

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "financemath_pot"
MODELS = ("gpt-4o", "Meta-Llama-3_1-8B-Instruct")


@pytest.fixture(scope="module", autouse=True)
def bubblewrap() -> None:
    system_binary("bwrap", "bubblewrap")
    assert sandbox.isolation() == "bubblewrap"


def _excerpt(model: str) -> list[dict]:
    return json.loads((FIXTURES / f"{model}.json").read_text(encoding="utf-8"))["items"]


@pytest.fixture(scope="module")
def gold_by_id(real_validation) -> dict[str, float]:
    """Executed gold answers for every validation record (all 200: one test checks them all)."""
    with ThreadPoolExecutor(2) as pool:
        values = list(pool.map(lambda r: gold_answer(r["python_solution"]), real_validation))
    return {r["question_id"]: v for r, v in zip(real_validation, values, strict=True)}


@pytest.fixture(scope="module")
def scored_excerpts(gold_by_id) -> dict[str, list[tuple[dict, ScoredOutput]]]:
    jobs = [(model, item) for model in MODELS for item in _excerpt(model)]

    def score(job: tuple[str, dict]) -> ScoredOutput:
        item = job[1]
        return score_output(item["output"], gold_by_id[item["question_id"]])

    with ThreadPoolExecutor(2) as pool:
        scored = list(pool.map(score, jobs))
    result: dict[str, list[tuple[dict, ScoredOutput]]] = {model: [] for model in MODELS}
    for (model, item), scored_output in zip(jobs, scored, strict=True):
        result[model].append((item, scored_output))
    return result


# --- the paper's own verdicts -----------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_port_reproduces_every_published_verdict_in_the_excerpt(model, scored_excerpts) -> None:
    mismatches = []
    for item, score in scored_excerpts[model]:
        paper = item["paper_result"]
        published = paper["prediction_executed_result"]
        ours = (int(score.correct), int(score.executed))
        if ours != (paper["acc"], paper["execution_rate"]):
            mismatches.append(f"{item['question_id']}: ours {ours}, paper {paper} ({score.reason})")
        # The executed value too, as the paper stored it (rounded to 3 decimals, or str()).
        if published is None:
            value_matches = not score.executed
        elif isinstance(published, float):
            value_matches = score.value is not None and round(score.value, 3) == published
        elif published == "inf":
            value_matches = score.value == math.inf
        else:  # 'None', a tuple's str(): returned something float() rejects
            value_matches = score.status == "no_number" and score.value is None
        if not value_matches:
            mismatches.append(f"{item['question_id']}: value {score.value!r} vs {published!r}")
    assert not mismatches, mismatches
    assert len(scored_excerpts[model]) >= 20


def test_the_excerpt_exercises_every_rule(scored_excerpts, gold_by_id) -> None:
    """Guard against the fixture silently losing its interesting cases."""
    pairs = [pair for model in MODELS for pair in scored_excerpts[model]]
    # a runaway loop ends as "timeout" (wall clock) or "error" (CPU seconds), whichever limit
    # binds first on the machine: both are "not executed" for the paper
    assert {"ok", "no_number", "error"} <= {score.status for _, score in pairs}
    signs = [
        (score.correct, score.value * gold_by_id[item["question_id"]] < 0)
        for item, score in pairs
        if score.value is not None and math.isfinite(score.value)
    ]
    assert (True, True) in signs and (False, True) in signs  # sign flips forgiven and not
    notes = " ".join(item["note"] for item, _ in pairs)
    for rule in ("power-of-ten", "x100", "rounded up to 3 decimals", "within 0.15 %", "lenient"):
        assert rule in notes, rule


@pytest.mark.parametrize("model", MODELS)
def test_aggregate_matches_the_published_verdicts(model, scored_excerpts) -> None:
    pairs = scored_excerpts[model]
    accuracy = Accuracy.of([s for _, s in pairs], [i["topic"] for i, _ in pairs])
    n = len(pairs)
    assert accuracy.n == n
    assert accuracy.accuracy == round(sum(i["paper_result"]["acc"] for i, _ in pairs) / n * 100, 2)
    assert accuracy.execution_rate == round(
        sum(i["paper_result"]["execution_rate"] for i, _ in pairs) / n * 100, 2
    )
    assert sum(a.n for a in accuracy.by_topic.values()) == n
    for topic, figures in accuracy.by_topic.items():
        in_topic = [i for i, _ in pairs if i["topic"] == topic]
        assert figures.accuracy == round(
            sum(i["paper_result"]["acc"] for i in in_topic) / len(in_topic) * 100, 2
        )
    assert accuracy.lenient_accuracy >= accuracy.accuracy


def test_lenient_rescues_are_reported_separately(scored_excerpts) -> None:
    llama = {item["question_id"]: score for item, score in scored_excerpts[MODELS[1]]}
    # '<|python_tag|>def solution(): ...': the paper executes the token (SyntaxError).
    for question_id in ("validation-74", "validation-127"):
        score = llama[question_id]
        assert (score.correct, score.executed) == (False, False)
        assert score.correct_lenient and score.executed_lenient
        assert score.lenient_program and score.lenient_program.startswith("def solution():")
    assert llama["validation-180"].executed_lenient and not llama["validation-180"].correct_lenient
    # A syntax error inside the function, or no parsable solution() anywhere: no rescue.
    assert llama["validation-119"].lenient_program is None
    assert llama["validation-162"].lenient_program is None
    # Two rescues in the excerpt: the lenient count is the paper's plus two; the paper's figure
    # is untouched.
    pairs = scored_excerpts[MODELS[1]]
    paper = sum(item["paper_result"]["acc"] for item, _ in pairs)
    assert sum(score.correct for _, score in pairs) == paper
    assert sum(score.correct_lenient for _, score in pairs) == paper + 2
    accuracy = Accuracy.of([score for _, score in pairs])
    assert accuracy.accuracy == round(paper / len(pairs) * 100, 2)
    assert accuracy.lenient_accuracy == round((paper + 2) / len(pairs) * 100, 2)


def test_fixture_files_match_the_readme_checksums() -> None:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+\.json)` \|.*\| `([0-9a-f]{64})` \|$", readme, re.MULTILINE)
    listed = dict(rows)
    assert set(listed) == {f"{m}.json" for m in MODELS}
    for name, digest in listed.items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, name


# --- compare_two_numbers, rule by rule --------------------------------------------------------


@pytest.mark.parametrize(("prediction", "gold"), [
    (12.5, 12.5),  # equal
    (0.0175, 175.0),  # power-of-ten ratio (10^4)
    (2250.0, 0.225),  # ... either way round
    (-422.0, 0.0422),  # ... the sign ignored
    (-84.0, 84.0),  # ratio 1, opposite sign
    (1014.5798284202908, 101.45798284202908),  # off by exactly ten: still credited
    (6.251724137931039, 0.06251724137931035),  # x100, not exactly, within 0.15 %
    (4.24, 423.99999999999994),  # x100 the other way
    (0.6, 599.5),  # x1000 within 0.15 %
    (3.0, 300200.0),  # x100000 within 0.15 %
    (404.0200641160153, 404.02006683366716),  # equal after rounding up to 3 decimals
    (-5.9684, 5.96844105),  # ... where the sign is ignored too
    (219846.47429516146, 219846.0),  # within 0.15 %
    (100.15, 100.0),  # the 0.15 % boundary, inclusive
    (-100.1, -100.0),  # within 0.15 %, both negative
    (0.0, 0.0),  # zero gold: only zero...
    (math.nan, 12.0),  # NaN prediction: credited (max/min with NaN, see the module)
    (math.nan, 0.0),
    (True, 1.0),  # float(True) == 1.0, as the paper's float() conversion
    ("12.5", 12.5),  # a numeric string converts too
])  # fmt: skip
def test_counted_correct(prediction, gold) -> None:
    assert compare_two_numbers(prediction, gold)


@pytest.mark.parametrize(("prediction", "gold"), [
    (8184.0, -8184.000000000007),  # sign flip, magnitudes not exactly equal: not forgiven
    (-10.0, 10.000000000000002),  # ... the same 1e-16 gap
    (100.2, 100.0),  # just outside 0.15 %
    (0.058, 5.6),  # x100 slip, but 5.8 vs 5.6
    (0.5, 60.0),  # x100 is 50: wrong; no rule for x120
    (0.995, 0.948),  # wrong
    (-100.1, 100.0),  # within 0.15 % in magnitude, but neither ratio nor ceiling rule applies
    (1e-9, 0.0),  # zero gold: anything but zero (or NaN) is wrong
    (5.0, 0.0),
    (0.0, 5.0),
    (math.inf, 12.0),  # the paper's int(log10(inf)) raises: scored 0
    (-math.inf, 0.0),  # ceil(inf) raises: scored 0
    (12.0, math.nan),  # NaN gold: int(nan) raises
    (None, 12.0),  # float(None) raises
    ("twelve", 12.0),
    ([12.0], 12.0),
    (1e308, 1e-10),  # the ratio overflows
])  # fmt: skip
def test_counted_wrong(prediction, gold) -> None:
    assert not compare_two_numbers(prediction, gold)


def test_power_of_ten_ratio_is_exact_up_to_log10_rounding() -> None:
    gold = 10.059176124479222
    assert compare_two_numbers(0.001005917612447922, gold)  # 10^4 to rounding: credited
    assert not compare_two_numbers(0.0010059, gold)  # 1e-5 relative off: not
    assert compare_two_numbers(0.0010059, 10.059)  # 10.059 / 0.0010059 == 10000.0 in binary


# --- extraction -------------------------------------------------------------------------------


def test_extract_takes_the_first_python_block() -> None:
    output = (
        "Plan:\n```\nnotes\n```\n```python\ndef solution():\n    return 1\n```\n"
        "```python\ndef solution():\n    return 2\n```"
    )
    assert extract_program(output) == "def solution():\n    return 1"


def test_extract_falls_back_to_any_block_keeping_its_language_tag() -> None:
    assert extract_program("```\ndef solution():\n    return 3\n```") == (
        "def solution():\n    return 3"
    )
    assert extract_program("```Python\ndef solution():\n    return 3\n```").startswith("Python\n")


def test_extract_without_blocks() -> None:
    # No fence, no def: the text becomes the body of solution().
    assert extract_program("return 7") == "def solution():\n    return 7"
    assert extract_program("    x = 7\n    return x") == "def solution():\n    x = 7\n    return x"
    # One (unclosed) fence, no def: the text before it, wrapped.
    assert extract_program("    return 7\n```") == "def solution():\n    return 7"
    # With def solution() and no closed block: the whole text, backticks stripped from the ends.
    truncated = "```python\ndef solution():\n    return 1"
    assert extract_program(truncated) == "python\ndef solution():\n    return 1"
    assert extract_program("<|python_tag|>def solution():\n    return 1").startswith("<|python")


def test_extract_gives_nothing_for_empty_or_argparse_outputs() -> None:
    assert extract_program("") == ""
    assert extract_program("```python\nimport argparse\ndef solution():\n    return 1\n```") == ""


def test_lenient_extraction_cases() -> None:
    program = "def solution():\n    return 1\n"
    # A block with a tag the paper does not recognise, and a cut-off block.
    assert extract_program_lenient("```py\ndef solution():\n    return 1\n```") == program
    assert extract_program_lenient("Here:\n```python\ndef solution():\n    return 1") == program
    # The first block that defines solution(), not the first block.
    assert extract_program_lenient("```python\nx = 1\n```\n```python\n" + program + "```") == (
        program
    )
    # Unfenced, with prose after the function.
    assert extract_program_lenient("def solution():\n    return 1\nThe answer is 1.") == program
    # A completion continuing a prefilled 'def solution():'.
    assert extract_program_lenient("    x = 1\n    return x\n```\nDone.") == (
        "def solution():\n    x = 1\n    return x\n"
    )
    assert extract_program_lenient("<|python_tag|>" + program) == program
    # Nothing to rescue.
    assert extract_program_lenient("The answer is 42.") is None
    assert extract_program_lenient("def solution():\n    x = = 1\n    return x") is None
    assert extract_program_lenient("") is None


def test_lenient_only_when_the_paper_program_did_not_execute() -> None:
    rescued = score_output("<|python_tag|>def solution():\n    return 0.036", 0.036)
    assert not rescued.correct and rescued.correct_lenient
    assert rescued.status == "error" and rescued.lenient_status == "ok"
    # The paper's program ran (wrong answer): lenient is the same verdict, no second run.
    ran = score_output("```python\ndef solution():\n    return 2\n```", 1.0)
    assert (ran.correct, ran.correct_lenient, ran.lenient_program) == (False, False, ran.program)


# --- execution edge cases through the sandbox -------------------------------------------------


def test_non_finite_returns_are_scored_as_the_paper_does() -> None:
    nan = score_output("```python\ndef solution():\n    return float('nan')\n```", 42.0)
    assert nan.executed and nan.correct and math.isnan(nan.value)  # the paper's NaN quirk
    inf = score_output("```python\ndef solution():\n    return float('-inf')\n```", 42.0)
    assert inf.executed and not inf.correct and inf.value == -math.inf
    text = score_output("```python\ndef solution():\n    return 'nan'\n```", 42.0)
    assert text.executed and text.correct  # float('nan') of the string: NaN again
    numeric = score_output("```python\ndef solution():\n    return '42.0'\n```", 42.0)
    assert numeric.executed and numeric.correct
    none = score_output("```python\ndef solution():\n    return None\n```", 42.0)
    assert none.executed and not none.correct and none.value is None
    empty = score_output("import argparse", 42.0)
    assert empty.status == "not_extracted" and not empty.executed


# --- gold answers -----------------------------------------------------------------------------


def test_every_gold_program_executes_and_differs_from_the_rounded_field(
    real_validation, gold_by_id
) -> None:
    assert len(gold_by_id) == 200 and all(math.isfinite(v) for v in gold_by_id.values())
    differ = [r for r in real_validation if gold_by_id[r["question_id"]] != r["ground_truth"]]
    beyond_tolerance = sorted(
        r["question_id"]
        for r in real_validation
        if abs(gold_by_id[r["question_id"]] - r["ground_truth"])
        > 0.0015 * abs(gold_by_id[r["question_id"]])
    )
    assert len(differ) == 117
    # Measured 10, as the brief said: all are values below 1 that the field rounds to three
    # decimals (0.00548 stored as 0.005), so the rounding alone exceeds 0.15 %.
    assert beyond_tolerance == sorted(
        f"validation-{n}" for n in (34, 68, 70, 106, 126, 135, 158, 159, 187, 199)
    )
    assert gold_by_id["validation-68"] == pytest.approx(0.00548, abs=1e-6)


def test_gold_answer_rejects_programs_without_a_number() -> None:
    with pytest.raises(ValueError, match="no_number"):
        gold_answer("def solution():\n    return 'n/a'\n")
