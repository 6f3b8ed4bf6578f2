"""The running system under test: `dagster-webserver`, `dagster-daemon`, a webhook receiver and a
Chromium page, on one home; every wait is bounded, and a failed step names itself, its
screenshot and the processes' logs."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import httpx

from finmath_assets_tests.conftest import Receiver, read_alerts
from finmath_assets_tests.homes import ROOT, Home

T = TypeVar("T")

# screenshots and process logs of the last live run (kept after the session, passed or failed);
# FINMATH_TEST_ARTEFACTS moves them
ARTEFACTS = Path(os.environ.get("FINMATH_TEST_ARTEFACTS", ROOT / "build" / "test-artefacts")) / (
    "live"
)
# Debian's chromium (`make system-deps`); Playwright's own browser download is not needed
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # this machine's network is closed: no update, sync or metrics connections to refuse
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCATION = {"repositoryLocationName": "finmath", "repositoryName": "__repository__"}
GRAPHQL_LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
GRAPHQL_TICKS = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 20) { timestamp status runIds } } }
  }
}"""
# the "Join the Dagster community" dialog a new instance shows over the first page
GRAPHQL_NUX_SEEN = "mutation { setNuxSeen }"


class StepFailed(AssertionError):
    """A live step failed: the message names the step, its screenshot and the process logs."""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class LiveSystem:
    home: Home
    url: str  # the webserver
    instance: dg.DagsterInstance
    receiver: Receiver
    logs: dict[str, Path]  # process name -> its log
    page: Any = None  # playwright.sync_api.Page, once the browser is up
    screenshots: list[Path] = field(default_factory=list)

    # -- steps, waits and artefacts ----------------------------------------------------------

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run one step; on failure raise :class:`StepFailed` naming the step, a screenshot of
        the page at that moment and the end of every process log."""
        try:
            yield
        except Exception as error:
            shot = self.screenshot(f"failed-{slug(name)}")
            tails = "\n".join(
                f"--- {path} (end)\n{path.read_text(errors='replace')[-2500:]}"
                for path in self.logs.values()
                if path.exists()
            )
            raise StepFailed(
                f"live step '{name}' failed: {type(error).__name__}: {error}\n"
                f"screenshot: {shot}\nlogs: {', '.join(str(p) for p in self.logs.values())}\n"
                f"{tails}"
            ) from error

    def screenshot(self, name: str) -> Path | None:
        """A screenshot of the page as ``ARTEFACTS/<name>.png`` (None before the browser)."""
        if self.page is None:
            return None
        path = ARTEFACTS / f"{name}.png"
        with contextlib.suppress(Exception):  # a page that is gone must not hide the error
            self.page.screenshot(path=str(path))
            self.screenshots.append(path)
            return path
        return None

    @staticmethod
    def wait(what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """``probe()`` until it returns something truthy; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                if found := probe():
                    return found
            except Exception as error:  # the storage busy with a writer, say: ask again
                last = error
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f} s (last error: {last!r})")
            time.sleep(0.5)

    # -- the webserver's API, as the UI uses it ----------------------------------------------

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def launch(self, *names: str) -> str:
        """What the UI's "Materialize" button sends for the selected FinanceMath assets."""
        params = {
            "selector": {
                **LOCATION,
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": ["finmath", name]} for name in names],
            },
            "mode": "default",
            "executionMetadata": {"tags": []},
        }
        launched = self.graphql(GRAPHQL_LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def ticks_after(self, sensor: str, moment: float) -> list[dict[str, Any]]:
        """The sensor's finished ticks after ``moment`` (a Unix time)."""
        selector = {**LOCATION, "sensorName": sensor}
        found = self.graphql(GRAPHQL_TICKS, {"selector": selector})["sensorOrError"]
        assert found["__typename"] == "Sensor", found
        ticks = found["sensorState"]["ticks"]
        return [t for t in ticks if t["timestamp"] > moment and t["status"] != "STARTED"]

    def wait_for_tick(self, sensor: str, moment: float, timeout: float = 120) -> None:
        self.wait(f"a tick of {sensor}", lambda: self.ticks_after(sensor, moment), timeout)

    # -- runs ----------------------------------------------------------------------------------

    def finished(self, run_id: str) -> dg.DagsterRun | None:
        run = self.instance.get_run_by_id(run_id)
        return run if run is not None and run.is_finished else None

    def wait_finished(self, run_id: str, timeout: float) -> dg.DagsterRun:
        return self.wait(f"run {run_id} to finish", lambda: self.finished(run_id), timeout)

    def runs_created_after(self, moment: float) -> list[dg.DagsterRun]:
        """Runs created after ``moment`` (a Unix time), oldest first."""
        records = self.instance.get_run_records()
        return [r.dagster_run for r in reversed(records) if r.create_timestamp.timestamp() > moment]

    def latest_metadata(self, key: dg.AssetKey, partition: str | None = None) -> dict[str, Any]:
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=key, asset_partitions=[partition] if partition else None
            ),
            limit=1,
        ).records
        assert records, f"{key.to_user_string()} {partition or ''}: never materialised"
        materialization = records[0].asset_materialization
        assert materialization is not None
        return {k: v.value for k, v in materialization.metadata.items()}

    # -- alerts --------------------------------------------------------------------------------

    def wait_for_alerts(
        self, kind: str, subject: str, timeout: float = 120
    ) -> tuple[list[dict], list[dict]]:
        """:meth:`alerts` once both sinks hold at least one."""
        return self.wait(
            f"a {kind} alert about {subject} at both sinks",
            lambda: all(found := self.alerts(kind, subject)) and found,
            timeout,
        )

    def alerts(self, kind: str, subject: str) -> tuple[list[dict], list[dict]]:
        """The alerts of ``kind`` about ``subject`` in alerts.jsonl and at the webhook."""
        in_file = [
            a
            for a in read_alerts(self.home.root / "alerts.jsonl")
            if a["kind"] == kind and a["subject"] == subject
        ]
        at_hook = [
            b["finmath"]
            for b in list(self.receiver.bodies)
            if b["finmath"]["kind"] == kind and b["finmath"]["subject"] == subject
        ]
        return in_file, at_hook
