"""The chat prompts of the program-of-thought (PoT) answerer.

Two variants, both asking the model for ``def solution():`` whose return value is the answer:

* ``"paper"``: FinanceMath's PoT prompt, verbatim (system + user message). Quoted from
  ``utils/model_input_utils.py`` of https://github.com/yale-nlp/FinanceMath at commit
  ``bdddc58655947475da852e241b96a7dbd1478742`` (``prepare_pot_model_input`` and, for the
  system/user split, ``prepare_model_inputs``). The strings keep the original's quirks on
  purpose: no newline between "...for your reference." and the first table, and one blank line
  between the question and the instructions. The older ``run_llm.py`` of commit
  ``3166a7771648f7a01bfc8a9931191f2d5695da16`` says "Here is the example" instead of "Here is
  an example"; the newer file is the one the released scripts import.
* ``"improved"``: ours. A short system message, ``k`` retrieved solved examples as earlier chat
  turns (their question and tables, then their expert ``python_solution`` as the assistant's
  answer), the question (followed by the signatures of any library functions offered, see
  :mod:`finmath_assets.core.llm.functions`), and an assistant prefill that starts the answer as
  ``def solution():`` inside a code fence (see :mod:`finmath_assets.core.llm.client` for which
  servers continue a prefill).

:func:`repair_messages` continues either conversation when a program failed: the model's reply,
then the error, and a request for the corrected program.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

PromptVariant = Literal["paper", "improved"]
PROMPT_VARIANTS: tuple[PromptVariant, ...] = ("paper", "improved")

PAPER_SOURCE = (
    "https://github.com/yale-nlp/FinanceMath/blob/bdddc58655947475da852e241b96a7dbd1478742/"
    "utils/model_input_utils.py"
)

# --- FinanceMath's PoT prompt, verbatim (prepare_pot_model_input) --------------------------
PAPER_POT_SYSTEM = (
    "You are a financial expert, you are supposed to generate a Python program to answer the "
    "given question. The returned value of the program is supposed to be the answer. Here is an "
    "example of the Python program:\n"
    "```python\n"
    "def solution():\n"
    "    # Define variables name and value\n"
    "    revenue = 600000\n"
    "    avg_account_receivable = 50000\n"
    "    \n"
    "    # Do math calculation to get the answer\n"
    "    receivables_turnover = revenue / avg_account_receivable\n"
    "    answer = 365 / receivables_turnover\n"
    "    \n"
    "    # return answer\n"
    "    return answer\n"
    "```\n"
)
PAPER_POT_TABLE_INTRO = "The following table is provided for your reference."
PAPER_POT_PROGRAM_PREFIX = (
    "Please generate a Python program to answer the given question. The format of the program "
    "should be the following:\n"
    "```python\n"
    "def solution():\n"
    "    # Define variables name and value\n"
    "    \n"
    "    # Do math calculation to get the answer\n"
    "    \n"
    "    # return answer\n"
    "```\n"
    "\n"
    "Continue your output:\n"
    "```python\n"
    "def solution():\n"
    "    # Define variables name and value\n"
)
# prepare_model_inputs: these chat templates take no system role, so the paper sent
# system + "\n" + user as one user message (matched as substrings of the model name)
PAPER_MODELS_WITHOUT_SYSTEM: tuple[str, ...] = ("gemma", "OLMo", "Mistral", "Mixtral", "starcoder2")

# --- ours ------------------------------------------------------------------------------------
PROGRAM_PREFILL = "```python\ndef solution():\n"
IMPROVED_SYSTEM = (
    "You are a financial expert. Answer the question with a Python program: a function "
    "`solution()` without arguments that computes the answer step by step, with well-named "
    "variables, and returns it as one number (an int or a float, not a string). Use plain "
    "Python; the math module is allowed. Do not round unless the question asks for it. Reply "
    "with the program only, in one ```python block."
)

REPAIR_REQUEST = (
    "Running that program failed:\n```\n{problem}\n```\nWrite the corrected program: the same "
    "`solution()` without arguments, returning one number. Reply with the program only, in one "
    "```python block."
)
REPAIR_PROBLEM_LINES = 12  # the end of a traceback says what went wrong

Message = dict[str, str]


class SolvedExample(Protocol):
    """What a few-shot example needs (``retrieval.Example`` is one)."""

    @property
    def question(self) -> str: ...

    @property
    def tables(self) -> Sequence[str]: ...

    @property
    def python_solution(self) -> str: ...


@dataclass(frozen=True)
class Prompt:
    """Chat messages plus an optional assistant prefill, which the client sends as the final
    assistant message (``request_messages``) and puts back in front of the completion."""

    variant: PromptVariant
    messages: list[Message]
    prefill: str | None = None
    example_ids: tuple[str, ...] = field(default=())

    @property
    def request_messages(self) -> list[Message]:
        extra = [{"role": "assistant", "content": self.prefill}] if self.prefill else []
        return [*self.messages, *extra]


def paper_pot_inputs(question: str, tables: Sequence[str]) -> tuple[str, str]:
    """``(system, user)`` exactly as FinanceMath's ``prepare_pot_model_input`` builds them."""
    if tables:
        table_input = PAPER_POT_TABLE_INTRO
        for table in tables:
            table_input += table + "\n"
        question_input = f"{table_input}\nQuestion: {question}\n"
    else:
        question_input = f"Question: {question}\n"
    return PAPER_POT_SYSTEM, "\n".join([question_input, PAPER_POT_PROGRAM_PREFIX])


