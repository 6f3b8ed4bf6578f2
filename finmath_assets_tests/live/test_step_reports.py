"""A failed live step names itself, its screenshot and the process logs (no Dagster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finmath_assets_tests.conftest import Receiver, system_binary
from finmath_assets_tests.homes import Home
from finmath_assets_tests.live import system as live
from finmath_assets_tests.live.system import CHROMIUM_ARGS, LiveSystem, StepFailed

pytestmark = [pytest.mark.slow, pytest.mark.live]  # starts Chromium


def test_a_failed_step_names_the_step_its_screenshot_and_the_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import sync_playwright

    monkeypatch.setattr(live, "ARTEFACTS", tmp_path)
    log = tmp_path / "dagster-daemon.log"
    log.write_text("started\nthe sensor raised ValueError: no such partition\n")
    system = LiveSystem(
        home=Home(tmp_path / "home", tmp_path / "data"),
        url="http://127.0.0.1:9",
        instance=None,  # type: ignore[arg-type]  # not reached by these steps
        receiver=Receiver(),
        logs={"dagster-daemon": log},
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=system_binary("chromium", "chromium"), args=CHROMIUM_ARGS
        )
        try:
            system.page = browser.new_page()
            system.page.set_content("<h1>the runs page</h1>")
            with system.step("first step"):
                pass  # a passing step leaves nothing behind
            assert list(tmp_path.glob("*.png")) == []
            with pytest.raises(StepFailed) as failed, system.step("see the run reach SUCCESS"):
                system.wait("the run", lambda: None, 1)
        finally:
            browser.close()
    message = str(failed.value)
    shot = tmp_path / "failed-see-the-run-reach-success.png"
    assert message.startswith("live step 'see the run reach SUCCESS' failed: AssertionError")
    assert "the run: not within 1 s" in message
    assert f"screenshot: {shot}" in message and shot.stat().st_size > 1000
    assert f"logs: {log}" in message
    assert "the sensor raised ValueError: no such partition" in message  # the log's end
    system.receiver.server.server_close()
