"""The FinanceMath paper's program-of-thought (PoT) scoring, reimplemented, plus a separately
reported lenient extraction.

Source of the rules: the public FinanceMath repository (github.com/yale-nlp/FinanceMath, MIT
licence, commit bdddc58655947475da852e241b96a7dbd1478742): ``evaluation.py``
(``evaluate_pot_pred_file``) and ``utils/evaluation_utils.py`` (``process_single_pot_output``,
``get_acc(..., cot=False)``, ``compare_two_numbers``, ``within_eps``, ``round_up_to_decimal``).
The code here is our own; it follows those rules operation by operation, because the verdict
hinges on floating-point details (an exact power-of-ten ratio, a ceiling at three decimals).

How the paper scores one PoT completion:

1. extract a program from the text (:func:`extract_program`);
2. execute it and call ``solution()`` under a 3 s alarm; any exception or the timeout means
   "not executed" (execution rate 0, accuracy 0);
3. the gold answer is the *executed* ``python_solution``, not the rounded ``ground_truth``
   field (:func:`gold_answer`);
4. ``float()`` of what ``solution()`` returned is compared to the gold answer
   (:func:`compare_two_numbers`); a value ``float()`` rejects scores 0 but still counts as
   executed.

We execute in the project's sandbox (:func:`finmath_assets.core.sandbox.run_solution`) instead of
the paper's in-process ``exec``. Differences that remain (none of them changes any of the 400
published verdicts of gpt-4o and Llama-3.1-8B on validation, which this port reproduces): the
sandbox caps memory (512 MiB); a program that prints is not silenced (the paper replaced
``print`` with a no-op; output never affects the verdict here); the 3 s budget covers
interpreter start-up (~0.06 s; :data:`PAPER_LIMITS` adds 0.5 s for it); a return value whose
``float()`` raises something other than ``TypeError``/``ValueError`` (``float(10**400)``:
``OverflowError``) makes the sandbox report an error, where the paper counts it executed (and
wrong); ``exit()`` is an error here, where it would stop the paper's whole evaluation.

The lenient figure (:func:`extract_program_lenient`, ``ScoredOutput.correct_lenient``,
``Accuracy.lenient_accuracy``) is ours: it rescues outputs whose program the paper's heuristic
cannot extract. It never changes the paper's figure.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from finmath_assets.core.sandbox import MARKER, Limits, SandboxResult, run_solution

ExecutionStatus = Literal["ok", "no_number", "error", "timeout", "not_extracted"]

PAPER_LIMITS = Limits(wall_seconds=3.5, cpu_seconds=3)
"""The paper's 3 s ``signal.alarm``, plus half a second for the sandbox's interpreter start-up."""

PAPER_REPOSITORY = "https://github.com/yale-nlp/FinanceMath"
PAPER_COMMIT = "bdddc58655947475da852e241b96a7dbd1478742"

_FENCE = "```"
_PYTHON_FENCED = re.compile(r"```python(.*?)```", re.DOTALL)
_ANY_FENCED = re.compile(r"```(.*?)```", re.DOTALL)
_SOLUTION_HEADER = "def solution():"
_WRAP_INDENT = "    "


# --- extraction -------------------------------------------------------------------------------


def _wrap_in_solution(text: str) -> str:
    """The paper's fallback: treat the text as the body of ``solution()``. Text that already
    starts with four spaces is taken as indented; anything else gets four spaces in front of
    its first line only (later lines keep whatever indentation they have)."""
    if len(text) > 4 and text[:4] == _WRAP_INDENT:
        return f"{_SOLUTION_HEADER}\n{text}"
    return f"{_SOLUTION_HEADER}\n{_WRAP_INDENT}{text}"


def extract_program(output: str) -> str:
    """The program the paper would execute for a PoT completion (``process_single_pot_output``).

    In order:

    - an empty output, or one mentioning ``argparse`` anywhere, gives ``""`` (nothing runs);
    - else the first closed ```` ```python ... ``` ```` block (newlines trimmed at both ends);
    - else the first closed ```` ``` ... ``` ```` block of any kind; its language tag, if any,
      stays in the program (```` ```Python```` therefore yields a program starting ``Python``);
    - else, with exactly one fence and no ``def solution():`` in the text, the text before the
      fence wrapped as the body of ``solution()`` (see :func:`_wrap_in_solution`);
    - else the whole text: stripped if it contains ``def solution():``, otherwise wrapped.

    Finally backticks, then whitespace, are stripped from both ends. A truncated block (an
    opening ```` ```python```` and no closing fence) is not recognised as a block: it falls to
    the whole-text case and keeps its first line, ``python``, which fails when executed.
    """
    if not output or "argparse" in output:
        return ""
    # one capturing group each: findall gives the group's text per match
    blocks: list[str] = _PYTHON_FENCED.findall(output) or _ANY_FENCED.findall(output)
    if blocks:
        program = blocks[0].strip("\n")
    elif output.count(_FENCE) == 1 and _SOLUTION_HEADER not in output:
        program = _wrap_in_solution(output.split(_FENCE)[0])
    elif _SOLUTION_HEADER not in output:
        program = _wrap_in_solution(output)
    else:
        program = output.strip()
    return program.strip("`").strip()


_FENCED_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_]+\|>")
"""A chat-template token left in the text, e.g. Llama 3.1's ``<|python_tag|>`` before code."""
_SOLUTION_DEF = re.compile(r"^([ \t]*)def[ \t]+solution[ \t]*\(", re.MULTILINE)


