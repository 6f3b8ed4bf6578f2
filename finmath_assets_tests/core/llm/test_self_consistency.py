"""Self-consistency and repair: the vote over executed numbers (grouped by the paper's own
comparison), ties, programs that all fail, the early stop, the repair call with the error, and
the replay of recorded attempts behind the ablation table. The model is a scripted stub; every
program runs in the real sandbox."""

from __future__ import annotations

import pytest

from finmath_assets.core.llm.ablation import Config, ablation, replay, split_of
from finmath_assets.core.llm.answering import Sampling, answer
from finmath_assets.core.llm.client import LLMClient
from finmath_assets.core.llm.prompts import PROGRAM_PREFILL, REPAIR_REQUEST
from finmath_assets.core.llm.voting import same_answer, tally
from finmath_assets_tests.llm_stub import LLMStub, Reply

QUESTION = "What is 6 times 7?"


def returns(expression: str) -> Reply:
    """A chat reply whose program returns ``expression``."""
    return Reply(f"```python\ndef solution():\n    return {expression}\n```")


def ask(replies: list[Reply], sampling: Sampling):
    with LLMStub(replies) as stub:
        with LLMClient(stub.base_url, "stub-model", max_retries=0) as client:
            result = answer(
                QUESTION, [], client=client, prompt_variant="improved", sampling=sampling
            )
        return result, stub.chat_requests


# --- the vote ---------------------------------------------------------------------------------


def test_answers_the_paper_counts_as_equal_vote_together() -> None:
    # 0.0525 and 5.25: a percentage written as a fraction (power of ten); 100 and 100.1: 0.1 %
    vote = tally([0.0525, 100.0, None, 5.25, 100.1, 7.0])
    assert [(g.value, g.members) for g in vote.groups] == [
        (0.0525, (0, 3)),
        (100.0, (1, 4)),
        (7.0, (5,)),
    ]
    assert vote.tied and vote.voters == 5 and vote.samples == 6  # a tie: the earliest wins
    assert same_answer(100.0, 100.1) and not same_answer(100.0, 101.0)


def test_no_number_means_no_winner() -> None:
    vote = tally([None, None])
    assert vote.winner is None and not vote.settled(1)
    assert vote.describe() == "no answer: none of 2 program(s) returned a number"


def test_sampling_stops_once_two_programs_agree() -> None:
    sampling = Sampling(samples=5, agree=2, temperature=0.7)
    result, requests = ask([returns("41"), returns("42"), returns("42.0")], sampling)
    assert (result.status, result.value) == ("ok", 42.0)
    assert len(requests) == 3 and result.samples == 3  # stopped before samples 4 and 5
    assert [r.body["temperature"] for r in requests] == [0, 0.7, 0.7]
    assert [r.body.get("seed") for r in requests] == [None, 1, 2]  # greedy first, then seeded
    assert result.chosen == 1 and result.attempts[1].value == 42.0
    assert result.vote is not None and not result.vote.tied
    assert result.vote.describe().startswith("majority: 42×2, 41×1")
    # every request is the same conversation, so the server's prompt cache serves it
    assert len({str(r.body["messages"]) for r in requests}) == 1


def test_a_tie_goes_to_the_greedy_program() -> None:
    result, requests = ask([returns("1"), returns("2"), returns("3")], Sampling(samples=3))
    assert len(requests) == 3 and result.vote is not None and result.vote.tied
    assert (result.value, result.chosen) == (1.0, 0)
    assert result.program == "def solution():\n    return 1"


def test_when_every_program_fails_the_answer_is_the_greedy_failure() -> None:
    replies = [returns("1 / 0"), returns("'about 42'"), Reply("no code at all")]
    result, requests = ask(replies, Sampling(samples=3))
    assert len(requests) == 3
    assert (result.status, result.value, result.chosen) == ("error", None, 0)
    assert "ZeroDivisionError" in (result.error or "")
    assert [a.status for a in result.attempts] == ["error", "no_number", "no_program"]
    assert result.vote is not None and result.vote.winner is None


