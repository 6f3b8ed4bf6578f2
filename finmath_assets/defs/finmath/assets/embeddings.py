"""validated_records -> question_embeddings, with a content-addressed embedding cache.

The cache (``finmath.embedding_cache``) is keyed by SHA-256 of (model id, text): re-running with
unchanged data embeds nothing (and never loads the model); changing one record embeds one text;
switching models embeds everything once per model.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from finmath_assets.core.embeddings import Embedder
from finmath_assets.core.text import record_text, text_hash
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources import EmbeddingModelResource, WarehouseResource

CACHE_TABLE = f"{KEY_PREFIX}.embedding_cache"


def _read_cache(warehouse: WarehouseResource, hashes: list[str]) -> dict[str, np.ndarray]:
    wanted = pd.DataFrame({"text_hash": hashes})
    with warehouse.get_connection() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {KEY_PREFIX}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CACHE_TABLE} (text_hash VARCHAR PRIMARY KEY, "
            "model_id VARCHAR NOT NULL, embedding FLOAT[] NOT NULL, created_at TIMESTAMP NOT NULL)"
        )
        conn.register("wanted_hashes", wanted)
        found = conn.execute(
            f"SELECT c.text_hash, c.embedding FROM {CACHE_TABLE} c "
            "JOIN wanted_hashes w USING (text_hash)"
        ).fetchall()
    return {digest: np.asarray(vector, dtype=np.float32) for digest, vector in found}


def _write_cache(
    warehouse: WarehouseResource, model_id: str, hashes: list[str], vectors: np.ndarray
) -> None:
    new_rows = pd.DataFrame(
        {
            "text_hash": hashes,
            "model_id": model_id,
            "embedding": list(vectors.astype(np.float32)),
            "created_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
        }
    )
    with warehouse.get_connection() as conn:
        conn.register("new_embeddings", new_rows)
        conn.execute("BEGIN TRANSACTION")
        conn.execute(
            f"INSERT INTO {CACHE_TABLE} SELECT text_hash, model_id, embedding, created_at "
            "FROM new_embeddings ON CONFLICT DO NOTHING"
        )
        conn.execute("COMMIT")


@dataclass
class CachedEmbeddings:
    hashes: list[str]
    vectors: list[np.ndarray]
    embedded: int
    reused: int
    encode_seconds: float
    load_seconds: float
    stage_seconds: float  # hashing + cache read + encode + cache write, model load excluded


def embed_with_cache(
    texts: list[str],
    model_id: str,
    get_embedder: Callable[[], Embedder],
    warehouse: WarehouseResource,
    log: Callable[[str], None] = lambda _: None,
) -> CachedEmbeddings:
    """Embed ``texts``, reusing every vector already cached for (model id, text).

    The embedder is only requested (and its runtime only imported) when something must be
    embedded.
    Identical texts are embedded once.
    """
    stage_started = time.perf_counter()
    hashes = [text_hash(text, model_id) for text in texts]
    cached = _read_cache(warehouse, hashes)
    missing = list(dict.fromkeys(h for h in hashes if h not in cached))
    text_by_hash = dict(zip(hashes, texts, strict=True))
    log(f"{len(hashes) - len(missing)} texts cached, {len(missing)} to embed ({model_id})")
    encode_seconds = load_seconds = 0.0
    if missing:
        embedder = get_embedder()
        load_seconds = embedder.load().load_seconds  # load (or export) before the timed encode

        def progress(done: int, total: int, seconds: float) -> None:
            log(f"embedded {done}/{total} texts ({done / seconds if seconds else 0.0:.1f} texts/s)")

        started = time.perf_counter()
        vectors = embedder.encode([text_by_hash[h] for h in missing], progress=progress)
        encode_seconds = time.perf_counter() - started
        _write_cache(warehouse, model_id, missing, vectors)
        cached.update(zip(missing, vectors, strict=True))
    dims = {cached[h].shape[0] for h in hashes}
    if len(dims) > 1:
        raise ValueError(f"embedding cache holds vectors of sizes {sorted(dims)} for {model_id}")
    return CachedEmbeddings(
        hashes=hashes,
        vectors=[cached[h] for h in hashes],
        embedded=len(missing),
        reused=len(hashes) - len(missing),
        encode_seconds=encode_seconds,
        load_seconds=load_seconds,
        stage_seconds=time.perf_counter() - stage_started - load_seconds,
    )


def record_texts(validated_records: pd.DataFrame) -> list[str]:
    return [
        record_text(question, list(tables) if tables is not None else [])
        for question, tables in zip(
            validated_records["question"], validated_records["tables"], strict=True
        )
    ]


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name="featurization",
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "onnx", "pytorch"},
    ins={"validated_records": dg.AssetIn(key=[KEY_PREFIX, "validated_records"])},
    description="One L2-normalised sentence embedding (MiniLM, 384-d by default) per validated "
    "record, of the question followed by its tables; run by ONNX Runtime or torch "
    "(FINMATH_EMBEDDING_BACKEND, recorded in model_id).",
)
def question_embeddings(
    context: dg.AssetExecutionContext,
    validated_records: pd.DataFrame,
    embedding_model: EmbeddingModelResource,
    warehouse: WarehouseResource,
) -> pd.DataFrame:
    model_id = embedding_model.model_id
    result = embed_with_cache(
        record_texts(validated_records),
        model_id,
        embedding_model.get_embedder,
        warehouse,
        log=context.log.info,
    )
    frame = pd.DataFrame(
        {
            "question_id": validated_records["question_id"].to_numpy(),
            "text_hash": result.hashes,
            "model_id": model_id,
            "embedding": result.vectors,
        }
    )
    rate = result.embedded / result.encode_seconds if result.encode_seconds else 0.0
    context.add_output_metadata(
        {
            "model_id": model_id,
            "backend": embedding_model.backend,
            "embedding_dim": int(result.vectors[0].shape[0]) if result.vectors else 0,
            "texts_embedded": result.embedded,
            "texts_reused": result.reused,
            "encode_seconds": round(result.encode_seconds, 3),
            "texts_per_second": round(rate, 2),
            "stage_seconds_excluding_model_load": round(result.stage_seconds, 3),
            "model_load_seconds": round(result.load_seconds, 3),
        }
    )
    return frame
