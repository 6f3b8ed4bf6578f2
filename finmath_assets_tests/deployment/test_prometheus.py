"""The service's Prometheus files, checked by the real promtool, and a real Prometheus (Debian's
package, a plain process on 127.0.0.1) scraping the running service."""

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import free_port, service_process

pytestmark = pytest.mark.slow  # a real Prometheus and the service as processes

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "docker" / "prometheus"


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=PROMETHEUS_DIR)


def test_config_rules_and_rule_tests_pass_promtool(promtool: str) -> None:
    config = _promtool(promtool, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = _promtool(promtool, "check", "rules", "alerts.yml")
    assert rules.returncode == 0 and "SUCCESS: 5 rules found" in rules.stdout
    tests = _promtool(promtool, "test", "rules", "alerts_test.yml")
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_a_broken_rule_or_expectation_fails_promtool(promtool: str, tmp_path: Path) -> None:
    broken = (PROMETHEUS_DIR / "alerts.yml").read_text().replace("> 0.05", "> > 0.05", 1)
    (tmp_path / "alerts.yml").write_text(broken)
    assert _promtool(promtool, "check", "rules", str(tmp_path / "alerts.yml")).returncode != 0
    # a rule test that expects the wrong thing must fail too
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    wrong = (PROMETHEUS_DIR / "alerts_test.yml").read_text().replace("10% of requests", "9% of")
    (tmp_path / "alerts_test.yml").write_text(wrong)
    assert _promtool(promtool, "test", "rules", str(tmp_path / "alerts_test.yml")).returncode != 0


@pytest.fixture
def prometheus(promtool: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Prometheus whose config is the repository's, pointed at a target the test fills in."""
    del promtool  # installed
    config = tmp_path / "prometheus" / "prometheus.yml"
    config.parent.mkdir()
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", config.parent / "alerts.yml")
    yield str(shutil.which("prometheus")), config


def test_real_prometheus_scrapes_the_service_and_sees_requests_rise(
    prometheus: tuple[str, Path], registry_copy: Settings, tmp_path: Path
) -> None:
    binary, config = prometheus
    with service_process(registry_copy, tmp_path) as service_url:
        target = service_url.removeprefix("http://")
        text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
        text = text.replace("scrape_interval: 15s", "scrape_interval: 1s")
        text = text.replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        config.write_text(text.replace('"inference:8000"', f'"{target}"'))
        port = free_port()
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("w"),
        )
        api = f"http://127.0.0.1:{port}/api/v1"
        try:
            body = {"question": "What is 5% of $1,000?", "tables": [], "topic": "Accounting"}
            query = 'sum(finmath_http_requests_total{route="/predict",status="200"})'

            def scraped() -> float | None:
                try:
                    result = httpx.get(f"{api}/query", params={"query": query}, timeout=5).json()
                except httpx.HTTPError:
                    return None
                values = result.get("data", {}).get("result", [])
                return float(values[0]["value"][1]) if values else None

            for _ in range(3):
                assert httpx.post(f"{service_url}/predict", json=body, timeout=30).is_success
            deadline = time.monotonic() + 60
            while (scraped() or 0) < 3:
                assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "Prometheus never saw the 3 requests"
                time.sleep(0.5)
            for _ in range(4):
                assert httpx.post(f"{service_url}/predict", json=body, timeout=30).is_success
            while (scraped() or 0) < 7:  # the counter rises with traffic
                assert time.monotonic() < deadline, "Prometheus never saw the next 4 requests"
                time.sleep(0.5)
            rules = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
            names = {r["name"] for group in rules for r in group["rules"]}
            assert {"FinmathHighErrorRate", "FinmathModelReloadFailed"} <= names
            targets = httpx.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"]
        finally:
            process.terminate()
            process.wait(30)
