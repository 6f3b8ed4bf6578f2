"""The ONNX Runtime embedding backend: export a sentence-transformers model once, then encode
without torch.

``sentence-transformers``' own ONNX backend needs ``optimum-onnx``, which pins
``transformers<4.58`` (we run 5.x), so the export is done here with ``torch.onnx.export`` and
the pooling is re-implemented for the pipelines we can reproduce exactly: a Transformer module,
mean or CLS pooling, optional normalisation. Anything else is refused with a clear error rather
than embedded differently.

Every export is checked against the torch model before it is kept (``MAX_EXPORT_DIFF``), and is
written to a temporary folder that is renamed into place, so concurrent processes (the Dagster
run and the inference service) never see half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from finmath_assets.core.checksums import sha256_file

if TYPE_CHECKING:
    import onnxruntime

OPSET = 17
MAX_EXPORT_DIFF = 1e-4  # largest |torch - onnx| accepted on the probe texts (seen: 2e-7)
MIN_INT8_COSINE = 0.8  # int8 vs fp32 on the probe texts: a sanity floor (seen: ~0.95)
PROBE_TEXTS = (
    "What is the present value of $1,000 received in 3 years at 5%?",
    "| Year | Cash flow |\n|---|---|\n| 1 | 100 |\n| 2 | 110 |\n| 3 | 121 |",
)
_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


class OnnxExportError(RuntimeError):
    """The model cannot be exported to, or reproduced by, the ONNX backend."""


@dataclass(frozen=True)
class Pipeline:
    """What the sentence-transformers pipeline does after the transformer."""

    pooling: str  # "mean" or "cls"
    normalize: bool
    max_seq_length: int


def read_pipeline(model_path: Path) -> Pipeline:
    """Read ``modules.json`` and refuse pipelines the ONNX backend would not reproduce."""
    modules_file = model_path / "modules.json"
    if not modules_file.exists():
        raise OnnxExportError(
            f"{model_path} has no modules.json: not a sentence-transformers model"
        )
    modules = json.loads(modules_file.read_text())
    types = [m.get("type", "") for m in modules]
    if (
        not types
        or types[0] != _TRANSFORMER
        or any(t not in {_POOLING, _NORMALIZE} for t in types[1:])
    ):
        raise OnnxExportError(
            f"the ONNX backend supports Transformer -> Pooling -> [Normalize] pipelines; "
            f"{model_path} has {types}: use FINMATH_EMBEDDING_BACKEND=torch"
        )
    pooling_module = next((m for m in modules if m.get("type") == _POOLING), None)
    if pooling_module is None:
        raise OnnxExportError(f"{model_path} has no Pooling module")
    pooling_config = json.loads((model_path / pooling_module["path"] / "config.json").read_text())
    active = [k for k, v in pooling_config.items() if k.startswith("pooling_mode_") and v]
    modes = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
    if len(active) != 1 or active[0] not in modes:
        raise OnnxExportError(
            f"the ONNX backend supports mean or CLS pooling only; {model_path} uses {active}"
        )
    bert_config_file = model_path / "sentence_bert_config.json"
    bert_config = json.loads(bert_config_file.read_text()) if bert_config_file.exists() else {}
    return Pipeline(
        pooling=modes[active[0]],
        normalize=_NORMALIZE in types,
        max_seq_length=int(bert_config.get("max_seq_length", 512)),
    )


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pipeline: Pipeline) -> np.ndarray:
    """Pooling and normalisation exactly as sentence-transformers does them, in float32."""
    if pipeline.pooling == "cls":
        vectors = hidden[:, 0, :]
    else:
        mask = attention_mask[..., None].astype(np.float32)
        vectors = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    if pipeline.normalize:
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return vectors.astype(np.float32, copy=False)


def export(model_path: Path, destination: Path, model_id: str) -> Path:
    """Export ``model_path`` to ``destination/model.onnx`` (once) and return that folder.

    The export is compared with the torch model on ``PROBE_TEXTS`` and refused if any value
    differs by more than ``MAX_EXPORT_DIFF``. An existing, complete export is reused.
    """
    if (destination / "export.json").exists():
        return destination
    import torch
    from transformers import AutoModel, AutoTokenizer

    pipeline = read_pipeline(model_path)
    started = time.perf_counter()
    # eager attention traces to plain MatMul/Softmax ops that ONNX Runtime runs fastest here
    model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    probe = tokenizer(
        list(PROBE_TEXTS),
        padding=True,
        truncation=True,
        max_length=pipeline.max_seq_length,
        return_tensors="pt",
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in probe]

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            hidden: torch.Tensor = self.model(
                input_ids=input_ids, attention_mask=attention_mask, **extra
            ).last_hidden_state
            return hidden

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=destination.parent))
    try:
        onnx_path = staging / "model.onnx"
        axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
            # trace on an unpadded batch: tracing on a padded one bakes that batch's mask
            # handling into the graph (seen with transformers 5: wrong on other paddings)
            trace_inputs = tuple(
                torch.zeros((2, 16), dtype=torch.long)
                if n == "token_type_ids"
                else torch.ones((2, 16), dtype=torch.long)
                for n in names
            )
            torch.onnx.export(
                Wrapper().eval(),  # export restores the wrapper's mode on every submodule
                trace_inputs,
                str(onnx_path),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        with torch.no_grad():
            expected = model(**{n: probe[n] for n in names}).last_hidden_state.numpy()
        expected = pool(expected, probe["attention_mask"].numpy(), pipeline)
        tokenizer.save_pretrained(str(staging / "tokenizer"))
        meta = {
            "model_id": model_id,
            "source": str(model_path),
            "opset": OPSET,
            "torch": torch.__version__,
            "inputs": names,
            "pad_token": tokenizer.pad_token,
            "pad_id": tokenizer.pad_token_id,
            "pooling": pipeline.pooling,
            "normalize": pipeline.normalize,
            "max_seq_length": pipeline.max_seq_length,
            "sha256": sha256_file(onnx_path),
        }
        (staging / "export.json").write_text(json.dumps(meta, indent=2))
        # the whole serving path (tokenizers, not transformers; ONNX Runtime; pooling) against
        # sentence-transformers' path (transformers tokenizer, torch)
        diff = float(np.abs(OnnxEncoder(staging).encode(list(PROBE_TEXTS)) - expected).max())
        if not diff <= MAX_EXPORT_DIFF:
            raise OnnxExportError(
                f"ONNX export of {model_id} differs from torch by {diff:.2e} "
                f"(limit {MAX_EXPORT_DIFF:.0e}); use FINMATH_EMBEDDING_BACKEND=torch"
            )
        meta.update(probe_max_abs_diff=diff, export_seconds=round(time.perf_counter() - started, 2))
        (staging / "export.json").write_text(json.dumps(meta, indent=2))
        _publish(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def _publish(staging: Path, destination: Path) -> None:
    """Rename a finished export into place; if another process got there first, keep theirs."""
    try:
        os.rename(staging, destination)
    except OSError:
        if not (destination / "export.json").exists():
            raise


def quantize(fp32_folder: Path, destination: Path, model_id: str) -> Path:
    """Dynamic int8 quantisation (int8 weights, activations quantised per call) of a checked
    fp32 export, once. It changes the vectors (cosine ~0.95 to fp32), so a model must be trained
    on these very embeddings: the model id says ``int8`` and the cache and registry follow it.
    """
    if (destination / "export.json").exists():
        return destination
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    meta = json.loads((fp32_folder / "export.json").read_text())
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".quantize-", dir=destination.parent))
    try:
        quantize_dynamic(
            fp32_folder / "model.onnx", staging / "model.onnx", weight_type=QuantType.QInt8
        )
        shutil.copytree(fp32_folder / "tokenizer", staging / "tokenizer")
        (staging / "export.json").write_text(
            json.dumps(
                {
                    **meta,
                    "model_id": model_id,
                    "quantization": "onnxruntime quantize_dynamic, QInt8 weights",
                    "quantized_from": meta["model_id"],
                    "sha256": sha256_file(staging / "model.onnx"),
                    "export_seconds": round(time.perf_counter() - started, 2),
                },
                indent=2,
            )
        )
        fp32, int8 = OnnxEncoder(fp32_folder), OnnxEncoder(staging)
        cosine = (fp32.encode(list(PROBE_TEXTS)) * int8.encode(list(PROBE_TEXTS))).sum(axis=1)
        if not float(cosine.min()) >= MIN_INT8_COSINE:
            raise OnnxExportError(
                f"int8 quantisation of {meta['model_id']} moved the probe vectors too far "
                f"(cosine {float(cosine.min()):.3f} < {MIN_INT8_COSINE}); use the onnx backend"
            )
        _publish(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def make_session(onnx_path: Path, threads: int) -> onnxruntime.InferenceSession:
    """A CPU session; ``threads`` = intra-op threads per call (0: ONNX Runtime's default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


Feed = dict[str, np.ndarray]
Runner = Callable[[Feed], np.ndarray]


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_split(threads: int, parallel: int) -> tuple[int, int]:
    """Threads for a call that runs alone and for one of ``parallel`` concurrent calls.

    ``threads`` is the cores to use (0: every core available). A lone call gets all of them; when
    calls overlap each gets its share, so ``parallel`` callers never ask for more threads than
    there are cores (oversubscribed threads wait on each other).
    """
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    cores = threads or available_cores()
    return cores, max(1, cores // parallel)


class OnnxEncoder:
    """Tokenise with the model's own saved ``tokenizer.json`` (the Rust ``tokenizers`` library:
    importing ``transformers`` would import torch), run the ONNX graph, pool.

    ``parallel`` is how many threads may call ``encode`` at once (the service's workers). With
    more than one, a call that starts while no other is running gets every thread (a lone
    request's latency), and overlapping calls get one share each (throughput under load): two
    runners, chosen per call. Both give identical vectors; the kernels split work across threads
    without changing any sum's order (checked in the tests). Runtimes release the GIL, so caller
    threads use the cores in parallel.
    """

    def __init__(self, folder: Path, threads: int = 0, *, parallel: int = 1) -> None:
        from tokenizers import Tokenizer

        meta = json.loads((folder / "export.json").read_text())
        if not {"sha256", "inputs", "pad_id", "pad_token", "pooling"} <= meta.keys():
            raise OnnxExportError(f"{folder} is an export of an older format; delete it")
        if sha256_file(folder / "model.onnx") != meta["sha256"]:
            raise OnnxExportError(
                f"{folder / 'model.onnx'} does not match its recorded checksum; delete {folder} "
                "to export again"
            )
        self.meta = meta
        self.inputs: list[str] = meta["inputs"]
        self.pipeline = Pipeline(meta["pooling"], meta["normalize"], meta["max_seq_length"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer" / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.pipeline.max_seq_length)
        self.tokenizer.enable_padding(pad_id=meta["pad_id"], pad_token=meta["pad_token"])
        alone, shared = thread_split(threads, parallel) if threads or parallel > 1 else (0, 0)
        self._alone = self._runner(folder / "model.onnx", alone, 1)
        self._shared = (
            self._runner(folder / "model.onnx", shared, parallel) if parallel > 1 else self._alone
        )
        self._lock = threading.Lock()
        self._in_flight = 0
        self.dimension = int(self.encode(["probe"]).shape[1])

    def _runner(self, onnx_path: Path, threads: int, parallel: int) -> Runner:
        """A callable that runs the graph with ``threads`` threads per call (0: the runtime's
        default) for up to ``parallel`` concurrent callers."""
        session = make_session(onnx_path, threads)
        return lambda feed: session.run(None, feed)[0]

    @property
    def runners(self) -> int:
        """2 when lone and overlapping calls run differently (``parallel`` > 1), else 1."""
        return 1 if self._shared is self._alone else 2

    def _adaptive(self, feed: Feed) -> np.ndarray:
        with self._lock:
            runner = self._shared if self._in_flight else self._alone
            self._in_flight += 1
        try:
            return runner(feed)
        finally:
            with self._lock:
                self._in_flight -= 1

    def encode(self, texts: list[str]) -> np.ndarray:
        """One padded batch of ``texts`` to pooled vectors, on the runner that fits the load."""
        return self._encode(texts, self._adaptive)

    def run_alone(self, texts: list[str]) -> np.ndarray:
        """``encode`` on the lone-call runner whatever else runs (to compare the runners)."""
        return self._encode(texts, self._alone)

    def run_shared(self, texts: list[str]) -> np.ndarray:
        """``encode`` on the overlapping-call runner."""
        return self._encode(texts, self._shared)

    def _encode(self, texts: list[str], run: Runner) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feed = {n: np.asarray(columns[n], dtype=np.int64) for n in self.inputs}
        return pool(run(feed), feed["attention_mask"], self.pipeline)