def _defines_solution(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == "solution" for node in tree.body)


def _function_only(source: str) -> str:
    """The ``def solution`` line and the indented lines after it, up to the first line back at
    column 0 (prose or a call after the function)."""
    lines = source.splitlines()
    start = next((i for i, line in enumerate(lines) if _SOLUTION_DEF.match(line)), None)
    if start is None:
        return ""
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][:1] in (" ", "\t")):
        end += 1
    return "\n".join(lines[start:end])


def _runnable(candidate: str) -> str | None:
    """``candidate`` if it parses and defines ``solution``; else the function alone if that does
    (trailing prose dropped). A syntax error inside the function is the model's, not the
    extraction's: no rescue, ``None``."""
    source = _dedent_def(candidate).strip("\n")
    if _defines_solution(source):
        return source + "\n"
    function = _function_only(source)
    if _defines_solution(function):
        return function.rstrip() + "\n"
    return None


def extract_program_lenient(output: str) -> str | None:
    """A more forgiving extraction than the paper's, for a separately reported figure.

    Chat-template tokens such as Llama 3.1's ``<|python_tag|>`` are removed first (the paper
    executes them as part of the program: a SyntaxError). Then, tried in order, the first
    candidate that yields a parsable program defining ``solution`` wins:

    1. each fenced block, closed or cut off by the end of the output, with any language tag
       (``python``, ``Python``, ``py``, none) removed, that contains ``def solution``;
    2. unfenced text from its first ``def solution`` line on;
    3. a completion that continues a prefilled ``def solution():`` (its first non-blank line is
       indented): the header is put back in front, up to the first fence.

    A candidate must parse; if it does not, the function alone (trailing prose dropped) is
    tried. A syntax error inside the function is not repaired. Returns ``None`` when nothing
    parsable defining ``solution`` is found. No ``argparse`` veto and no wrapping of arbitrary
    prose (the paper's last resort), which almost always gives a program that fails.
    """
    output = _SPECIAL_TOKEN.sub("", output or "")
    if not output.strip():
        return None
    candidates: list[str] = []
    for match in _FENCED_BLOCK.finditer(output):
        body = match.group(2)
        if _SOLUTION_DEF.search(body):
            candidates.append(body)
    unfenced = _SOLUTION_DEF.search(output)
    if unfenced:
        candidates.append(output[unfenced.start() :].split(_FENCE)[0])
    first_line = next((line for line in output.splitlines() if line.strip()), "")
    if first_line[:1] in (" ", "\t"):
        candidates.append(f"{_SOLUTION_HEADER}\n{output.split(_FENCE)[0]}")
    for candidate in candidates:
        program = _runnable(candidate)
        if program is not None:
            return program
    return None


def _dedent_def(source: str) -> str:
    """Shift the text left so that its ``def solution`` line starts at column 0 (a block quoted
    inside a list item or indented prose is otherwise an IndentationError)."""
    match = _SOLUTION_DEF.search(source)
    width = len(match.group(1)) if match else 0
    if not width:
        return source
    return "\n".join(
        line[width:] if line[:width].strip() == "" else line for line in source.splitlines()
    )


# --- comparison -------------------------------------------------------------------------------

_RELATIVE_TOLERANCE = 0.0015
_SCALE_SLIPS = ((50, 100), (500, 1000), (50000, 100000))
"""(minimum ratio, factor): a prediction off by exactly ``factor`` (within tolerance) counts."""


def _close(value: float, target: float) -> bool:
    """The paper's ``within_eps``: ``value`` within 0.15 % of ``target`` (relative to |target|);
    with ``target == 0`` only an exact 0 passes."""
    margin = abs(target) * _RELATIVE_TOLERANCE
    return target - margin <= value <= target + margin


def _ceil_3dp(number: float) -> float:
    """Round *up* to three decimals, the paper's ``round_up_to_decimal(number, 3)``."""
    return math.ceil(number * 1000) / 1000


