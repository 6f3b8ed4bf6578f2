"""Run untrusted Python (a FinanceMath ``python_solution``, model-written programs) in a separate,
limited process and return the number its ``solution()`` returns.

Two isolations, chosen by :attr:`Limits.isolation` (``auto``: bubblewrap when it is installed and
works here, else the fallback):

- ``bubblewrap`` (Debian ``bubblewrap``): read-only root, a private tmpfs ``/tmp`` (the only
  writable place), every namespace unshared (no network), capabilities dropped, uid 65534 inside
  its user namespace, killed with the parent.
- ``seccomp`` (needs nothing from the host beyond the kernel and libseccomp, which every Debian
  has as a dependency of apt): no namespaces, so it also works in a container or where user
  namespaces are off; the filter below also refuses sockets, ``ptrace``, mounts and every
  syscall that creates, writes or removes a file. Weaker: the filesystem stays readable, and
  :attr:`SandboxResult.isolation` says so.

Both: ``python -I -B``, a new session killed as a group at the wall-clock limit, rlimits on
address space, CPU seconds, file size and core dumps, and a seccomp filter that refuses ``fork``,
``vfork`` and any ``clone`` that is not a thread (threads still work: numpy and scipy need them;
RLIMIT_NPROC would not bind a caller that is root). The filter is compiled in the parent and
loaded by the child's runner with ``prctl`` before the program runs: nothing runs in the
forked child before ``exec`` (a ``preexec_fn`` fails in a parent that has loaded torch and
onnxruntime, and is unsafe in any threaded parent).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
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
Isolation = Literal["auto", "bubblewrap", "seccomp"]
MARKER = "__FINMATH_RESULT__"
LABELS = {
    "bubblewrap": "bubblewrap",
    "seccomp": "seccomp (weaker: no namespaces, filesystem readable)",
}

# Runs first in the child, as trusted code: limits, then the filter, then the program.
_RUNNER = f"""
import ctypes, json, math, resource, sys
folder = sys.argv[1]
config = json.load(open(folder + "/limits.json"))
source = open(folder + "/solution.py", encoding="utf-8").read()
bpf = open(folder + "/filter.bpf", "rb").read()
for name, value in config["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))

class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

libc = ctypes.CDLL(None, use_errno=True)
program = SockFprog(len(bpf) // 8, bpf)
if libc.prctl(38, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) or \\
        libc.prctl(22, ctypes.c_ulong(2), ctypes.byref(program), ctypes.c_ulong(0),
                   ctypes.c_ulong(0)):  # PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP FILTER
    raise SystemExit("sandbox: the seccomp filter could not be loaded: errno "
                     + str(ctypes.get_errno()))
del ctypes, libc, program, bpf, config
namespace = {{}}
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
    isolation: Isolation = "auto"


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    value: float | None
    output: str  # stdout + stderr, truncated
    seconds: float
    isolation: str  # a value of LABELS


class SandboxUnavailableError(RuntimeError):
    """``bubblewrap`` was asked for and cannot run here."""


@functools.cache
def _bubblewrap_works(bwrap: str) -> bool:
    """bubblewrap is installed and may create its namespaces here (a container's default seccomp
    profile or a kernel without unprivileged user namespaces refuses them)."""
    probe = [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--uid", "65534", "--gid", "65534",
             "--die-with-parent", "--new-session", "--cap-drop", "ALL", "/bin/true"]  # fmt: skip
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve(isolation: Isolation = "auto") -> Literal["bubblewrap", "seccomp"]:
    """The isolation that ``run_solution`` will use for this preference."""
    bwrap = shutil.which("bwrap")
    works = bwrap is not None and _bubblewrap_works(bwrap)
    if isolation == "bubblewrap" and not works:
        raise SandboxUnavailableError(
            "sandbox isolation 'bubblewrap' was asked for but "
            + ("bwrap is not on PATH" if bwrap is None else f"{bwrap} cannot create namespaces")
            + ": install Debian's bubblewrap (make system-deps), or set "
            "FINMATH_SANDBOX_ISOLATION=auto to use the seccomp fallback"
        )
    if isolation == "seccomp":
        return "seccomp"
    return "bubblewrap" if works else "seccomp"


def isolation(preference: Isolation = "auto") -> str:
    """The label of the isolation a run with this preference gets."""
    return LABELS[resolve(preference)]


_CLONE_THREAD = 0x00010000
_WRITE_FLAGS = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND)
_NEVER = ("fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev", "io_uring_setup",
          "socket", "socketpair")  # fmt: skip
# without bubblewrap's read-only root and private /tmp: nothing may change the filesystem
_NEVER_WITHOUT_NAMESPACES = (
    "creat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir",
    "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "chown", "fchown",
    "lchown", "fchownat", "truncate", "mknod", "mknodat", "setxattr", "lsetxattr", "fsetxattr",
    "removexattr", "lremovexattr", "fremovexattr", "utime", "utimes", "utimensat", "futimesat",
    "mount", "umount2", "pivot_root", "chroot", "setns", "unshare", "kill", "reboot",
    "init_module", "finit_module", "delete_module", "kexec_load", "swapon", "swapoff",
)  # fmt: skip


@functools.cache
def _filter(kind: Literal["bubblewrap", "seccomp"]) -> bytes:
    """The compiled BPF program (built once per process, in the parent)."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)

    def deny(name: str, *args: object, code: int = errno.EPERM) -> None:
        # EINVAL: a syscall this architecture does not have (fork on arm64)
        with contextlib.suppress(OSError):
            rules.add_rule(seccomp.ERRNO(code), name, *args)

    for name in _NEVER:
        deny(name)
    deny("clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    deny("clone3", code=errno.ENOSYS)  # the C library falls back to clone, whose flags we see
    if kind == "seccomp":
        for name in _NEVER_WITHOUT_NAMESPACES:
            deny(name)
        deny("openat2", code=errno.ENOSYS)  # its flags sit in a struct the filter cannot read
        for flag in _WRITE_FLAGS:
            deny("open", seccomp.Arg(1, seccomp.MASKED_EQ, flag, flag))
            deny("openat", seccomp.Arg(2, seccomp.MASKED_EQ, flag, flag))
    with tempfile.TemporaryFile() as out:
        rules.export_bpf(out)
        out.seek(0)
        return out.read()


def _symlink_chain(path: Path) -> list[Path]:
    """``path`` and every link it passes through to the real file (``.venv/bin/python`` ->
    ``python3`` -> a PATH folder's ``python3`` -> ``/usr/bin/python3.11``)."""
    chain = [path]
    while chain[-1].is_symlink() and len(chain) < 40:
        chain.append(chain[-1].parent / chain[-1].readlink())
    return chain


def _interpreter_paths_under_tmp() -> list[str]:
    """The interpreter's folders that the private ``/tmp`` would hide (a checkout or venv under
    /tmp, as in a CI clone, or a link to the interpreter kept there): bound back in, read-only."""
    paths = {sys.prefix, sys.base_prefix}
    paths |= {str(link.parent) for link in _symlink_chain(Path(sys.executable).absolute())}
    # a path under /tmp, or a link under /tmp to elsewhere (a venv linked into a worktree)
    return sorted(
        p for p in paths if any(q.is_relative_to("/tmp") for q in (Path(p), Path(p).resolve()))
    )


def _command(folder: Path, kind: Literal["bubblewrap", "seccomp"]) -> list[str]:
    python = [sys.executable, "-I", "-B"]
    if kind == "seccomp":
        return [*python, str(folder / "runner.py"), str(folder)]
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
        "--chdir", "/tmp",
        *python, "/tmp/program/runner.py", "/tmp/program",
    ]  # fmt: skip


def run_solution(source: str, limits: Limits | None = None) -> SandboxResult:
    """Execute ``source`` (which must define ``solution()``) and return what it computed."""
    limits = limits or Limits()
    kind = resolve(limits.isolation)
    label = LABELS[kind]
    mb = 1024 * 1024
    rlimits = {
        "RLIMIT_AS": limits.memory_mb * mb,
        "RLIMIT_CPU": limits.cpu_seconds,
        "RLIMIT_FSIZE": limits.file_mb * mb,
        "RLIMIT_CORE": 0,
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="finmath-sandbox-") as tmp:
        folder = Path(tmp)
        (folder / "runner.py").write_text(_RUNNER, encoding="utf-8")
        (folder / "solution.py").write_text(source, encoding="utf-8")
        (folder / "limits.json").write_text(json.dumps({"rlimits": rlimits}), encoding="utf-8")
        (folder / "filter.bpf").write_bytes(_filter(kind))
        folder.chmod(0o755)
        process = subprocess.Popen(
            _command(folder, kind),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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
        return SandboxResult("timeout", None, output[-2000:], seconds, label)
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if process.returncode != 0 or not lines:
        return SandboxResult("error", None, output[-2000:], seconds, label)
    value = json.loads(lines[-1][len(MARKER) :])["value"]
    status: Status = "ok" if value is not None else "no_number"
    return SandboxResult(status, value, output[-2000:], seconds, label)
