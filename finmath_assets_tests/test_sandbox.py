"""The sandbox on the real gold programs and on programs that misbehave (bubblewrap is installed
by the test set-up when missing, as Debian's package)."""

import socket
import time
from pathlib import Path

import pytest

from finmath_assets.core import quality, sandbox
from finmath_assets.core.sandbox import Limits, run_solution
from finmath_assets_tests.conftest import debian_package


@pytest.fixture(scope="module", autouse=True)
def bubblewrap() -> None:
    debian_package("bwrap", "bubblewrap")
    assert sandbox.isolation() == "bubblewrap"


def test_every_gold_program_runs_and_reproduces_its_ground_truth(real_validation) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda r: run_solution(r["python_solution"]), real_validation))
    assert [r.status for r in results] == ["ok"] * 200
    outcome = quality.reproducible(
        [r["question_id"] for r in real_validation],
        [r["ground_truth"] for r in real_validation],
        [r.status for r in results],
        [r.value for r in results],
    )
    assert outcome.passed, outcome.metadata
    assert results[0].value == pytest.approx(-8184.0)  # validation-0


def test_an_infinite_loop_is_killed_at_the_wall_clock_limit() -> None:
    started = time.perf_counter()
    result = run_solution(
        "def solution():\n    while True:\n        pass\n", Limits(wall_seconds=2)
    )
    assert result.status == "timeout" and time.perf_counter() - started < 5


def test_a_2_gb_allocation_fails() -> None:
    result = run_solution("def solution():\n    return len(bytearray(2 * 1024**3))\n")
    assert result.status == "error" and "MemoryError" in result.output


def test_writes_outside_the_private_tmp_fail() -> None:
    target = Path.home() / "escaped-from-the-finmath-sandbox.txt"  # writable here, outside /tmp
    result = run_solution(
        f"def solution():\n    open({str(target)!r}, 'w').write('x')\n    return 1\n"
    )
    assert result.status == "error" and "Read-only file system" in result.output
    assert not target.exists()
    inside = run_solution(
        "def solution():\n    open('/tmp/scratch', 'w').write('12')\n"
        "    return float(open('/tmp/scratch').read())\n"
    )
    assert (inside.status, inside.value) == ("ok", 12.0)


def test_no_network_even_to_a_listening_local_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from here
        result = run_solution(
            "import socket\ndef solution():\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return 1\n"
        )
    assert result.status == "error"
    assert "ConnectionRefusedError" in result.output or "Network is unreachable" in result.output


def test_programs_that_return_no_number() -> None:
    assert run_solution("x = 1\n").status == "error"
    assert run_solution("def solution():\n    return 'forty'\n").status == "no_number"
    assert run_solution("def solution():\n    return float('nan')\n").status == "no_number"
    assert run_solution("def solution(:\n").status == "error"


def test_reproducibility_rule_reports_mismatches_and_failures() -> None:
    outcome = quality.reproducible(
        ["a", "b", "c"], [1.0, 2.0, 3.0], ["ok", "ok", "timeout"], [1.0004, 2.1, None]
    )
    assert not outcome.passed
    assert outcome.metadata["mismatches"] == ["b: got 2.1, ground truth 2.0"]
    assert outcome.metadata["failures"] == ["c: timeout"]


def test_a_program_cannot_start_processes_but_threads_work() -> None:
    forks = run_solution(
        "import os\ndef solution():\n    pid = os.fork()\n    if pid == 0:\n        os._exit(0)\n"
        "    return 1\n"
    )
    assert forks.status == "error" and "Operation not permitted" in forks.output
    spawns = run_solution(
        "import subprocess\ndef solution():\n    subprocess.run(['/bin/true'])\n    return 1\n"
    )
    assert spawns.status == "error" and "Operation not permitted" in spawns.output
    threads = run_solution(
        "import threading\ndef solution():\n    box = []\n"
        "    t = threading.Thread(target=lambda: box.append(7.0))\n    t.start()\n    t.join()\n"
        "    return box[0]\n"
    )
    assert (threads.status, threads.value) == ("ok", 7.0)


def test_without_bubblewrap_the_weaker_fallback_still_stops_processes_and_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from finmath_assets.core import sandbox

    real_which = sandbox.shutil.which
    monkeypatch.setattr(
        sandbox.shutil, "which", lambda name: None if name == "bwrap" else real_which(name)
    )
    forks = run_solution("import os\ndef solution():\n    os.fork()\n    return 1\n")
    assert forks.status == "error" and "Operation not permitted" in forks.output
    assert forks.isolation.startswith("unshare (weaker")
    offline = run_solution(
        "import socket\ndef solution():\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=2)\n    return 1\n"
    )
    assert offline.status == "error"
    assert (run_solution("def solution():\n    return 2.5\n").value) == 2.5