def _paper_compare(prediction: float, gold: float) -> bool:
    """The paper's ``compare_two_numbers`` for a float prediction; may raise (see caller)."""
    # Python's max/min keep the first argument unless the second compares larger/smaller, so a
    # NaN prediction gives larger == smaller == |gold|: the ratio test below then passes.
    larger = max(abs(gold), abs(prediction))
    smaller = min(abs(gold), abs(prediction))
    # 1. Magnitudes a power of ten apart (ratio 1 included): correct, whatever the signs.
    if larger != 0 and smaller != 0:
        exponent = math.log10(larger / smaller)  # int() below raises on inf/NaN ratios
        if int(exponent) == exponent:
            return True
    # 2. A percentage-style slip: the smaller magnitude times 100, 1,000 or 100,000 is within
    #    tolerance of the larger one.
    for minimum_ratio, factor in _SCALE_SLIPS:
        if smaller <= larger / minimum_ratio and _close(smaller * factor, larger):
            return True
    # 3. The magnitudes agree once both are rounded *up* to three decimals.
    if _ceil_3dp(larger) == _ceil_3dp(smaller):
        return True
    # 4. Plain relative tolerance, signs included.
    return _close(prediction, gold)


def compare_two_numbers(prediction: float, gold: float) -> bool:
    """Whether the paper counts ``prediction`` correct against ``gold`` (both as ``float()``
    gives them), reproducing its edge cases exactly:

    - the sign is ignored whenever rule 1 (power-of-ten ratio, including equal magnitudes) or
      rule 3 (ceiling to three decimals) applies; otherwise the sign must match;
    - gold 0: only a prediction of exactly 0 (or NaN) is correct;
    - NaN prediction: **correct** (a quirk of ``max``/``min`` with NaN, see ``_paper_compare``);
    - infinite prediction or gold, NaN gold, and a ``None`` prediction: incorrect (the paper's
      comparison raises or ``float(None)`` fails, and ``get_acc`` turns any exception into 0).
    """
    if prediction is None or gold is None:
        return False
    try:
        return _paper_compare(float(prediction), float(gold))
    except (ArithmeticError, TypeError, ValueError):
        return False


# --- execution --------------------------------------------------------------------------------


def _returned_repr(result: SandboxResult) -> str | None:
    lines = [line for line in result.output.splitlines() if line.startswith(MARKER)]
    if not lines:
        return None
    # the sandbox runner writes {"value": ..., "repr": repr(value)[:200]} (core.sandbox)
    return cast("str | None", json.loads(lines[-1][len(MARKER) :]).get("repr"))


def _non_finite_return(result: SandboxResult) -> float | None:
    """NaN or ±inf if that is what ``float()`` made of the program's return value.

    The sandbox reports a non-finite return as ``no_number`` with ``value=None``; the paper
    keeps it (and credits NaN, see :func:`compare_two_numbers`). Recovered from the repr the
    sandbox prints: ``nan``, ``inf``, ``np.float64(nan)``, or a string such as ``'nan'``.
    """
    text = _returned_repr(result)
    if text is None:
        return None
    wrapped = re.fullmatch(r"(?:np|numpy)\.\w+\((.*)\)", text)
    if wrapped:
        text = wrapped.group(1)
    if text[:1] in ("'", '"'):
        try:
            literal = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        if not isinstance(literal, str):
            return None
        text = literal
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isfinite(number) else number


@dataclass(frozen=True)
class _Run:
    status: ExecutionStatus
    value: float | None  # what the paper's float() gives: may be NaN/inf when status no_number
    seconds: float = 0.0
    detail: str = ""


def _run(program: str, limits: Limits, preamble: str = "") -> _Run:
    if not program:
        return _Run("not_extracted", None)
    result = run_solution(preamble + program, limits)
    if result.status == "ok":
        return _Run("ok", result.value, result.seconds)
    if result.status == "no_number":
        return _Run("no_number", _non_finite_return(result), result.seconds, result.output[-300:])
    return _Run(result.status, None, result.seconds, result.output[-300:])


@dataclass(frozen=True)
class ScoredOutput:
    """One completion scored the paper's way, with the lenient verdict alongside."""

    program: str
    """What :func:`extract_program` took ("" when the paper executes nothing)."""
    status: ExecutionStatus
    """``ok`` (a finite number), ``no_number`` (ran; returned something else), ``error``,
    ``timeout``, or ``not_extracted`` (empty program)."""
    value: float | None
    """``float()`` of the return value; NaN/inf are kept, since the paper keeps them."""
    correct: bool
    """The paper's verdict."""
    correct_lenient: bool
    """Correct under the paper's comparison with the lenient extraction as a fallback (only used
    when the paper's program did not execute): never below ``correct``."""
    reason: str
    lenient_program: str | None = None
    """The program behind ``correct_lenient``: the paper's when that executed, else the lenient
    extraction (``None`` when it found nothing)."""
    lenient_status: ExecutionStatus | None = None
    lenient_value: float | None = None
    seconds: float = 0.0
    """Sandbox time spent on this output (both runs when the lenient one was needed)."""

    @property
    def executed(self) -> bool:
        """The paper's execution flag: ``solution()`` returned (anything) without an exception
        within the time limit."""
        return self.status in ("ok", "no_number")

    @property
    def executed_lenient(self) -> bool:
        if self.executed:
            return True
        return self.lenient_status in ("ok", "no_number")


