# syntax=docker/dockerfile:1
# The inference API (serving/): FastAPI under uvicorn, CPU-only torch, the MiniLM model and its
# checked ONNX export baked into the image, running as an unprivileged user.
#   docker build -f docker/inference.Dockerfile -t finmath-inference .   (from the repo root)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # torch from PyTorch's CPU index: the PyPI wheel is a multi-GB CUDA build
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY finmath_assets ./finmath_assets
COPY serving ./serving
# every version comes from constraints.txt (the same pins as `make install`)
RUN pip install --constraint constraints.txt .
# export the embedding model to ONNX once, at build time (checked against sentence-transformers
# on probe texts); the service then loads it from FINMATH_MODEL_CACHE_DIR
ENV HF_HUB_OFFLINE=1 FINMATH_MODEL_CACHE_DIR=/opt/finmath/models
RUN python -c "from finmath_assets.settings import Settings; Settings().embedder().encode(['warm-up'])"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 finmath \
    && useradd --system --uid 10001 --gid finmath --create-home --home-dir /home/finmath finmath \
    && install -d -o finmath -g finmath /var/lib/finmath
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/finmath/models /opt/finmath/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    FINMATH_HOME=/var/lib/finmath \
    FINMATH_MODEL_CACHE_DIR=/opt/finmath/models \
    # /ask runs model-written programs in the sandbox's seccomp fallback: no bubblewrap here,
    # Docker's default seccomp profile refuses the user namespaces it needs (core/sandbox.py)
    FINMATH_SANDBOX_ISOLATION=seccomp \
    # uvicorn's worker processes (its --workers default); each runs FINMATH_SERVING_WORKERS
    # inference threads. Prefer one process per container and more replicas: metrics are
    # per process.
    WEB_CONCURRENCY=1
USER 10001:10001
WORKDIR /home/finmath
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["uvicorn", "serving.app:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
