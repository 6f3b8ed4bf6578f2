"""`install-server`: llama-cpp-python[server] built from PyPI's sdist into the venv for this CPU,
then a short decode on the model to prove the build runs here."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from finmath_assets.llm_local.console import Failure, log
from finmath_assets.llm_local.paths import ROOT

LLAMA_CPP_VERSION = "0.3.36"
LLAMA_CPP_REQUIREMENT = f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}"
# what the server extra needs at import time, besides llama_cpp itself
SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


def server_installed(python: str) -> str | None:
    """None when llama_cpp.server at the pinned version imports in `python`; else the reason."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        try:
            version = importlib.metadata.version("llama-cpp-python")
        except importlib.metadata.PackageNotFoundError:
            return "llama-cpp-python is not installed"
        if version != LLAMA_CPP_VERSION:
            return f"llama-cpp-python {version} is installed, not {LLAMA_CPP_VERSION}"
    code = (
        "import importlib.metadata as m, sys\n"
        f"v = m.version('llama-cpp-python')\n"
        f"sys.exit(f'llama-cpp-python {{v}} is installed, not {LLAMA_CPP_VERSION}') "
        f"if v != '{LLAMA_CPP_VERSION}' else None\n"
        f"import llama_cpp, {', '.join(SERVER_MODULES)}\n"
        "import llama_cpp.server.app\n"
    )
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"import check exited {proc.returncode}"


# The build: llama.cpp's default, GGML_NATIVE=ON (-march=native), also compiles its AMX kernels on
# CPUs that advertise AMX (Sapphire Rapids and later). On this workplace's VMs (Firecracker) the
# CPU advertises amx_tile/amx_int8 but the guest cannot use them: the first matrix multiplication
# dies with a general protection fault at `ldtilecfg` in ggml_backend_amx_mul_mat. So the build is
# GGML_NATIVE=OFF with each x86 instruction-set option of ggml turned on exactly when
# /proc/cpuinfo lists it, and AMX always off: "native without AMX". Measured here, the AVX-512
# options double decode speed over a plain GGML_NATIVE=OFF (AVX2) build. A CMAKE_ARGS already in
# the environment is used as it is (e.g. CMAKE_ARGS=-DGGML_NATIVE=OFF for a portable AVX2 build).
_GGML_X86_OPTIONS = {  # ggml option -> the /proc/cpuinfo flags it needs
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_BMI2": ("bmi2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512vbmi",),
    "GGML_AVX512_VNNI": ("avx512_vnni",),
    "GGML_AVX512_BF16": ("avx512_bf16",),
}
_GGML_AMX_OFF = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cmake_args_for_this_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """-DGGML_NATIVE=OFF plus ggml's x86 options as this CPU supports them, AMX off."""
    args = ["-DGGML_NATIVE=OFF"]
    try:
        text = cpuinfo.read_text()
    except OSError:
        return args[0]
    flags_line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    flags = set(flags_line.partition(":")[2].split())
    if not flags:  # not x86 (or no flags line): ggml's own generic defaults
        return args[0]
    for option, needed in _GGML_X86_OPTIONS.items():
        args.append(f"-D{option}={'ON' if all(f in flags for f in needed) else 'OFF'}")
    args += [f"-D{option}=OFF" for option in _GGML_AMX_OFF]
    return " ".join(args)


_SMOKE = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, verbose=False)
out = llm.create_completion("def add(a, b):\\n    " + "# add two numbers " * 8, max_tokens=2)
print(repr(out["choices"][0]["text"]))
"""


def decode_smoke(python: str, model: Path) -> str | None:
    """None when the installed llama_cpp evaluates a short prompt on `model`; else what failed."""
    proc = subprocess.run(
        [python, "-c", _SMOKE, str(model)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        return (
            f"evaluating a prompt killed the process with {signal.Signals(-proc.returncode).name}"
        )
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def _pip_install(python: str, rebuild: bool) -> None:
    if rebuild:
        subprocess.run(
            [python, "-m", "pip", "uninstall", "-y", "-q", "llama-cpp-python"], check=False
        )
    # --no-cache-dir: pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS, so a cached
    # wheel built with other flags would otherwise be reused
    cmd = [python, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check"]
    constraints = ROOT / "constraints.txt"
    if constraints.exists():  # keep the project's pins (numpy, fastapi, uvicorn, ...)
        cmd += ["-c", str(constraints)]
    cmd.append(LLAMA_CPP_REQUIREMENT)
    env = dict(os.environ)
    if not env.get("CMAKE_ARGS"):
        env["CMAKE_ARGS"] = cmake_args_for_this_cpu()
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    log(f"install-server: CMAKE_ARGS={env['CMAKE_ARGS']!r} {' '.join(cmd)}")
    log(
        "install-server: this compiles llama.cpp from the sdist (a C/C++ compiler is needed; "
        "pip brings cmake): about 8 minutes on 2 cores, with no output while it compiles..."
    )
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env)
    dt = time.monotonic() - t0
    if proc.returncode != 0:
        raise Failure(
            f"pip install {LLAMA_CPP_REQUIREMENT} failed (exit {proc.returncode}) after "
            f"{dt:.0f}s. Fix: a compiler is needed (`apt-get install -y build-essential`); "
            "rerun with `pip install -v ...` to see the cmake error."
        )
    reason = server_installed(python)
    if reason is not None:
        raise Failure(f"installed, but llama_cpp.server does not import: {reason}")
    log(f"install-server: llama-cpp-python[server] {LLAMA_CPP_VERSION} installed in {dt:.0f}s")


def install_server(python: str, model: Path, rebuild: bool) -> None:
    """Install (or with `rebuild`, reinstall) unless importable; then the decode check."""
    reason = server_installed(python)
    if reason is None and not rebuild:
        log(
            f"install-server: llama-cpp-python[server] {LLAMA_CPP_VERSION} already importable in "
            f"{python}: nothing to install"
        )
    else:
        log(f"install-server: {'--rebuild' if reason is None else reason}")
        _pip_install(python, rebuild)
    if not model.exists():
        log(f"install-server: {model} absent, so the decode check is skipped (run `fetch`)")
        return
    t0 = time.monotonic()
    failure = decode_smoke(python, model)
    if failure is not None:
        raise Failure(
            f"the installed llama-cpp-python cannot run the model on this machine: {failure}. "
            "Fix: `python -m finmath_assets.llm_local install-server --rebuild` rebuilds it for "
            "this CPU without AMX (a native build can use CPU features, such as AMX, that this "
            "machine advertises but cannot run); CMAKE_ARGS=-DGGML_NATIVE=OFF in the "
            "environment makes it a portable AVX2 build."
        )
    log(f"install-server: decode check on the model ok ({time.monotonic() - t0:.1f}s)")