def _verdict(run: _Run, gold: float) -> tuple[bool, str]:
    if run.status == "not_extracted":
        return False, "nothing extracted (empty output or 'argparse' in it)"
    if run.status in ("error", "timeout"):
        last = run.detail.strip().splitlines()[-1:] or [""]
        return False, f"did not execute ({run.status}): {last[0][:160]}"
    if run.value is None:
        return False, "returned a value float() rejects"
    correct = compare_two_numbers(run.value, gold)
    if math.isnan(run.value):
        return correct, "returned NaN, which the paper's comparison credits"
    return correct, f"returned {run.value!r} vs gold {gold!r}: {'correct' if correct else 'wrong'}"


def score_output(
    output: str, gold: float, *, limits: Limits | None = None, preamble: str = ""
) -> ScoredOutput:
    """Score one PoT completion against the executed gold answer (see :func:`gold_answer`).
    ``preamble`` is run in front of the extracted program: the source of the library functions
    the prompt offered (:func:`finmath_assets.core.llm.functions.preamble`), "" otherwise.

    The lenient verdict reuses the paper's run when that program executed; only when it did
    not is the lenient extraction (if any, and if different) executed as well.
    """
    limits = limits or PAPER_LIMITS
    program = extract_program(output)
    run = _run(program, limits, preamble)
    correct, reason = _verdict(run, gold)
    lenient_program: str | None = program
    lenient_run: _Run | None = run
    correct_lenient = correct
    if run.status not in ("ok", "no_number"):
        lenient_program = extract_program_lenient(output)
        if lenient_program is None:
            lenient_run = None
        elif lenient_program.strip() != program.strip():
            lenient_run = _run(lenient_program, limits, preamble)
            correct_lenient, lenient_reason = _verdict(lenient_run, gold)
            reason += f"; lenient extraction: {lenient_reason}"
    extra_seconds = lenient_run.seconds if lenient_run and lenient_run is not run else 0.0
    return ScoredOutput(
        program=program,
        status=run.status,
        value=run.value,
        correct=correct,
        correct_lenient=correct_lenient,
        reason=reason,
        lenient_program=lenient_program,
        lenient_status=lenient_run.status if lenient_run else None,
        lenient_value=lenient_run.value if lenient_run else None,
        seconds=run.seconds + extra_seconds,
    )


def gold_answer(python_solution: str, *, limits: Limits | None = None) -> float:
    """The gold answer the paper compares against: the record's ``python_solution`` executed
    (in the sandbox). Raises ``ValueError`` if it does not return a finite number."""
    result = run_solution(python_solution, limits)
    if result.status != "ok" or result.value is None:
        raise ValueError(f"gold program did not return a number ({result.status}): {result.output}")
    return result.value


# --- aggregation ------------------------------------------------------------------------------


def _percent(count: int, n: int) -> float:
    """The paper's ``round(count / n * 100, 2)``."""
    return round(count / n * 100, 2) if n else 0.0


@dataclass(frozen=True)
class Accuracy:
    """Aggregate figures in percent, rounded to two decimals as the paper's results tables."""

    n: int
    accuracy: float
    """The paper's accuracy."""
    execution_rate: float
    """The paper's execution rate."""
    lenient_accuracy: float
    """Ours, reported separately: paper comparison, lenient extraction as fallback."""
    lenient_execution_rate: float
    by_topic: dict[str, Accuracy] = field(default_factory=dict)

    @classmethod
    def of(cls, scored: Sequence[ScoredOutput], topics: Sequence[str] | None = None) -> Accuracy:
        """Aggregate ``scored``; with ``topics`` (one per item) also per topic."""
        by_topic: dict[str, Accuracy] = {}
        if topics is not None:
            if len(topics) != len(scored):
                raise ValueError(f"{len(topics)} topics for {len(scored)} scored outputs")
            for topic in dict.fromkeys(topics):
                subset = [s for s, t in zip(scored, topics, strict=True) if t == topic]
                by_topic[topic] = cls.of(subset)
        n = len(scored)
        return cls(
            n=n,
            accuracy=_percent(sum(s.correct for s in scored), n),
            execution_rate=_percent(sum(s.executed for s in scored), n),
            lenient_accuracy=_percent(sum(s.correct_lenient for s in scored), n),
            lenient_execution_rate=_percent(sum(s.executed_lenient for s in scored), n),
            by_topic=by_topic,
        )
