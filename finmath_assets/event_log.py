"""The local instance's event log: Dagster's SQLite event log, with engines kept and batches
written in one transaction per database file.

Dagster's ``SqliteEventLogStorage`` builds a new SQLAlchemy engine for every statement it runs
(and with it an empty compiled-statement cache) and commits each event on its own. A single-run
backfill of the price history writes ~20,000 events (a planned and a materialisation event per
partition and asset), so that bookkeeping, not the work, was most of its time. This subclass
keeps one engine per database file and, when Dagster hands it a batch (``DAGSTER_EVENT_BATCH_SIZE``
> 0, which it sets by default), writes the whole batch in one transaction per file. Files, schema
and queries are Dagster's own: a home written by either class is read by the other.
``docs/performance.md`` has the figures; dagster.yaml selects it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

# events Dagster buffers before it hands them over as one batch (planned events of a run, the
# per-partition materialisations of one output)
DEFAULT_EVENT_BATCH_SIZE = "1000"
# engines kept open: the cross-run index plus the newest run files (a daemon touches many runs)
MAX_ENGINES = 32


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with an engine per file and one transaction per batch."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        # the instance reads this for every event it stores: batches only pay off with this class
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", DEFAULT_EVENT_BATCH_SIZE)
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._batch: tuple[int, dict[str, Connection]] | None = None
        self._pending_inst_data = inst_data
        if base_dir is not None:
            super().__init__(base_dir, inst_data)
        # else: the instance's own directory, known once it registers (not DAGSTER_HOME: a
        # process may open another home with DagsterInstance.from_config)

    def register_instance(self, instance: dg.DagsterInstance) -> None:
        if not hasattr(self, "_base_dir"):
            base_dir = os.path.join(instance.root_directory, "history", "runs")
            super().__init__(base_dir, self._pending_inst_data)
        super().register_instance(instance)

    @classmethod
    def config_type(cls) -> dict[str, dg.Field]:
        return {
            "base_dir": dg.Field(
                dg.StringSource,
                is_required=False,
                description="Where the event files live (default: the instance directory's "
                "history/runs, the same place as Dagster's default event log).",
            )
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchingSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The file's engine (called with ``_db_lock`` held)."""
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            self._engines[shard] = engine
            while len(self._engines) > MAX_ENGINES:
                self._engines.popitem(last=False)[1].dispose()
        else:
            self._engines.move_to_end(shard)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        batch = self._batch
        if batch is not None and batch[0] == threading.get_ident():
            # inside store_event_batch: one open transaction per file until the batch ends
            connection = batch[1].get(shard)
            if connection is None:
                connection = self._engine(shard).connect()
                connection.begin()
                batch[1][shard] = connection
            yield connection
            return
        with self._db_lock, self._engine(shard).connect() as connection, connection.begin():
            yield connection

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store ``events`` as ``store_event`` would, in one transaction per file; on an error
        nothing of the batch is kept and the caller (the instance) stores them one by one."""
        with self._db_lock:
            connections: dict[str, Connection] = {}
            self._batch = (threading.get_ident(), connections)
            try:
                for event in events:
                    self.store_event(event)
                for connection in connections.values():
                    connection.commit()
            finally:
                self._batch = None
                for connection in connections.values():
                    connection.close()  # rolls back what was not committed

    def _dispose_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()
