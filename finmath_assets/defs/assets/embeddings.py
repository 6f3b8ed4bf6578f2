"""validated_records -> question_embeddings, with a content-addressed embedding cache.

The cache (``finmath.embedding_cache``) is keyed by SHA-256 of (model id, text): re-running with
unchanged data embeds nothing (and never loads the model); changing one record embeds one text;
switching models embeds everything once per model.
"""

import time

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from finmath_assets.core.text import record_text, text_hash
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources import EmbeddingModelResource

CACHE_TABLE = f"{KEY_PREFIX}.embedding_cache"


def _read_cache(warehouse: DuckDBResource, hashes: list[str]) -> dict[str, np.ndarray]:
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
    warehouse: DuckDBResource, model_id: str, hashes: list[str], vectors: np.ndarray
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


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name="featurization",
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "pytorch"},
    ins={"validated_records": dg.AssetIn(key=[KEY_PREFIX, "validated_records"])},
    description="One L2-normalised sentence embedding (MiniLM, 384-d by default) per validated "
    "record, of the question followed by its tables.",
)
def question_embeddings(
    context: dg.AssetExecutionContext,
    validated_records: pd.DataFrame,
    embedding_model: EmbeddingModelResource,
    warehouse: DuckDBResource,
) -> pd.DataFrame:
    stage_started = time.perf_counter()
    model_id = embedding_model.model_id
    texts = [
        record_text(question, list(tables) if tables is not None else [])
        for question, tables in zip(
            validated_records["question"], validated_records["tables"], strict=True
        )
    ]
    hashes = [text_hash(text, model_id) for text in texts]
    cached = _read_cache(warehouse, hashes)
    # de-duplicate: identical texts are embedded once
    missing = list(dict.fromkeys(h for h in hashes if h not in cached))
    text_by_hash = dict(zip(hashes, texts, strict=True))
    context.log.info(
        f"{len(hashes) - len(missing)} texts cached, {len(missing)} to embed ({model_id})"
    )

    encode_seconds = 0.0
    load_seconds = 0.0
    if missing:
        embedder = embedding_model.get_embedder()

        def progress(done: int, total: int, seconds: float) -> None:
            rate = done / seconds if seconds else 0.0
            context.log.info(f"embedded {done}/{total} texts ({rate:.1f} texts/s)")

        _ = embedder.model  # load outside the timed encode
        load_seconds = embedder.load_seconds
        started = time.perf_counter()
        vectors = embedder.encode([text_by_hash[h] for h in missing], progress=progress)
        encode_seconds = time.perf_counter() - started
        _write_cache(warehouse, model_id, missing, vectors)
        cached.update(zip(missing, vectors, strict=True))

    embeddings = [cached[h] for h in hashes]
    dims = {vector.shape[0] for vector in embeddings}
    if len(dims) > 1:
        raise ValueError(
            f"embedding cache holds vectors of several sizes {sorted(dims)} for {model_id}"
        )
    frame = pd.DataFrame(
        {
            "question_id": validated_records["question_id"].to_numpy(),
            "text_hash": hashes,
            "model_id": model_id,
            "embedding": embeddings,
        }
    )
    stage_seconds = time.perf_counter() - stage_started - load_seconds
    context.add_output_metadata(
        {
            "model_id": model_id,
            "embedding_dim": dims.pop() if dims else 0,
            "texts_embedded": len(missing),
            "texts_reused": len(hashes) - len(missing),
            "encode_seconds": round(encode_seconds, 3),
            "texts_per_second": round(len(missing) / encode_seconds, 2) if encode_seconds else 0.0,
            "stage_seconds_excluding_model_load": round(stage_seconds, 3),
            "model_load_seconds": round(load_seconds, 3),
        }
    )
    return frame
