"""Run untrusted Python (a FinanceMath ``python_solution``, later model-written programs) in a
separate, limited process and return the number its ``solution()`` returns.

With bubblewrap (Debian ``bubblewrap``): read-only root, a private tmpfs ``/tmp`` (the only
writable place), every namespace unshared (no network), capabilities dropped, an unprivileged uid
inside its user namespace, killed with the parent. Always: ``python -I`` (isolated mode), and
rlimits on address space, CPU seconds and file size, plus a wall-clock timeout after which the
whole process group is killed; and a seccomp filter (libseccomp through ``pyseccomp``) that
refuses ``fork``, ``vfork`` and any ``clone`` that is not a thread, so a program cannot start
processes (threads still work: numpy and scipy need them). RLIMIT_NPROC would not do: it does
not bind a process whose host uid is root, which the sandboxed process is when the caller is.
Without bubblewrap the fallback is ``unshare -rn`` (no network) with the same rlimits and filter:
weaker (the filesystem is reachable), and ``SandboxResult.isolation`` says so.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["ok", "error", "timeout", "no_number"]
MARKER = "__FINMATH_RESULT__"

_RUNNER = f"""
import json, math, sys
namespace = {{}}
source = open(sys.argv[1], encoding="utf-8").read()
exec(compile(source, "<solution>", "exec"), namespace)
if "solution" not in namespace:
    raise SystemExit("the program defines no solution()")
value = namespace["solution"]()
try:
    number = float(value)
except (TypeError, ValueError):
    number = None
if number is not None and not math.isfinite(number):
    number = None
print("{MARKER}" + json.dumps({{"value": number, "repr": repr(value)[:200]}}))
"""


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 5.0
    cpu_seconds: int = 3
    memory_mb: int = 512
    file_mb: int = 16


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    value: float | None
    output: str  # stdout + stderr, truncated
    seconds: float
    isolation: str  # "bubblewrap" or "unshare (weaker: filesystem reachable)"


def isolation() -> str:
    if shutil.which("bwrap"):
        return "bubblewrap"
    return "unshare (weaker: filesystem reachable)"


_CLONE_THREAD = 0x00010000


def _no_process_filter():
    """A seccomp filter: every syscall allowed except creating a process (EPERM); ``clone3``
    answers ENOSYS so the C library falls back to ``clone``, whose flags the filter can see."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in ("fork", "vfork"):
        rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
    no_thread = seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0)
    rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", no_thread)
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return rules


def _limit(limits: Limits, *, load_filter: bool) -> None:  # runs in the child before exec
    os.setsid()
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if load_filter:  # without bubblewrap: the filter binds `unshare` and, through exec, python
        _no_process_filter().load()


def _interpreter_paths_under_tmp() -> list[str]:
    """The interpreter's folders that the private ``/tmp`` would hide (a checkout or venv under
    /tmp, as in a CI clone): bound back in, read-only."""
    paths = {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent)}
    return sorted(p for p in paths if Path(p).resolve().is_relative_to("/tmp"))


def _command(folder: Path, seccomp_fd: int | None) -> list[str]:
    python = [sys.executable, "-I"]
    if seccomp_fd is not None:
        rebind = [arg for p in _interpreter_paths_under_tmp() for arg in ("--ro-bind", p, p)]
        return [
            "bwrap",
            "--ro-bind", "/", "/",
            "--tmpfs", "/tmp",
            *rebind,
            "--ro-bind", str(folder), "/tmp/program",
            "--dev", "/dev",
            "--proc", "/proc",
            "--unshare-all",
            "--uid", "65534",
            "--gid", "65534",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--seccomp", str(seccomp_fd),  # bubblewrap needs clone itself: loaded last
            "--chdir", "/tmp",
            *python, "/tmp/program/runner.py", "/tmp/program/solution.py",
        ]  # fmt: skip
    return [
        "unshare", "-rn",
        *python, str(folder / "runner.py"), str(folder / "solution.py"),
    ]  # fmt: skip


def run_solution(source: str, limits: Limits | None = None) -> SandboxResult:
    """Execute ``source`` (which must define ``solution()``) and return what it computed."""
    limits = limits or Limits()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="finmath-sandbox-") as tmp:
        folder = Path(tmp)
        (folder / "runner.py").write_text(_RUNNER, encoding="utf-8")
        (folder / "solution.py").write_text(source, encoding="utf-8")
        folder.chmod(0o755)
        bubblewrap = shutil.which("bwrap") is not None
        with tempfile.TemporaryFile() as bpf:  # the filter, read by bubblewrap at start-up
            if bubblewrap:
                _no_process_filter().export_bpf(bpf)
                bpf.seek(0)
            process = subprocess.Popen(
                _command(folder, bpf.fileno() if bubblewrap else None),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: _limit(limits, load_filter=not bubblewrap),
                pass_fds=(bpf.fileno(),) if bubblewrap else (),
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1"},
            )
        try:
            raw, _ = process.communicate(timeout=limits.wall_seconds)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raw, _ = process.communicate()
            timed_out = True
    output = raw.decode("utf-8", errors="replace")
    seconds = time.perf_counter() - started
    if timed_out:
        return SandboxResult("timeout", None, output[-2000:], seconds, isolation())
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if process.returncode != 0 or not lines:
        return SandboxResult("error", None, output[-2000:], seconds, isolation())
    value = json.loads(lines[-1][len(MARKER) :])["value"]
    status: Status = "ok" if value is not None else "no_number"
    return SandboxResult(status, value, output[-2000:], seconds, isolation())
