"""The OpenVINO embedding backend: the checked ONNX export (``core.onnx_encoder``) compiled by
OpenVINO, in bfloat16 where the CPU computes it natively and in float32 elsewhere.

Same tokeniser, same graph, same pooling as the ONNX Runtime backend; only the runtime and the
arithmetic differ. bf16 vectors are not the fp32 ones (cosine ≥ 0.9999 to them on FinanceMath),
so the precision is part of the model id and a model is trained on the vectors it is served with
(the accuracy comparison is in docs/performance.md).
"""

from __future__ import annotations

import importlib.metadata
import threading
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

    One compiled model per runner: the lone-call runner is one stream with every thread; the
    shared runner has one stream per concurrent caller (OpenVINO runs one request per stream at a
    time, so two callers on a one-stream model would queue). Each caller thread keeps its own
    infer request per compiled model.
    """

    def _runner(self, onnx_path: Path, threads: int, parallel: int) -> Runner:
        precision = native_precision()
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "NUM_STREAMS": str(parallel),
            "PERFORMANCE_HINT": "LATENCY" if parallel == 1 else "THROUGHPUT",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads * parallel)
        compiled = _core().compile_model(str(onnx_path), "CPU", config)
        actual = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if ("bfloat16" if precision == "bf16" else "float32") not in actual:
            raise OnnxExportError(
                f"OpenVINO compiled the embedding model in {actual}, not {precision}: the vectors "
                "would not match the model id; use FINMATH_EMBEDDING_BACKEND=onnx"
            )
        local = threading.local()

        def run(feed: Feed) -> np.ndarray:
            request = getattr(local, "request", None)
            if request is None:
                request = local.request = compiled.create_infer_request()
            # shared: OpenVINO reads our arrays and writes its own output buffer without copies
            # (~10 % more texts/s under load); the buffer is reused by the next call, so copy it
            outputs = request.infer(feed, share_inputs=True, share_outputs=True)
            return np.array(outputs[0], copy=True)

        return run
