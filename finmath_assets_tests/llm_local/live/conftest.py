"""One local llama.cpp server for the session, through `python -m finmath_assets.llm_local`.

These tests are collected only when asked for: when a path under this folder is named on the
command line (`pytest finmath_assets_tests/llm_local/live`, as `make test-llm` does) or with
FINMATH_LLM_TESTS=1. A plain `pytest` (the default suite) skips the folder, so it never starts
a 2 GB model server.

With FINMATH_LLM_BASE_URL set, that server is used as it is (FINMATH_LLM_MODEL, else the first
model it lists) and left running. Otherwise `python -m finmath_assets.llm_local all --background`
runs on a free port: it fetches and joins the GGUF and builds llama-cpp-python only if they are
missing (the first time takes about 6 minutes, mostly the build), starts the server, and `stop`
ends it after the session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from finmath_assets.llm_local.paths import default_cache, state_paths
from finmath_assets.llm_local.server import MODEL_ALIAS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
# generous: the first run builds llama-cpp-python from source (~5 min on 2 cores)
SETUP_TIMEOUT_SECONDS = 1800


def _opted_in(config: pytest.Config) -> bool:
    if os.environ.get("FINMATH_LLM_TESTS") == "1":
        return True
    base = Path(config.invocation_params.dir)
    for arg in config.invocation_params.args:
        arg = str(arg).split("::", 1)[0]
        if not arg or arg.startswith("-"):
            continue
        path = (base / arg).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if HERE in Path(collection_path).resolve().parents and not _opted_in(config):
        return True
    return None


@dataclass(frozen=True)
class LocalLLM:
    base_url: str
    model: str
    started_here: bool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listed_models(base_url: str) -> list[str]:
    with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=10) as r:
        return [m["id"] for m in json.loads(r.read())["data"]]


def _run_cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "finmath_assets.llm_local", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def llm_server() -> Iterator[LocalLLM]:
    base_url = os.environ.get("FINMATH_LLM_BASE_URL")
    if base_url:
        try:
            models = _listed_models(base_url)
        except OSError as e:
            pytest.fail(f"FINMATH_LLM_BASE_URL={base_url} does not answer GET /models: {e}")
        model = os.environ.get("FINMATH_LLM_MODEL") or (models[0] if models else "")
        yield LocalLLM(base_url.rstrip("/"), model, started_here=False)
        return

    port = _free_port()
    proc = _run_cli("all", "--background", "--port", str(port), timeout=SETUP_TIMEOUT_SECONDS)
    if proc.returncode != 0:
        _run_cli("stop", "--port", str(port), timeout=60)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        pytest.fail(f"`llm_local all --background --port {port}` failed:\n{tail}")
    try:
        yield LocalLLM(f"http://127.0.0.1:{port}/v1", MODEL_ALIAS, started_here=True)
    finally:
        _run_cli("stop", "--port", str(port), timeout=60)
        state_paths(default_cache(), port)[2].unlink(missing_ok=True)


@pytest.fixture(scope="session")
def llm_client(llm_server: LocalLLM):
    from openai import OpenAI

    return OpenAI(
        base_url=llm_server.base_url,
        api_key=os.environ.get("FINMATH_LLM_API_KEY", "not-needed"),
        timeout=300,
        max_retries=0,
    )
