"""Encoder throughput per backend and thread layout: ``python scripts/bench_embedding_runtimes.py``
(after ``make run``; reads the test split from the warehouse).

For each backend (ONNX Runtime fp32, OpenVINO in this CPU's precision) and the same texts, one
text per call as the assets and the service encode: one caller with one thread, one caller with
every core (a lone request in the service), and two callers at once with one thread each (the
service's two workers under load). Also the cosine of each backend's vectors to fp32. One run;
compare rows of the same run only (the machine's speed varies between runs).
"""

from __future__ import annotations

import argparse
import threading
import time

import duckdb
import numpy as np

from finmath_assets.core.embeddings import Backend
from finmath_assets.core.onnx_encoder import OnnxEncoder
from finmath_assets.core.openvino_encoder import runtime_id
from finmath_assets.core.text import record_text
from finmath_assets.settings import Settings


def _texts(settings: Settings, limit: int) -> list[str]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT question, tables FROM finmath.validated_records WHERE split = 'test' "
            "ORDER BY question_id LIMIT ?",
            [limit],
        ).fetchall()
    return [record_text(question, tables) for question, tables in rows]


def _encoder(settings: Settings, backend: Backend) -> OnnxEncoder:
    embedder = Settings(**{**settings.model_dump(), "embedding_backend": backend}).embedder(
        threads=0, parallel=2
    )
    embedder.load()
    assert embedder.encoder is not None
    return embedder.encoder


def _rate(texts: list[str], callers: int, encode) -> tuple[float, np.ndarray]:
    """texts/s with ``callers`` threads splitting ``texts``, and the vectors in input order."""
    encode(texts[:2])  # warm-up: first-call allocations
    parts: dict[int, np.ndarray] = {}

    def work(part: int) -> None:
        parts[part] = np.vstack([encode([t]) for t in texts[part::callers]])

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(p,)) for p in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
    for part in range(callers):
        vectors[part::callers] = parts[part]
    return len(texts) / seconds, vectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=400, help="test-split questions to encode")
    args = parser.parse_args()
    settings = Settings()
    texts = _texts(settings, args.texts)
    print(f"{len(texts)} test-split texts, one per call")
    print()
    print(
        "| backend | 1 caller, 1 thread | 1 caller, every core | 2 callers, 1 thread each "
        "| cosine to fp32, min / mean |"
    )
    print("|---|---|---|---|---|")
    reference: np.ndarray | None = None
    for backend in ("onnx", "openvino"):
        encoder = _encoder(settings, backend)
        single, vectors = _rate(texts, 1, encoder.run_shared)  # shared runner: 1 thread
        alone, _ = _rate(texts, 1, encoder.run_alone)
        pair, _ = _rate(texts, 2, encoder.run_shared)
        if reference is None:
            reference = vectors
        cosine = (vectors * reference).sum(axis=1)
        label = "onnx (ONNX Runtime, fp32)" if backend == "onnx" else f"openvino ({runtime_id()})"
        print(
            f"| {label} | {single:.1f} | {alone:.1f} | {pair:.1f} | "
            f"{cosine.min():.5f} / {cosine.mean():.5f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
