"""Append every prediction to date-rotated JSON-lines files, off the request path.

``write`` only puts a record on an in-memory queue; a background thread appends to
``<dir>/predictions-YYYY-MM-DD.<host>-<pid>.jsonl`` (UTC date of the prediction) and flushes at
least every ``flush_seconds``, so a crash loses at most that much. Every process writes files of
its own, so uvicorn workers and replicas sharing one volume never interleave lines. It never
touches the DuckDB warehouse: a Dagster asset ingests these files.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_STOP = object()


class InferenceLogWriter:
    def __init__(
        self, directory: Path, flush_seconds: float = 1.0, writer_id: str | None = None
    ) -> None:
        self.directory = Path(directory)
        self.writer_id = writer_id or f"{socket.gethostname()}-{os.getpid()}"
        self.flush_seconds = flush_seconds
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self.written = 0
        self.dropped = 0

    def start(self) -> InferenceLogWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def write(self, record: dict[str, Any]) -> None:
        """Never blocks: the record is queued for the writer thread."""
        self._queue.put(record)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def path_for(self, day: str) -> Path:
        return self.directory / f"predictions-{day}.{self.writer_id}.jsonl"

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[dict[str, Any]] = []
            try:
                item = self._queue.get(timeout=self.flush_seconds)
                while True:
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            if batch:
                self._append(batch)

    def _append(self, batch: list[dict[str, Any]]) -> None:
        by_day: dict[str, list[str]] = {}
        for record in batch:
            day = str(record.get("timestamp", ""))[:10] or datetime.now(UTC).date().isoformat()
            by_day.setdefault(day, []).append(json.dumps(record, allow_nan=True))
        for day, lines in by_day.items():
            try:
                with self.path_for(day).open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
                self.written += len(lines)
            except OSError as exc:
                self.dropped += len(lines)
                log.error("could not append %d inference records: %s", len(lines), exc)
