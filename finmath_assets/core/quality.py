"""Data-quality rules behind the asset checks: pure functions, so each can be tested on crafted
bad input without Dagster, and the thresholds live in the settings.

Each rule returns a :class:`Outcome` whose ``metadata`` explains the verdict (counts, worst
offenders), which is what the Dagster UI shows beside the check.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class Outcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def reject_rate(n_raw: int, n_rejected: int, max_rate: float) -> Outcome:
    """At most ``max_rate`` of the raw rows may be quarantined."""
    rate = n_rejected / n_raw if n_raw else 1.0
    return Outcome(
        passed=n_raw > 0 and rate <= max_rate,
        description=f"{n_rejected} of {n_raw} raw rows rejected ({rate:.2%}; limit {max_rate:.2%})",
        metadata={"raw_rows": n_raw, "rejected_rows": n_rejected, "reject_rate": rate},
    )


def unique_ids(ids: Sequence[str]) -> Outcome:
    duplicated = sorted(i for i, n in Counter(ids).items() if n > 1)
    return Outcome(
        passed=not duplicated,
        description=f"{len(duplicated)} question ids occur more than once",
        metadata={"rows": len(ids), "duplicated_ids": duplicated[:20]},
    )


def labelled_count(n_labelled: int, expected: int) -> Outcome:
    return Outcome(
        passed=n_labelled == expected,
        description=f"{n_labelled} labelled records (expected {expected})",
        metadata={"labelled": n_labelled, "expected": expected},
    )


def numeric_parse_share(
    cell_texts: Sequence[str], parsed: Sequence[bool], minimum: float
) -> Outcome:
    """Of the cells that contain a digit, at least ``minimum`` must parse as a number."""
    numeric_looking = [i for i, text in enumerate(cell_texts) if _DIGIT.search(text or "")]
    n_parsed = sum(1 for i in numeric_looking if parsed[i])
    share = n_parsed / len(numeric_looking) if numeric_looking else 1.0
    failures = [cell_texts[i] for i in numeric_looking if not parsed[i]][:10]
    return Outcome(
        passed=share >= minimum,
        description=f"{n_parsed} of {len(numeric_looking)} numeric-looking cells parsed "
        f"({share:.1%}; minimum {minimum:.0%})",
        metadata={
            "numeric_looking_cells": len(numeric_looking),
            "parsed": n_parsed,
            "share": share,
            "unparsed_examples": failures,
        },
    )


def embeddings(
    question_ids: Sequence[str],
    vectors: np.ndarray,
    expected_ids: Sequence[str],
    expected_dim: int,
    norm_tolerance: float = 1e-3,
) -> Outcome:
    """One finite, unit-norm vector of the expected size for every validated record."""
    problems: list[str] = []
    if vectors.ndim != 2 or (len(vectors) and vectors.shape[1] != expected_dim):
        problems.append(f"dimension {vectors.shape[1:]} instead of {expected_dim}")
    finite = np.isfinite(vectors).all(axis=1) if vectors.ndim == 2 else np.array([])
    n_nan = int((~finite).sum())
    if n_nan:
        problems.append(f"{n_nan} vectors with NaN or inf")
    norms = np.linalg.norm(np.where(np.isfinite(vectors), vectors, 0.0), axis=-1)
    off_norm = int((np.abs(norms - 1.0) > norm_tolerance).sum()) if vectors.ndim == 2 else 0
    if off_norm:
        problems.append(f"{off_norm} vectors not of unit norm")
    counts = Counter(question_ids)
    missing = sorted(set(expected_ids) - set(counts))
    extra = sorted(set(counts) - set(expected_ids))
    doubled = sorted(i for i, n in counts.items() if n > 1)
    for label, ids in (("missing", missing), ("unexpected", extra), ("repeated", doubled)):
        if ids:
            problems.append(f"{len(ids)} {label} records (e.g. {ids[:3]})")
    return Outcome(
        passed=not problems,
        description="; ".join(problems) or f"{len(question_ids)} unit vectors of {expected_dim}",
        metadata={
            "vectors": len(question_ids),
            "expected": len(expected_ids),
            "dimension": int(vectors.shape[1]) if vectors.ndim == 2 and len(vectors) else 0,
            "nan_vectors": n_nan,
            "off_norm_vectors": off_norm,
            "min_norm": float(norms.min()) if norms.size else math.nan,
            "max_norm": float(norms.max()) if norms.size else math.nan,
        },
    )


def feature_table(
    columns: Sequence[str],
    all_null_columns: Sequence[str],
    n_rows: int,
    expected_columns: Sequence[str],
    expected_rows: int,
) -> Outcome:
    """The feature table has a row per validated record, the model's exact column list, and no
    column that is null everywhere (a feature that silently stopped being computed)."""
    problems: list[str] = []
    if n_rows != expected_rows:
        problems.append(f"{n_rows} rows for {expected_rows} validated records")
    if list(columns) != list(expected_columns):
        missing = [c for c in expected_columns if c not in set(columns)]
        extra = [c for c in columns if c not in set(expected_columns)]
        problems.append(
            f"column list differs (missing {missing[:5]}, unexpected {extra[:5]}"
            + (", order" if not missing and not extra else "")
            + ")"
        )
    if all_null_columns:
        problems.append(
            f"{len(all_null_columns)} all-null columns (e.g. {list(all_null_columns)[:5]})"
        )
    return Outcome(
        passed=not problems,
        description="; ".join(problems) or f"{n_rows} rows x {len(columns)} feature columns",
        metadata={
            "rows": n_rows,
            "expected_rows": expected_rows,
            "columns": len(columns),
            "all_null_columns": list(all_null_columns)[:20],
        },
    )


def beats_baseline(model_metric: float, baseline_metric: float, metric: str) -> Outcome:
    """The model must beat the median baseline on its cross-validation metric (lower is better)."""
    passed = math.isfinite(model_metric) and model_metric < baseline_metric
    return Outcome(
        passed=passed,
        description=f"{metric} {model_metric:.4f} vs median baseline {baseline_metric:.4f}",
        metadata={"model": model_metric, "median_baseline": baseline_metric, "metric": metric},
    )


def drift_share(share: float, max_share: float, drifted: Sequence[str]) -> Outcome:
    """At most ``max_share`` of the tested columns may have drifted."""
    return Outcome(
        passed=share <= max_share,
        description=f"{share:.0%} of the tested columns drifted (limit {max_share:.0%})",
        metadata={"drift_share": share, "drifted_columns": list(drifted)},
    )


def reproducible(
    question_ids: Sequence[str],
    ground_truths: Sequence[float],
    statuses: Sequence[str],
    values: Sequence[float | None],
) -> Outcome:
    """Each labelled record's ``python_solution``, executed, gives its ``ground_truth`` at three
    decimals (the field is rounded to three; the paper scores against the executed value)."""
    failures = [(q, s) for q, s in zip(question_ids, statuses, strict=True) if s != "ok"]
    mismatches = [
        (q, round(v, 3), g)
        for q, g, s, v in zip(question_ids, ground_truths, statuses, values, strict=True)
        if s == "ok" and v is not None and round(v, 3) != round(g, 3)
    ]
    return Outcome(
        passed=not failures and not mismatches,
        description=f"{len(question_ids) - len(failures) - len(mismatches)} of "
        f"{len(question_ids)} programs reproduce their ground truth; {len(mismatches)} "
        f"mismatches, {len(failures)} failures",
        metadata={
            "programs": len(question_ids),
            "mismatches": [f"{q}: got {v}, ground truth {g}" for q, v, g in mismatches[:20]],
            "failures": [f"{q}: {s}" for q, s in failures[:20]],
        },
    )


@dataclass(frozen=True)
class QuarantinePart:
    """The quarantine of one partition (a trading day, a landed file, a whole table)."""

    name: str
    rejected: int
    rows: int = 0  # rows read (stored + rejected): the share's denominator
    whole_files: tuple[str, ...] = ()  # a file rejected whole, and why: always a failure
    examples: tuple[str, ...] = ()


def quarantine(
    parts: Sequence[QuarantinePart],
    *,
    what: str,
    checked: int,
    max_rejected: int | None = None,
    max_share: float | None = None,
) -> Outcome:
    """Each partition's quarantine stays within ``max_rejected`` rows and ``max_share`` of its
    rows; a file rejected whole always fails (its partition is empty but is not a holiday)."""
    problems: list[str] = []
    for part in parts:
        prefix = f"{part.name}: " if part.name else ""
        example = f", e.g. {part.examples[0]}" if part.examples else ""
        share = part.rejected / part.rows if part.rows else 0.0
        if part.whole_files:
            problems.append(prefix + "; ".join(part.whole_files))
        elif max_rejected is not None and part.rejected > max_rejected:
            problems.append(
                f"{prefix}{part.rejected} {what} rejected (limit {max_rejected}){example}"
            )
        elif max_share is not None and share > max_share:
            problems.append(
                f"{prefix}{part.rejected} of {part.rows} {what} rejected ({share:.1%}; "
                f"limit {max_share:.1%}){example}"
            )
    total = sum(p.rejected for p in parts)
    shown = "; ".join(problems[:5]) + (
        f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    )
    return Outcome(
        passed=not problems,
        description=shown
        or f"{total} {what} rejected in {checked} partition(s), within the limits",
        metadata={
            "partitions_checked": checked,
            "rejected": total,
            "failing_partitions": len(problems),
            "problems": problems[:20],
            **({"max_rejected": max_rejected} if max_rejected is not None else {}),
            **({"max_share": max_share} if max_share is not None else {}),
        },
    )
