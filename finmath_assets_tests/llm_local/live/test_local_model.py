"""Smoke tests of the local Qwen2.5-Coder server (`python -m finmath_assets.llm_local`): it
answers an OpenAI-compatible chat completion with a Python program, and the prefill behaviour
that the answering code relies on holds (docs/llm.md)."""

from __future__ import annotations

import ast
import re

from finmath_assets.core.llm.client import chatml_prompt

SYSTEM = (
    "You are a financial expert, you are supposed to generate a Python program to answer the "
    "given question. The returned value of the program is supposed to be the answer."
)
QUESTION = (
    "Question: A company issues a 5-year bond with a face value of $1,000 and an annual coupon "
    "rate of 6%, paid annually. If the market yield to maturity is 7%, what is the bond's price? "
    "Answer to two decimal places.\n\n"
    "Please generate a Python program whose function solution() returns the answer."
)
PREFILL = "```python\ndef solution():\n"
FENCE = re.compile(r"```(?:python)?\n(.*?)(?:```|$)", re.S)


def _program(text: str) -> str:
    """The first fenced block of a reply, or the whole reply when it has no fence."""
    m = FENCE.search(text)
    return (m.group(1) if m else text).strip()


def test_server_lists_the_model(llm_client, llm_server):
    ids = [m.id for m in llm_client.models.list().data]
    assert ids, "the server lists no model"
    if llm_server.started_here:
        assert ids == [llm_server.model]


def test_chat_completion_returns_a_program(llm_client, llm_server):
    reply = llm_client.chat.completions.create(
        model=llm_server.model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=400,
    )
    text = reply.choices[0].message.content or ""
    assert text.strip(), "empty reply"
    assert reply.usage.completion_tokens > 0
    program = _program(text)
    # a function definition that parses (never executed here); without a prefill the model names
    # the function as it likes (bond_price here), which is why the answering code prefills
    tree = ast.parse(program)
    assert any(isinstance(node, ast.FunctionDef) for node in tree.body), text


def test_chat_does_not_continue_a_final_assistant_message(llm_client, llm_server):
    """llama_cpp.server renders the GGUF's chat template with add_generation_prompt=True: a final
    assistant message is closed with <|im_end|> and a new assistant turn is opened, so the reply
    starts over (here: a fresh code fence or `def solution`) rather than continuing the body."""
    reply = llm_client.chat.completions.create(
        model=llm_server.model,
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": PREFILL},
        ],
        temperature=0,
        max_tokens=400,
    )
    text = reply.choices[0].message.content or ""
    assert text.strip()
    assert not text.startswith((" ", "\t")), f"the reply continued the prefill: {text!r}"
    assert "def solution" in text or text.lstrip().startswith("```"), text


def test_completions_with_an_open_chatml_prompt_continue_the_prefill(llm_client, llm_server):
    """The way to a true prefill: the ChatML prompt, left open after the prefill, sent to
    /v1/completions. The model then writes the function body (indented), and prefill + reply
    is one program."""
    prompt = chatml_prompt(
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": PREFILL},
        ]
    )
    assert prompt.endswith("<|im_start|>assistant\n" + PREFILL)
    reply = llm_client.completions.create(
        model=llm_server.model,
        prompt=prompt,
        temperature=0,
        max_tokens=400,
        stop=["<|im_end|>", "<|endoftext|>"],
    )
    text = reply.choices[0].text
    assert text.startswith((" ", "\t")), f"expected the indented function body, got {text!r}"
    program = "def solution():\n" + text.split("```", 1)[0]
    tree = ast.parse(program)
    assert isinstance(tree.body[0], ast.FunctionDef) and tree.body[0].name == "solution"
