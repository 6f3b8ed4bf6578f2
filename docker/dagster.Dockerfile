# syntax=docker/dockerfile:1
# Dagster images, two targets of one file (build from the repo root):
#   --target user-code  the code location: finmath_assets served over gRPC (`dagster api grpc`);
#                       runs launched from the UI or the daemon execute here, so this is the
#                       only container that writes the DuckDB warehouse
#   --target dagster    webserver and daemon: Dagster itself, no project code (they load the
#                       definitions from the user-code server)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DAGSTER_COMPUTE_LOG_DIR=/opt/dagster/logs
RUN python -m venv /opt/venv \
    && groupadd --system --gid 10001 finmath \
    && useradd --system --uid 10001 --gid finmath --create-home --home-dir /home/finmath finmath \
    && install -d -o finmath -g finmath /opt/dagster/dagster_home /opt/dagster/logs /var/lib/finmath
COPY docker/dagster/dagster.yaml /opt/dagster/dagster_home/dagster.yaml
COPY constraints.txt /tmp/constraints.txt

FROM base AS dagster
# versions pinned by constraints.txt, the same pins as the project's own install
RUN pip install --constraint /tmp/constraints.txt dagster dagster-webserver dagster-postgres \
        dagster-graphql psycopg2-binary
COPY docker/dagster/workspace.yaml /opt/dagster/dagster_home/workspace.yaml
USER 10001:10001
WORKDIR /opt/dagster/dagster_home
EXPOSE 3000
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/opt/dagster/dagster_home/workspace.yaml"]

FROM base AS user-code
WORKDIR /src
COPY pyproject.toml README.md ./
COPY finmath_assets ./finmath_assets
COPY serving ./serving
RUN pip install --constraint /tmp/constraints.txt .
# the sandbox (ground-truth check, LLM evaluation) uses its seccomp fallback: no bubblewrap here,
# Docker's default seccomp profile refuses the user namespaces it needs (core/sandbox.py)
ENV HF_HUB_OFFLINE=1 \
    FINMATH_HOME=/var/lib/finmath \
    FINMATH_MODEL_CACHE_DIR=/opt/finmath/models \
    FINMATH_SANDBOX_ISOLATION=seccomp
# the checked ONNX export of the embedding model, built once here instead of at the first run
RUN python -c "from finmath_assets.settings import Settings; Settings().embedder().encode(['warm-up'])" \
    && chmod -R a+rX /opt/finmath
USER 10001:10001
WORKDIR /var/lib/finmath
EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=10s --start-period=90s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "finmath_assets.definitions"]
