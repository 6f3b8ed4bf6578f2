"""`verify`: the GGUF's header (magic, version, tensor count, architecture, file type, chat
template), its size and its pinned SHA-256."""

from __future__ import annotations

import io
import os
import struct
import time
from pathlib import Path
from typing import IO, Any

from finmath_assets.llm_local.console import Failure, MiB, log
from finmath_assets.llm_local.model import (
    EXPECTED_ARCH,
    EXPECTED_FILE_TYPE,
    GGUF_VERSIONS,
    MODEL_SHA256,
    MODEL_SIZE,
    sha256_file,
)

# GGUF metadata value types: the fixed-size scalars by their struct format, then string and array
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

    def u32(f: IO[bytes]) -> int:
        return int(struct.unpack("<I", take(f, 4))[0])

    def u64(f: IO[bytes]) -> int:
        return int(struct.unpack("<Q", take(f, 8))[0])

    def string(f: IO[bytes]) -> str:
        n = u64(f)
        if n > 64 * MiB:
            raise Failure(f"{path}: corrupt GGUF header (a {n:,}-byte string)")
        return take(f, n).decode("utf-8", "replace")

    def value(f: IO[bytes], vtype: int) -> Any:
        if vtype in _GGUF_SCALARS:
            fmt = _GGUF_SCALARS[vtype]
            return struct.unpack(fmt, take(f, struct.calcsize(fmt)))[0]
        if vtype == _GGUF_STRING:
            return string(f)
        if vtype == _GGUF_ARRAY:
            itype, count = u32(f), u64(f)
            if itype in _GGUF_SCALARS:  # skip fixed-size items in one seek
                f.seek(struct.calcsize(_GGUF_SCALARS[itype]) * count, os.SEEK_CUR)
            else:
                for _ in range(count):
                    value(f, itype)
            return f"<array of {count}>"
        raise Failure(f"{path}: corrupt GGUF header (unknown value type {vtype})")

    with path.open("rb") as raw, io.BufferedReader(raw, buffer_size=MiB) as f:
        magic = take(f, 4)
        if magic != b"GGUF":
            raise Failure(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
        version = u32(f)
        tensors, n_kv = u64(f), u64(f)
        meta: dict[str, Any] = {}
        if version in GGUF_VERSIONS and n_kv < 100_000:
            for _ in range(n_kv):
                key = string(f)
                meta[key] = value(f, u32(f))
    return {"version": version, "tensor_count": tensors, "kv_count": n_kv, "metadata": meta}


def verify(model: Path, skip_sha256: bool) -> None:
    """Log what the GGUF is; raise Failure listing every check it fails."""
    if not model.exists():
        raise Failure(
            f"{model} does not exist: run `python -m finmath_assets.llm_local fetch` first"
        )
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
    if skip_sha256:
        log("  sha256: skipped (--skip-sha256)")
    else:
        t = time.monotonic()
        digest = sha256_file(model)
        log(f"  sha256 {digest} ({time.monotonic() - t:.1f}s)")
        if MODEL_SHA256 and digest != MODEL_SHA256:
            problems.append(f"SHA-256 {digest} differs from the pinned {MODEL_SHA256}")
        elif not MODEL_SHA256:
            log("  (no SHA-256 pinned in model.py yet: nothing to compare with)")
    if problems:
        raise Failure(
            f"{model} failed verification:\n  - " + "\n  - ".join(problems) + "\n"
            "Fix: delete it and run `python -m finmath_assets.llm_local fetch` again (`fetch "
            "--force` rejoins it from the cached parts; delete the parts folder to download them "
            "again)."
        )
    log("verify: ok")
