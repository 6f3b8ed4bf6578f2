"""The sensor that ingests the inference service's prediction log when it grows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from finmath_assets.defs.constants import KEY_PREFIX

INFERENCE_LOG = dg.AssetKey([KEY_PREFIX, "inference_log"])


def build_inference_log_sensor(directory: Path, interval_seconds: int = 60) -> dg.SensorDefinition:
    """Requests ``inference_log`` when the service has appended predictions since the last run
    (the cursor holds each file's size: files only grow, a new day makes a new file)."""

    @dg.sensor(
        name="inference_log_files",
        target=dg.AssetSelection.assets(INFERENCE_LOG),
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Ingests the inference service's prediction files when they grow.",
    )
    def inference_log_files(context: dg.SensorEvaluationContext):
        files = sorted(directory.glob("predictions-*.jsonl")) if directory.is_dir() else []
        state = {p.name: p.stat().st_size for p in files}
        if not state:
            return dg.SkipReason(f"no prediction files in {directory} yet")
        cursor = json.dumps(state, sort_keys=True)
        if context.cursor == cursor:
            return dg.SkipReason("no new predictions")
        context.update_cursor(cursor)
        key = hashlib.sha256(cursor.encode()).hexdigest()[:16]
        return dg.RunRequest(run_key=f"inference-log-{key}")

    return inference_log_files
