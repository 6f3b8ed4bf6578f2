"""What each answering technique is worth, measured without tuning on the numbers reported.

* :func:`split_of`: the fixed split of the labelled questions. Techniques and settings are
  chosen on the first half in ``question_id`` order (``validation-0`` … ``validation-99``, by
  the number) and reported on the second half, held out.
* :func:`replay`: the answer a smaller configuration (fewer samples, no repair) would have
  given, read from the attempts that a run of the full configuration recorded. Sampling is
  sequential and seeded, so the first *n* samples of a run with more are the samples a run
  with *n* asks for; a replay stops early (``truncated``) where it needs an attempt the run
  did not make, e.g. a further sample after the run had stopped on a repaired agreement.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from finmath_assets.core.llm.answering import REPAIRABLE
from finmath_assets.core.llm.voting import tally

Split = Literal["tune", "holdout"]
SPLITS: tuple[Split, ...] = ("tune", "holdout")


def question_number(question_id: str) -> int:
    """``validation-17`` → 17."""
    return int(question_id.rsplit("-", 1)[-1])


def split_of(question_ids: Iterable[str]) -> dict[str, Split]:
    """Each id's half: ``tune`` for the first half in order of its number, ``holdout`` else."""
    ordered = sorted(set(question_ids), key=question_number)
    half = (len(ordered) + 1) // 2
    return {qid: ("tune" if i < half else "holdout") for i, qid in enumerate(ordered)}


@dataclass(frozen=True)
class Config:
    """A configuration to replay: ``samples`` at most, stop at ``agree``, repair or not.
    ``functions`` (library functions offered per question) changes the prompt, so it is not
    replayed: it is the recorded run's and only labels the row."""

    samples: int
    agree: int
    repair: bool
    functions: int = 0

    @property
    def label(self) -> str:
        sampled = "greedy" if self.samples == 1 else f"vote ≤{self.samples} (stop at {self.agree})"
        offered = f" + functions ≤{self.functions}" if self.functions else ""
        return sampled + (" + repair" if self.repair else "") + offered


@dataclass(frozen=True)
class Replayed:
    correct: bool
    executed: bool
    seconds: float  # retrieval + every LLM call and sandbox run this configuration makes
    calls: int
    truncated: bool


def replay(
    attempts: Sequence[Mapping[str, Any]], config: Config, retrieval_seconds: float = 0.0
) -> Replayed:
    """Replay ``config`` over one question's recorded attempts. Each attempt is a mapping with
    ``sample``, ``repair``, ``status``, ``value`` (None unless ``ok``), ``correct`` and
    ``executed`` (the paper's verdicts on that attempt's output), ``llm_seconds`` and
    ``sandbox_seconds``."""
    by_key = {(int(a["sample"]), bool(a["repair"])): a for a in attempts}
    seconds, calls, truncated = retrieval_seconds, 0, False
    finals: list[Mapping[str, Any]] = []

    def spend(attempt: Mapping[str, Any]) -> None:
        nonlocal seconds, calls
        seconds += float(attempt.get("llm_seconds") or 0.0)
        seconds += float(attempt.get("sandbox_seconds") or 0.0)
        calls += 1

    for sample in range(config.samples):
        first = by_key.get((sample, False))
        if first is None:
            truncated = not tally(_values(finals)).settled(config.agree)
            break
        spend(first)
        if first["status"] == "llm_error":
            break
        final = first
        if config.repair and first["status"] in REPAIRABLE:
            fixed = by_key.get((sample, True))
            if fixed is None:
                truncated = True
            else:
                spend(fixed)
                if fixed["status"] != "llm_error":
                    final = fixed
        finals.append(final)
        if tally(_values(finals)).settled(config.agree):
            break
    vote = tally(_values(finals))
    if vote.winner is not None:
        chosen: Mapping[str, Any] | None = finals[vote.winner.members[0]]
    else:
        chosen = finals[0] if finals else None
    return Replayed(
        correct=bool(chosen and chosen["correct"]),
        executed=bool(chosen and chosen["executed"]),
        seconds=seconds,
        calls=calls,
        truncated=truncated,
    )


def _values(finals: Sequence[Mapping[str, Any]]) -> list[float | None]:
    return [a["value"] if a["status"] == "ok" else None for a in finals]


@dataclass(frozen=True)
class AblationRow:
    config: Config
    split: str
    n: int
    accuracy: float  # percent
    executed: float  # percent
    median_seconds: float
    mean_seconds: float
    mean_calls: float
    truncated: int


def ablation(
    questions: Sequence[Mapping[str, Any]], configs: Sequence[Config]
) -> list[AblationRow]:
    """Each config replayed on each split present in ``questions`` (mappings with ``split``,
    ``attempts`` and ``retrieval_seconds``), and on all of them."""
    rows: list[AblationRow] = []
    present = [s for s in SPLITS if any(q["split"] == s for q in questions)]
    for config in configs:
        for split in [*present, "all"]:
            chosen = [q for q in questions if split == "all" or q["split"] == split]
            if not chosen:
                continue
            runs = [
                replay(q["attempts"], config, q.get("retrieval_seconds") or 0.0) for q in chosen
            ]
            n = len(runs)
            rows.append(
                AblationRow(
                    config=config,
                    split=split,
                    n=n,
                    accuracy=round(100 * sum(r.correct for r in runs) / n, 2),
                    executed=round(100 * sum(r.executed for r in runs) / n, 2),
                    median_seconds=round(statistics.median(r.seconds for r in runs), 1),
                    mean_seconds=round(statistics.fmean(r.seconds for r in runs), 1),
                    mean_calls=round(statistics.fmean(r.calls for r in runs), 2),
                    truncated=sum(r.truncated for r in runs),
                )
            )
    return rows


def ablation_table(rows: Sequence[AblationRow]) -> str:
    """Markdown: one line per configuration and split."""
    lines = [
        "| technique | split | n | accuracy % | executed % | median s | mean s | calls | "
        "truncated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.config.label} | {r.split} | {r.n} | {r.accuracy:.1f} | {r.executed:.1f} | "
            f"{r.median_seconds:.1f} | {r.mean_seconds:.1f} | {r.mean_calls:.2f} | "
            f"{r.truncated} |"
        )
    return "\n".join(lines)


def configs_up_to(samples: int, agree: int, repair: bool, functions: int = 0) -> list[Config]:
    """The configurations a run of (``samples``, ``agree``, ``repair``) can replay: greedy,
    greedy + repair, and votes of 3 and of ``samples`` programs, each with and without repair
    (repair only when the run repaired); all with the run's ``functions``."""
    sizes = sorted({1, *(n for n in (3, samples) if 1 < n <= samples)})
    repairs = (False, True) if repair else (False,)
    return [Config(n, agree, r, functions) for n in sizes for r in repairs]
