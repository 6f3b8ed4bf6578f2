"""The sandbox on the real gold programs and on programs that misbehave, under both isolations.

Every case runs in this pytest process after torch and onnxruntime are imported, as in the real
pipeline and service (the old fallback failed only there). bubblewrap comes from `make
system-deps`; the ``seccomp`` cases run with it installed but not used.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime  # noqa: F401  (loaded on purpose: the real process has both)
import pytest
import torch  # noqa: F401

from finmath_assets.core import quality, sandbox
from finmath_assets.core.sandbox import Limits, SandboxUnavailableError, run_solution

ISOLATIONS = ["bubblewrap", "seccomp"]


@pytest.fixture(params=ISOLATIONS)
def limits(request: pytest.FixtureRequest) -> Limits:
    return Limits(isolation=request.param)


def test_the_fallback_is_chosen_only_when_asked_or_when_bubblewrap_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sandbox.resolve("auto") == "bubblewrap"  # installed by make system-deps
    assert sandbox.resolve("seccomp") == "seccomp"
    monkeypatch.setenv("PATH", "/nonexistent")  # what a host without bubblewrap looks like
    assert sandbox.resolve("auto") == "seccomp"
    assert sandbox.isolation() == "seccomp (weaker: no namespaces, filesystem readable)"
    with pytest.raises(SandboxUnavailableError, match=r"bwrap is not on PATH.*system-deps"):
        sandbox.resolve("bubblewrap")
    result = run_solution("def solution():\n    return 2.5\n")
    assert (result.status, result.value) == ("ok", 2.5)
    assert result.isolation == sandbox.LABELS["seccomp"]


@pytest.mark.slow  # hundreds of sandboxed processes or a wall-clock wait
def test_every_gold_program_runs_and_reproduces_its_ground_truth(
    real_validation, limits: Limits
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda r: run_solution(r["python_solution"], limits), real_validation)
        )
    assert [r.status for r in results] == ["ok"] * 200, [r.output for r in results][:3]
    outcome = quality.reproducible(
        [r["question_id"] for r in real_validation],
        [r["ground_truth"] for r in real_validation],
        [r.status for r in results],
        [r.value for r in results],
    )
    assert outcome.passed, outcome.metadata
    assert results[0].value == pytest.approx(-8184.0)  # validation-0
    assert {r.isolation for r in results} == {sandbox.LABELS[limits.isolation]}


@pytest.mark.slow  # hundreds of sandboxed processes or a wall-clock wait
def test_an_infinite_loop_is_killed_at_the_wall_clock_limit(limits: Limits) -> None:
    started = time.perf_counter()
    result = run_solution(
        "def solution():\n    while True:\n        pass\n",
        Limits(wall_seconds=2, isolation=limits.isolation),
    )
    assert result.status == "timeout" and time.perf_counter() - started < 5


def test_a_cpu_bound_program_is_stopped_by_the_cpu_limit(limits: Limits) -> None:
    result = run_solution(
        "def solution():\n    while True:\n        pass\n",
        Limits(wall_seconds=10, cpu_seconds=1, isolation=limits.isolation),
    )
    assert result.status == "error" and result.seconds < 9  # SIGXCPU, not the wall clock


def test_a_2_gb_allocation_fails(limits: Limits) -> None:
    result = run_solution("def solution():\n    return len(bytearray(2 * 1024**3))\n", limits)
    assert result.status == "error" and "MemoryError" in result.output


def test_writes_outside_the_sandbox_fail(limits: Limits) -> None:
    target = Path.home() / "escaped-from-the-finmath-sandbox.txt"  # writable here
    result = run_solution(
        f"def solution():\n    open({str(target)!r}, 'w').write('x')\n    return 1\n", limits
    )
    expected = {"bubblewrap": "Read-only file system", "seccomp": "Operation not permitted"}
    assert result.status == "error" and expected[limits.isolation] in result.output
    assert not target.exists()
    victim = Path.home() / "finmath-sandbox-victim.txt"
    victim.write_text("keep me")
    try:
        removal = run_solution(
            f"import os\ndef solution():\n    os.remove({str(victim)!r})\n    return 1\n", limits
        )
        assert removal.status == "error" and victim.read_text() == "keep me"
    finally:
        victim.unlink()


def test_bubblewrap_gives_a_private_writable_tmp() -> None:
    inside = run_solution(
        "def solution():\n    open('/tmp/scratch', 'w').write('12')\n"
        "    return float(open('/tmp/scratch').read())\n",
        Limits(isolation="bubblewrap"),
    )
    assert (inside.status, inside.value) == ("ok", 12.0)
    assert not Path("/tmp/scratch").exists()


def test_no_network_even_to_a_listening_local_port(limits: Limits) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from here
        result = run_solution(
            "import socket\ndef solution():\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return 1\n",
            limits,
        )
    assert result.status == "error"
    assert "Operation not permitted" in result.output  # no socket at all


def test_programs_that_return_no_number(limits: Limits) -> None:
    assert run_solution("x = 1\n", limits).status == "error"
    assert run_solution("def solution():\n    return 'forty'\n", limits).status == "no_number"
    assert run_solution("def solution():\n    return float('nan')\n", limits).status == "no_number"
    assert run_solution("def solution(:\n", limits).status == "error"


def test_reproducibility_rule_reports_mismatches_and_failures() -> None:
    outcome = quality.reproducible(
        ["a", "b", "c"], [1.0, 2.0, 3.0], ["ok", "ok", "timeout"], [1.0004, 2.1, None]
    )
    assert not outcome.passed
    assert outcome.metadata["mismatches"] == ["b: got 2.1, ground truth 2.0"]
    assert outcome.metadata["failures"] == ["c: timeout"]


def test_a_program_cannot_start_processes_but_threads_work(limits: Limits) -> None:
    forks = run_solution(
        "import os\ndef solution():\n    pid = os.fork()\n    if pid == 0:\n        os._exit(0)\n"
        "    return 1\n",
        limits,
    )
    assert forks.status == "error" and "Operation not permitted" in forks.output
    spawns = run_solution(
        "import subprocess\ndef solution():\n    subprocess.run(['/bin/true'])\n    return 1\n",
        limits,
    )
    assert spawns.status == "error" and "Operation not permitted" in spawns.output
    threads = run_solution(
        "import threading\ndef solution():\n    box = []\n"
        "    t = threading.Thread(target=lambda: box.append(7.0))\n    t.start()\n    t.join()\n"
        "    return box[0]\n",
        limits,
    )
    assert (threads.status, threads.value) == ("ok", 7.0)


def test_a_program_cannot_signal_the_caller_in_the_fallback() -> None:
    result = run_solution(
        f"import os, signal\ndef solution():\n    os.kill({os.getpid()}, signal.SIGTERM)\n"
        "    return 1\n",
        Limits(isolation="seccomp"),
    )
    assert result.status == "error" and "Operation not permitted" in result.output


@pytest.mark.slow  # hundreds of sandboxed processes or a wall-clock wait
def test_the_fallback_works_in_a_fresh_process_without_bubblewrap_on_path(tmp_path: Path) -> None:
    """The way `make run` meets it on a host without bubblewrap: torch and onnxruntime loaded,
    ``auto`` isolation, bwrap not on PATH."""
    script = (
        "import onnxruntime, torch\n"
        "from finmath_assets.core.sandbox import run_solution\n"
        "r = run_solution('def solution():\\n    return 2\\n')\n"
        "print(r.status, r.value, r.isolation)\n"
    )
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok 2.0 seccomp (weaker: no namespaces, filesystem readable)"


def test_an_interpreter_reached_through_links_under_tmp_still_runs_in_bubblewrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a venv whose python links to a python3 kept in another folder under /tmp (a PATH of links,
    # say): bubblewrap's private /tmp would hide both links unless they are bound back in
    (tmp_path / "links").mkdir()
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "links" / "python3").symlink_to(Path(sys.executable).resolve())
    (tmp_path / "venv" / "bin" / "python").symlink_to(tmp_path / "links" / "python3")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    result = run_solution("def solution():\n    return 7\n", Limits(isolation="bubblewrap"))
    assert (result.status, result.value) == ("ok", 7.0), result.output
