"""The running system, started once for the live tests: `dagster-webserver` and `dagster-daemon`
as separate processes on free ports, on the home `make run` made (``refreshed_home``), alerts to
a real webhook receiver, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from finmath_assets_tests.conftest import Receiver, free_port, process_group, system_binary
from finmath_assets_tests.homes import ROOT, Home
from finmath_assets_tests.live.system import ARTEFACTS, CHROMIUM_ARGS, GRAPHQL_NUX_SEEN, LiveSystem

BIN = Path(sys.executable).parent
SENSOR_SECONDS = "5"  # drop-folder and alert sensors: ticks a test need not wait a minute for


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def system(refreshed_home: Home, hook: Receiver) -> Iterator[LiveSystem]:
    """The webserver, the daemon and a browser page on the refreshed home; the logs and
    screenshots go to ``ARTEFACTS`` (``build/test-artefacts/live``)."""
    from playwright.sync_api import sync_playwright

    chromium = system_binary("chromium", "chromium")
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    ARTEFACTS.mkdir(parents=True)
    env = {
        **refreshed_home.env,
        "FINMATH_ALERT_WEBHOOK_URL": hook.url,
        "FINMATH_SENSOR_INTERVAL_SECONDS": SENSOR_SECONDS,
        "FINMATH_ALERT_INTERVAL_SECONDS": SENSOR_SECONDS,
    }
    port = free_port()
    logs = {name: ARTEFACTS / f"{name}.log" for name in ("dagster-webserver", "dagster-daemon")}
    webserver = [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-p", str(port)]
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    with (
        process_group(webserver, env=env, log_path=logs["dagster-webserver"], cwd=ROOT),
        process_group(daemon, env=env, log_path=logs["dagster-daemon"], cwd=ROOT),
        refreshed_home.instance() as instance,
        sync_playwright() as playwright,
    ):
        system = LiveSystem(refreshed_home, f"http://127.0.0.1:{port}", instance, hook, logs)
        with system.step("start the webserver and the daemon"):
            system.wait(
                "the webserver",
                lambda: httpx.get(f"{system.url}/server_info", timeout=2).status_code == 200,
                120,
            )
            system.wait(
                "the daemon's sensors", lambda: "SENSOR" in instance.get_daemon_heartbeats(), 120
            )
            system.graphql(GRAPHQL_NUX_SEEN)  # a user closes the welcome dialog once
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            system.page = browser.new_page(viewport={"width": 1400, "height": 900})
            system.page.set_default_timeout(60_000)
            yield system
        finally:
            browser.close()
