"""Where alerts go: the run log, an append-only JSON-lines file, and optionally a webhook.

The file is the record (``FINMATH_HOME/alerts.jsonl``); the webhook gets Slack-compatible JSON
(``{"text": ...}`` plus the structured alert) and a failure to reach it is logged, never raised:
an unreachable chat server must not hide the alert it was about.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from finmath_assets.settings import Settings

log = logging.getLogger(__name__)


class AlertSinkResource(dg.ConfigurableResource):
    path: str
    webhook_url: str | None
    timeout_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertSinkResource:
        return cls(path=str(settings.home / "alerts.jsonl"), webhook_url=settings.alert_webhook_url)

    def send(
        self, kind: str, subject: str, message: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record one alert everywhere it goes; returns what was recorded."""
        alert = {
            "at": datetime.now(UTC).isoformat(),
            "kind": kind,
            "subject": subject,
            "message": message,
            "details": details or {},
        }
        log.warning("finmath alert [%s] %s: %s", kind, subject, message)
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(alert, default=str) + "\n")
        if self.webhook_url:
            self._post(alert)
        return alert

    def _post(self, alert: dict[str, Any]) -> None:
        body = json.dumps(
            {
                "text": f"finmath {alert['kind']}: {alert['subject']}: {alert['message']}",
                "finmath": alert,
            },
            default=str,
        ).encode()
        request = urllib.request.Request(
            self.webhook_url or "",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.error("alert webhook %s failed: %s", self.webhook_url, exc)