def test_a_failed_program_is_sent_back_once_with_its_error() -> None:
    sampling = Sampling(samples=1, repair=True)
    result, requests = ask([returns("rate * 100"), returns("6 * 7")], sampling)
    assert (result.status, result.value, result.repairs) == ("ok", 42.0, 1)
    first, second = requests
    sent = second.body["messages"]
    assert sent[: len(first.body["messages"]) - 1] == first.body["messages"][:-1]
    failed_reply, request, prefill = sent[-3:]
    assert failed_reply["role"] == "assistant" and "rate * 100" in failed_reply["content"]
    assert request["role"] == "user"
    assert request["content"].startswith(REPAIR_REQUEST.split("{problem}")[0])
    assert "NameError: name 'rate' is not defined" in request["content"]
    assert "runner.py" not in request["content"]  # only the model's own frames
    assert prefill == {"role": "assistant", "content": PROGRAM_PREFILL}
    assert [(a.sample, a.repair, a.status) for a in result.attempts] == [
        (0, False, "error"),
        (0, True, "ok"),
    ]


def test_a_repair_that_fails_again_is_not_repaired_twice() -> None:
    replies = [returns("1 / 0"), returns("2 / 0"), returns("5"), returns("5.0")]
    result, requests = ask(replies, Sampling(samples=3, repair=True))
    assert len(requests) == 4  # greedy, its one repair, then two samples that agree
    assert [(a.sample, a.repair) for a in result.attempts] == [
        (0, False),
        (0, True),
        (1, False),
        (2, False),
    ]
    assert (result.value, result.repairs) == (5.0, 1)


def test_an_unreachable_model_stops_the_sampling() -> None:
    result, requests = ask([returns("1"), Reply(status=404)], Sampling(samples=5))
    assert len(requests) == 2  # no third call after the endpoint failed
    assert (result.status, result.value) == ("ok", 1.0)
    assert [a.status for a in result.attempts] == ["ok", "llm_error"]


def test_sampling_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="samples must be 1 or more"):
        Sampling(samples=0)
    with pytest.raises(ValueError, match="temperature must be 0 or more"):
        Sampling(temperature=-0.1)


# --- the split and the replay ----------------------------------------------------------------


def test_the_split_is_the_first_half_by_number() -> None:
    ids = [f"validation-{n}" for n in (10, 2, 0, 1, 100, 11)]
    halves = split_of(ids)
    assert [q for q, s in sorted(halves.items()) if s == "tune"] == [
        "validation-0",
        "validation-1",
        "validation-2",
    ]


def _attempt(sample: int, value: float | None, correct: bool, repair: bool = False) -> dict:
    return {
        "sample": sample,
        "repair": repair,
        "status": "ok" if value is not None else "error",
        "value": value,
        "correct": correct,
        "executed": value is not None,
        "llm_seconds": 10.0 if sample == 0 and not repair else 2.0,
        "sandbox_seconds": 0.5,
    }


def test_a_replay_gives_what_a_smaller_configuration_would_have_answered() -> None:
    # greedy wrong (3), a failed sample repaired to 7, then two more 7s: the vote is right
    recorded = [
        _attempt(0, 3.0, False),
        _attempt(1, None, False),
        _attempt(1, 7.0, True, repair=True),
        _attempt(2, 7.0, True),
    ]
    greedy = replay(recorded, Config(1, 2, False), retrieval_seconds=0.1)
    assert (greedy.correct, greedy.calls, greedy.seconds) == (False, 1, pytest.approx(10.6))
    voted = replay(recorded, Config(5, 2, True))
    assert (voted.correct, voted.calls, voted.truncated) == (True, 4, False)
    # without the repair the run would have needed a 4th sample, which it never asked for
    unrepaired = replay(recorded, Config(5, 2, False))
    assert unrepaired.truncated and unrepaired.calls == 3 and not unrepaired.correct
    rows = ablation(
        [{"split": "holdout", "attempts": recorded, "retrieval_seconds": 0.0}],
        [Config(1, 2, False), Config(5, 2, True)],
    )
    assert [(r.config.label, r.split, r.accuracy) for r in rows] == [
        ("greedy", "holdout", 0.0),
        ("greedy", "all", 0.0),
        ("vote ≤5 (stop at 2) + repair", "holdout", 100.0),
        ("vote ≤5 (stop at 2) + repair", "all", 100.0),
    ]
