"""Self-consistency: the majority over the numbers that sampled programs returned.

Two answers are the same answer when the FinanceMath paper's own comparison
(:func:`~finmath_assets.core.llm.scoring.compare_two_numbers`) says so in either direction, so a
vote never splits answers that the scoring would treat as one. Programs that did not return a
finite number do not vote. A tie goes to the group holding the earliest sample (the first
sample is the greedy one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from finmath_assets.core.llm.scoring import compare_two_numbers


def same_answer(a: float, b: float) -> bool:
    """The paper's comparison, made symmetric (its relative tolerance is relative to gold)."""
    return compare_two_numbers(a, b) or compare_two_numbers(b, a)


@dataclass(frozen=True)
class Group:
    value: float  # the first value of the group, which stands for it
    members: tuple[int, ...]  # indices of the samples in it, in order

    @property
    def votes(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Vote:
    groups: tuple[Group, ...]  # most votes first; among equals, the earliest sample first
    voters: int  # samples that returned a finite number
    samples: int  # all samples, failed ones included

    @property
    def winner(self) -> Group | None:
        return self.groups[0] if self.groups else None

    @property
    def tied(self) -> bool:
        return len(self.groups) > 1 and self.groups[0].votes == self.groups[1].votes

    def settled(self, agree: int) -> bool:
        """Whether ``agree`` samples already back the leading answer (sampling can stop)."""
        return self.winner is not None and self.winner.votes >= agree

    def describe(self) -> str:
        if self.winner is None:
            return f"no answer: none of {self.samples} program(s) returned a number"
        counts = ", ".join(f"{g.value:g}×{g.votes}" for g in self.groups)
        how = "tie broken by the earliest sample" if self.tied else "majority"
        return f"{how}: {counts} ({self.voters} of {self.samples} program(s) returned a number)"


def tally(values: Sequence[float | None]) -> Vote:
    """Group ``values`` (one per sample, ``None`` for a sample without a finite number)."""
    groups: list[list[int]] = []
    representatives: list[float] = []
    for index, value in enumerate(values):
        if value is None:
            continue
        for members, representative in zip(groups, representatives, strict=True):
            if same_answer(value, representative):
                members.append(index)
                break
        else:
            groups.append([index])
            representatives.append(value)
    ranked = sorted(
        (Group(rep, tuple(members)) for members, rep in zip(groups, representatives, strict=True)),
        key=lambda group: (-group.votes, group.members[0]),
    )
    voters = sum(value is not None for value in values)
    return Vote(groups=tuple(ranked), voters=voters, samples=len(values))
