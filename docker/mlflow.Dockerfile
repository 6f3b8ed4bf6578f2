# syntax=docker/dockerfile:1
# The MLflow tracking server: backend store on PostgreSQL (psycopg2), artefacts proxied by the
# server itself (`--artifacts-destination`), so clients need no shared volume or bucket keys.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
COPY constraints.txt /tmp/constraints.txt
# mlflow and psycopg2 at the project's pins; boto3 only for S3/MinIO artefacts (scale-out)
RUN python -m venv /opt/venv \
    && pip install --constraint /tmp/constraints.txt mlflow psycopg2-binary boto3==1.44.8 \
    && groupadd --system --gid 10001 finmath \
    && useradd --system --uid 10001 --gid finmath --create-home --home-dir /home/finmath finmath \
    && install -d -o finmath -g finmath /var/lib/mlflow/artifacts
USER 10001:10001
WORKDIR /home/finmath
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
# the backend store URI carries the password: it comes from the environment, never the image
CMD ["sh", "-c", "exec mlflow server --host 0.0.0.0 --port 5000 --workers \"${MLFLOW_WORKERS:-2}\" --backend-store-uri \"$MLFLOW_BACKEND_STORE_URI\" --artifacts-destination \"${MLFLOW_ARTIFACTS_DESTINATION:-/var/lib/mlflow/artifacts}\""]
