"""`serve`, `status`, `stop`: `python -m llama_cpp.server` on 127.0.0.1 with the GGUF's own chat
template (Qwen's ChatML), in the foreground or in the background with a pid file, a state file
and a log under the cache folder.

Prefill: llama_cpp.server's chat endpoint does NOT continue a final assistant message; it closes
it with <|im_end|> and opens a new assistant turn. A true prefill sends the ChatML prompt
(`chatml_prompt()` in finmath_assets/core/llm/client.py) to /v1/completions, hence
FINMATH_LLM_PREFILL_MODE=chatml in what `serve` prints (docs/llm.md has the measurements).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from finmath_assets.llm_local.build import server_installed
from finmath_assets.llm_local.console import Failure, log
from finmath_assets.llm_local.paths import state_paths
from finmath_assets.llm_local.process import (
    get_models,
    is_our_server,
    pid_alive,
    port_in_use,
    running_pid,
)

MODEL_ALIAS = "qwen2.5-coder-1.5b-instruct"  # = FINMATH_LLM_MODEL's default (docs/configuration.md)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 2
DEFAULT_CTX = 4096
# llama_cpp.server reads every setting from an environment variable of the same name (any case,
# pydantic-settings, no prefix), and uvicorn.run() takes HOST/PORT from the environment over the
# command line; CONFIG_FILE replaces the command line entirely. These are dropped from the
# server's environment so that only the command's flags decide (names from 0.3.36's settings.py).
# fmt: off
SERVER_SETTING_NAMES = frozenset((
    "model", "model_alias", "n_gpu_layers", "split_mode", "main_gpu", "tensor_split", "vocab_only",
    "use_mmap", "use_mlock", "kv_overrides", "rpc_servers", "seed", "n_ctx", "n_batch", "n_ubatch",
    "n_threads", "n_threads_batch", "rope_scaling_type", "rope_freq_base", "rope_freq_scale",
    "yarn_ext_factor", "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow", "yarn_orig_ctx",
    "mul_mat_q", "logits_all", "embedding", "offload_kqv", "flash_attn", "last_n_tokens_size",
    "lora_base", "lora_path", "numa", "chat_format", "chat_template_kwargs", "clip_model_path",
    "cache", "cache_type", "cache_size", "hf_tokenizer_config_path",
    "hf_pretrained_model_name_or_path", "hf_model_repo_id", "draft_model",
    "draft_model_num_pred_tokens", "type_k", "type_v", "verbose", "host", "port", "ssl_keyfile",
    "ssl_certfile", "api_key", "interrupt_requests", "disable_ping_events", "root_path", "models",
    "config_file",
))
# fmt: on


@dataclass(frozen=True)
class ServerOptions:
    python: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    threads: int = DEFAULT_THREADS
    n_ctx: int = DEFAULT_CTX
    logits_all: bool = False
    background: bool = False
    timeout: float = 300.0  # seconds to wait for /v1/models

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


def server_command(opts: ServerOptions, model: Path) -> list[str]:
    return [
        opts.python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        opts.host,
        "--port",
        str(opts.port),
        "--n_threads",
        str(opts.threads),
        "--n_threads_batch",
        str(opts.threads),
        "--n_ctx",
        str(opts.n_ctx),
        # llama_cpp.server defaults logits_all to True: logits for every prompt token, kept in an
        # n_ctx x 151,936 float array (2.3 GiB at 4096). Only logprobs need it.
        "--logits_all",
        "true" if opts.logits_all else "false",
        # no --chat_format: the GGUF's tokenizer.chat_template (Qwen2.5's ChatML) is used
    ]


def server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the variables llama_cpp.server or uvicorn would read as settings."""
    env = {k: v for k, v in environ.items() if k.lower() not in SERVER_SETTING_NAMES}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def env_lines(base_url: str) -> str:
    # chatml: llama_cpp.server's chat endpoint does not continue a final assistant message, so the
    # answering client sends prefilled prompts as ChatML text to /v1/completions
    return (
        f"FINMATH_LLM_BASE_URL={base_url}\nFINMATH_LLM_MODEL={MODEL_ALIAS}\n"
        "FINMATH_LLM_PREFILL_MODE=chatml"
    )


def _wait_for_earlier(opts: ServerOptions, pid: int, log_file: Path) -> None:
    """One of ours is running: wait for it if it is still loading, never start a second."""
    deadline = time.monotonic() + opts.timeout
    while not get_models(opts.base_url, timeout=1.0):
        if not pid_alive(pid):
            raise Failure(f"the server started earlier (pid {pid}) exited; see {log_file}")
        if time.monotonic() > deadline:
            raise Failure(
                f"the server started earlier (pid {pid}) does not answer {opts.base_url}/models; "
                f"see {log_file}, and `stop --port {opts.port}` it"
            )
        time.sleep(0.5)


