"""Is a server process ours and alive, is a port taken, does /v1/models answer."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, cast

from finmath_assets.llm_local.paths import state_paths


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped) counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def is_our_server(pid: int) -> bool:
    """Whether `pid` runs llama_cpp.server (so a reused pid is never signalled)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)
    return b"llama_cpp.server" in cmdline


def running_pid(cache: Path, port: int) -> int | None:
    """The pid in the server's pid file on `port`, if that process is alive and ours."""
    pid_file, _, _ = state_paths(cache, port)
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        return None
    return pid if pid_alive(pid) and is_our_server(pid) else None


def get_models(base_url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as r:
            return cast(dict[str, Any], json.loads(r.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0