def paper_messages(question: str, tables: Sequence[str], model: str = "") -> list[Message]:
    """The paper's API messages: system + user, or one merged user message for the model
    families whose chat template has no system role (as ``prepare_model_inputs`` does)."""
    system, user = paper_pot_inputs(question, tables)
    if any(name in model for name in PAPER_MODELS_WITHOUT_SYSTEM):
        return [{"role": "user", "content": system + "\n" + user}]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def question_block(question: str, tables: Sequence[str]) -> str:
    """Tables first (as in the paper's prompt), each once, separated by blank lines."""
    kept = [table.strip() for table in tables if table.strip()]
    head = "Tables:\n" + "\n\n".join(kept) + "\n\n" if kept else ""
    return f"{head}Question: {question.strip()}"


def solution_block(python_solution: str) -> str:
    return f"```python\n{python_solution.strip()}\n```"


def improved_messages(
    question: str,
    tables: Sequence[str],
    examples: Sequence[SolvedExample] = (),
    functions: str = "",
) -> list[Message]:
    """System message, then each example as a user turn answered by its expert program, then
    the question, followed by ``functions`` (the offered library functions' block, if any).
    Examples are given most similar first."""
    messages: list[Message] = [{"role": "system", "content": IMPROVED_SYSTEM}]
    for example in examples:
        messages.append(
            {"role": "user", "content": question_block(example.question, example.tables)}
        )
        messages.append({"role": "assistant", "content": solution_block(example.python_solution)})
    last = question_block(question, tables)
    messages.append({"role": "user", "content": f"{last}\n\n{functions}" if functions else last})
    return messages


def build_prompt(
    variant: PromptVariant,
    question: str,
    tables: Sequence[str],
    *,
    examples: Sequence[SolvedExample] = (),
    example_ids: Sequence[str] = (),
    model: str = "",
    functions: str = "",
) -> Prompt:
    """The prompt for ``variant``. ``examples`` and ``functions`` only apply to ``"improved"``
    (the paper's PoT setting is zero-shot, without tools); ``model`` only matters to
    ``"paper"`` (system-role handling)."""
    if variant == "paper":
        return Prompt("paper", paper_messages(question, tables, model))
    if variant == "improved":
        return Prompt(
            "improved",
            improved_messages(question, tables, examples, functions),
            prefill=PROGRAM_PREFILL,
            example_ids=tuple(example_ids),
        )
    raise ValueError(f"unknown prompt variant {variant!r}; choose one of {PROMPT_VARIANTS}")


def repair_messages(messages: Sequence[Message], reply: str, problem: str) -> list[Message]:
    """``messages`` continued by the model's failed ``reply`` and a request to fix it, naming
    the ``problem`` (its last lines: the end of a traceback). The caller sends the same prefill
    again, so the repaired answer is read exactly as the first one."""
    tail = "\n".join(problem.strip().splitlines()[-REPAIR_PROBLEM_LINES:]) or "no output"
    return [
        *messages,
        {"role": "assistant", "content": reply.strip()},
        {"role": "user", "content": REPAIR_REQUEST.format(problem=tail)},
    ]
