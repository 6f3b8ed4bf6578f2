"""Alerts: failed checks, failed runs and freshness failures reach the run log, alerts.jsonl and a
real webhook receiver on 127.0.0.1."""

from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange
from dagster._core.events import DagsterEventType

from finmath_assets.definitions import build_definitions
from finmath_assets.defs.alerts import (
    build_check_failure_alerts,
    build_freshness_alerts,
    build_run_failure_alerts,
)
from finmath_assets.defs.finmath.checks import CHECKS
from finmath_assets.defs.resources import AlertSinkResource
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import Receiver, read_alerts

pytestmark = pytest.mark.slow  # materialises assets, runs checks and the alert sensors


def test_failed_check_and_failed_run_alert_once_to_file_and_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FINMATH_HOME", str(home))
    settings = Settings(home=home, hf_cache_dir=tmp_path / "hf", check_expected_labelled=199)
    sink = AlertSinkResource(path=str(tmp_path / "alerts.jsonl"), webhook_url=receiver.url)
    with dg.instance_for_test() as instance:
        result = (
            build_definitions(settings)
            .resolve_job_def("finmath_job")
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        assert not result.success
        check_failure_alerts = build_check_failure_alerts([k for c in CHECKS for k in c.check_keys])
        context = dg.build_sensor_context(instance=instance, resources={"alerts": sink})
        check_failure_alerts(context)
        cursor = context.cursor
        assert cursor is not None
        # a second tick from that cursor sends nothing again
        check_failure_alerts(
            dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerts": sink})
        )
        failure = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
        build_run_failure_alerts()(
            dg.build_run_status_sensor_context(
                sensor_name="run_failure_alerts",
                dagster_event=failure,
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                resources={"alerts": sink},
            ).for_run_failure()
        )
    recorded = read_alerts(tmp_path / "alerts.jsonl")
    assert [a["kind"] for a in recorded] == ["asset_check_failed", "run_failed"]
    check_alert, run_alert = recorded
    assert check_alert["subject"] == "finmath/validated_records:labelled_count"
    assert check_alert["message"] == "200 labelled records (expected 199)"
    assert run_alert["details"]["run_id"] == result.run_id
    assert [b["finmath"] for b in receiver.bodies] == recorded
    assert receiver.bodies[0]["text"].startswith("finmath asset_check_failed: ")


def test_freshness_failure_alerts_on_the_transition_only(
    tmp_path: Path, receiver: Receiver
) -> None:
    key = dg.AssetKey(["finmath", "answer_model"])
    sensor = build_freshness_alerts([key])
    sink = AlertSinkResource(path=str(tmp_path / "alerts.jsonl"), webhook_url=receiver.url)

    def record(previous: FreshnessState, new: FreshnessState) -> None:
        # what the freshness daemon records when a state changes
        instance._report_runless_asset_event(
            asset_event=FreshnessStateChange(
                key=key, previous_state=previous, new_state=new, state_change_timestamp=1.0
            )
        )

    def tick(cursor: str | None) -> str | None:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"alerts": sink}
        )
        sensor(context)
        return context.cursor

    with dg.instance_for_test() as instance:
        record(FreshnessState.UNKNOWN, FreshnessState.PASS)
        cursor = tick(None)
        assert read_alerts(tmp_path / "alerts.jsonl") == []
        record(FreshnessState.PASS, FreshnessState.FAIL)
        cursor = tick(cursor)
        cursor = tick(cursor)  # still failing: no second alert
    recorded = read_alerts(tmp_path / "alerts.jsonl")
    assert [(a["kind"], a["subject"], a["details"]["state"]) for a in recorded] == [
        ("freshness", "finmath/answer_model", "FAIL")
    ]
    assert len(receiver.bodies) == 1


def test_an_unreachable_webhook_never_loses_the_alert(tmp_path: Path) -> None:
    sink = AlertSinkResource(
        path=str(tmp_path / "a" / "alerts.jsonl"),
        webhook_url="http://127.0.0.1:9/nothing-listens-here",
        timeout_seconds=1,
    )
    sink.send("run_failed", "finmath_job", "boom", {"run_id": "r1"})
    assert [a["message"] for a in read_alerts(tmp_path / "a" / "alerts.jsonl")] == ["boom"]
