"""The OpenVINO embedding backend: the checked ONNX export (``core.onnx_encoder``) compiled by
OpenVINO, in bfloat16 where the CPU computes it natively and in float32 elsewhere.

Same tokeniser, same graph, same pooling as the ONNX Runtime backend; only the runtime and the
arithmetic differ. bf16 vectors are not the fp32 ones (cosine ≥ 0.9999 to them on FinanceMath),
so the precision is part of the model id and a model is trained on the vectors it is served with
(the accuracy comparison is in docs/performance.md).
"""

from __future__ import annotations

import importlib.metadata
import queue
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from finmath_assets.core.onnx_encoder import Feed, OnnxEncoder, OnnxExportError, Runner

Precision = Literal["bf16", "f32"]


@cache
def _core() -> Any:
    import openvino

    return openvino.Core()


@cache
def native_precision() -> Precision:
    """bf16 when this CPU has native bfloat16 arithmetic (AVX-512 BF16 or AMX), else f32."""
    capabilities = _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in capabilities else "f32"


def runtime_id() -> str:
    """What goes into the embedding model id: runtime, its version and the precision it runs in
    here (a bf16 kernel may round differently in another OpenVINO release)."""
    return f"openvino-{importlib.metadata.version('openvino')}-{native_precision()}"


class OpenVinoEncoder(OnnxEncoder):
    """``OnnxEncoder`` with OpenVINO's CPU plugin running the graph.

    Every compiled model has one stream, so a call runs in the calling thread (plus helper
    threads when it has more than one): no hand-off to a stream thread, whose wake-ups and
    spin-waits cost ~10 % of the throughput under load. The lone-call runner is one model with
    every thread; the shared runner is one single-thread model per concurrent caller, lent to
    one call at a time. Threads are not pinned to cores: two pinned single-thread models
    land on the same core (measured: half the throughput), and a service shares its host.
    """

    def _runner(self, onnx_path: Path, threads: int, parallel: int) -> Runner:
        free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(parallel):
            free.put(self._compile(onnx_path, threads).create_infer_request())

        def run(feed: Feed) -> np.ndarray:
            request = free.get()  # a free model; with more callers than models, wait for one
            try:
                # shared: OpenVINO reads our arrays and writes its own output buffer without
                # copies; the buffer is reused by the request's next call, so copy the result
                outputs = request.infer(feed, share_inputs=True, share_outputs=True)
                return np.array(outputs[0], copy=True)
            finally:
                free.put(request)

        return run

    @staticmethod
    def _compile(onnx_path: Path, threads: int) -> Any:
        precision = native_precision()
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "ENABLE_CPU_PINNING": "NO",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        compiled = _core().compile_model(str(onnx_path), "CPU", config)
        actual = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if ("bfloat16" if precision == "bf16" else "float32") not in actual:
            raise OnnxExportError(
                f"OpenVINO compiled the embedding model in {actual}, not {precision}: the vectors "
                "would not match the model id; use FINMATH_EMBEDDING_BACKEND=onnx"
            )
        return compiled