def _start(opts: ServerOptions, cmd: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    env = server_env(os.environ)
    if not opts.background:
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
    with log_file.open("ab") as lf:
        lf.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        lf.flush()
        return subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=lf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_until_ready(opts: ServerOptions, proc: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + opts.timeout
    while True:
        if proc.poll() is not None:
            tail = ""
            if opts.background and log_file.exists():
                tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
            raise Failure(
                f"the server exited with code {proc.returncode} before answering"
                + (f"; last lines of {log_file}:\n{tail}" if tail else " (see its output above)")
            )
        if get_models(opts.base_url, timeout=1.0):
            return
        if time.monotonic() > deadline:
            raise Failure(
                f"the server did not answer {opts.base_url}/models within {opts.timeout:.0f}s "
                f"(pid {proc.pid}; log {log_file if opts.background else 'above'}); "
                "stop it with `stop` and look at the log, or pass a larger --timeout"
            )
        time.sleep(0.5)


def _run_in_foreground(proc: subprocess.Popen[bytes]) -> None:
    """Forward SIGTERM to the server, stop it on Ctrl-C, return when it exits."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    while True:
        try:
            proc.wait()
            return
        except KeyboardInterrupt:
            log("serve: stopping...")
            proc.send_signal(signal.SIGINT)


def serve(opts: ServerOptions, model: Path, cache: Path) -> None:
    """Start the server (or find ours already running) and wait until it answers; in the
    foreground, then wait for it to exit."""
    base_url = opts.base_url
    pid_file, state_file, log_file = state_paths(cache, opts.port)

    pid = running_pid(cache, opts.port)
    if pid is not None:
        _wait_for_earlier(opts, pid, log_file)
        log(f"serve: already running (pid {pid}) at {base_url}")
        log(env_lines(base_url))
        return
    if not model.exists():
        raise Failure(
            f"{model} does not exist: run `python -m finmath_assets.llm_local fetch` first"
        )
    reason = server_installed(opts.python)
    if reason is not None:
        raise Failure(f"{reason}: run `python -m finmath_assets.llm_local install-server` first")
    if port_in_use(opts.host, opts.port):
        raise Failure(
            f"{opts.host}:{opts.port} is already in use by another process"
            + (" (answering /v1/models)" if get_models(base_url) else "")
            + ": stop it, or pass --port"
        )

    cmd = server_command(opts, model)
    cache.mkdir(parents=True, exist_ok=True)
    log(f"serve: {' '.join(cmd)}")
    t0 = time.monotonic()
    proc = _start(opts, cmd, log_file)
    pid_file.write_text(f"{proc.pid}\n")
    state = {
        "pid": proc.pid,
        "base_url": base_url,
        "model": MODEL_ALIAS,
        "gguf": str(model),
        "log": str(log_file) if opts.background else None,
        "command": cmd,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    state_file.write_text(json.dumps(state, indent=2) + "\n")

    def cleanup() -> None:
        pid_file.unlink(missing_ok=True)
        state_file.unlink(missing_ok=True)

    try:
        _wait_until_ready(opts, proc, log_file)
    except BaseException:
        if proc.poll() is None and not opts.background:
            proc.terminate()
        # a server that exited is never left behind in the pid file; one still loading in the
        # background is (so `stop` can end it)
        if not opts.background or proc.poll() is not None:
            cleanup()
        raise
    log(f"serve: ready in {time.monotonic() - t0:.1f}s, pid {proc.pid}, model {MODEL_ALIAS}")
    log(env_lines(base_url))
    if opts.background:
        log(
            f"serve: running in the background; log {log_file}, pid file {pid_file}; "
            f"`python -m finmath_assets.llm_local stop --port {opts.port}` stops it"
        )
        return
    try:
        _run_in_foreground(proc)
    finally:
        cleanup()


def status(cache: Path, host: str, port: int) -> None:
    base_url = f"http://{host}:{port}/v1"
    pid = running_pid(cache, port)
    models = get_models(base_url)
    if pid is None and models is None:
        raise Failure(f"no server on {base_url} (start one with `serve`)")
    ids = [m.get("id") for m in (models or {}).get("data", [])]
    who = f"pid {pid}" if pid is not None else "not started by this script"
    log(f"status: {base_url} ({who}); answering: {'yes, models ' + str(ids) if models else 'no'}")
    if models:
        log(env_lines(base_url))


def stop_server(cache: Path, port: int, timeout: float = 20.0) -> bool:
    """SIGTERM (SIGKILL after `timeout`) the server in the pid file on `port` if it is alive and
    ours; the pid and state files are removed either way. True when a server was stopped."""
    pid_file, state_file, _ = state_paths(cache, port)
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        pid_file.unlink()
        return False
    stopped = False
    if pid_alive(pid) and is_our_server(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        stopped = True
    pid_file.unlink(missing_ok=True)
    state_file.unlink(missing_ok=True)
    return stopped


def stop(cache: Path, port: int) -> None:
    pid_file, _, _ = state_paths(cache, port)
    pid = pid_file.read_text().strip() if pid_file.exists() else None
    if stop_server(cache, port):
        log(f"stop: stopped the server on port {port} (pid {pid})")
    elif pid:
        log(f"stop: pid {pid} from {pid_file} was not running; removed the stale pid file")
    else:
        log(f"stop: no server started by this script on port {port} ({pid_file} absent)")
