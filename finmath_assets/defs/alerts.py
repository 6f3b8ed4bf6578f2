"""Alert sensors: failed asset checks, freshness failures and failed runs become alerts through
the ``AlertSinkResource`` (run log, ``FINMATH_HOME/alerts.jsonl``, optional webhook).

OSS Dagster shows these states in the UI but sends nothing; these sensors are the bridge. Each
keeps a cursor, so an event alerts once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (  # not re-exported by dagster
    AssetCheckExecutionRecordStatus,
)

from finmath_assets.defs.resources import AlertSinkResource

ALERTING_STATES = {"WARN", "FAIL"}
# failed executions read per check and tick: more than this many failures of one check between
# two ticks (30 s by default) would alert only the newest
CHECK_HISTORY = 25


def build_check_failure_alerts(
    check_keys: list[dg.AssetCheckKey], interval_seconds: int = 30
) -> dg.SensorDefinition:
    """A sensor alerting once for each failed evaluation of ``check_keys``.

    Reads each check's recent failed executions, not only its latest: a failed day of a
    partitioned asset stays alerted when a later run of another day passes before the tick.
    Works on every event-log storage, including the run-sharded sqlite default, where cross-run
    event cursors are refused.
    """

    @dg.sensor(
        name="check_failure_alerts",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on every failed asset-check evaluation.",
    )
    def check_failure_alerts(
        context: dg.SensorEvaluationContext, alerts: AlertSinkResource
    ) -> dg.SkipReason:
        # per check: the alerted execution ids (an int: the cursor format of the latest-only
        # sensor, every id up to it alerted)
        cursor: dict[str, list[int] | int] = json.loads(context.cursor) if context.cursor else {}
        storage = context.instance.event_log_storage
        sent = 0
        for key in check_keys:
            name = key.to_user_string()
            seen = cursor.get(name, [])
            floor = seen if isinstance(seen, int) else -1
            alerted = set(seen) if isinstance(seen, list) else set()
            failed = storage.get_asset_check_execution_history(
                key, limit=CHECK_HISTORY, status={AssetCheckExecutionRecordStatus.FAILED}
            )
            for record in sorted(failed, key=lambda r: r.id):
                if record.id <= floor or record.id in alerted:
                    continue
                evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
                details = {
                    "run_id": record.run_id,
                    "blocking": evaluation.blocking,
                    "severity": evaluation.severity.value,
                }
                if record.partition is not None:
                    details["partition"] = record.partition
                alerts.send(
                    "asset_check_failed",
                    f"{key.asset_key.to_user_string()}:{key.name}",
                    evaluation.description or "check failed",
                    details,
                )
                sent += 1
            if failed:
                cursor[name] = sorted(r.id for r in failed)
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        return dg.SkipReason(f"{len(check_keys)} checks read, {sent} alerts sent")

    return check_failure_alerts


def build_freshness_alerts(keys: list[dg.AssetKey]) -> dg.SensorDefinition:
    """A sensor alerting when an asset with a freshness policy turns WARN or FAIL."""

    @dg.sensor(
        name="freshness_alerts",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts when an asset's freshness state turns WARN or FAIL.",
    )
    def freshness_alerts(
        context: dg.SensorEvaluationContext, alerts: AlertSinkResource
    ) -> dg.SkipReason:
        previous: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        records = context.instance.get_freshness_state_records(keys)
        current = {k.to_user_string(): r.freshness_state.value for k, r in records.items()}
        sent = 0
        for name, state in current.items():
            if state in ALERTING_STATES and previous.get(name) != state:
                alerts.send(
                    "freshness",
                    name,
                    f"freshness state {previous.get(name, 'UNKNOWN')} -> {state}",
                    {"state": state},
                )
                sent += 1
        context.update_cursor(json.dumps({**previous, **current}, sort_keys=True))
        return dg.SkipReason(f"{len(current)} freshness states read, {sent} alerts sent")

    return freshness_alerts


def build_run_failure_alerts(interval_seconds: int = 30) -> dg.SensorDefinition:
    """A run-failure sensor alerting once for each failed run."""

    @dg.run_failure_sensor(
        name="run_failure_alerts",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on every failed run (a failed blocking check fails its run too).",
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertSinkResource) -> None:
        run = context.dagster_run
        alerts.send(
            "run_failed",
            run.job_name,
            context.failure_event.message or "run failed",
            {"run_id": run.run_id},
        )

    return run_failure_alerts


def build_defs(domains: Sequence[dg.Definitions], interval_seconds: int = 30) -> dg.Definitions:
    """The alert sensors, watching every check and freshness policy the domains define; the
    check and run sensors tick every ``interval_seconds`` (freshness changes by the hour)."""
    check_keys = [key for d in domains for c in d.asset_checks or [] for key in c.check_keys]
    fresh = [
        spec.key
        for d in domains
        for a in d.assets or []
        if isinstance(a, dg.AssetsDefinition)
        for spec in a.specs
        if spec.freshness_policy is not None
    ]
    return dg.Definitions(
        sensors=[
            build_check_failure_alerts(check_keys, interval_seconds),
            build_freshness_alerts(fresh),
            build_run_failure_alerts(interval_seconds),
        ]
    )
