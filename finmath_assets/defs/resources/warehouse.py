"""The DuckDB warehouse IO manager.

``dagster-duckdb-pandas`` writes a whole table as ``DELETE`` + ``INSERT``: two commits, so a reader
can see an empty table in between; an empty DataFrame is skipped (the table keeps its old rows or
is never created); and a DataFrame with a changed column list fails to insert into the old table.
The library's partitioned write is a ``DELETE`` of the partition's rows and an ``INSERT`` in two
commits, and an empty partition never creates the table (its readers then fail).

This subclass keeps the library's connection handling, partition ``WHERE`` clauses and loading,
and writes every output in one short transaction: a whole table as
``CREATE OR REPLACE TABLE ... AS SELECT`` (empty frames and new columns included), a partition as
``DELETE`` of its rows + ``INSERT ... BY NAME`` (the table created, possibly empty, on first use).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb
import pandas as pd
from dagster import MetadataValue, OutputContext, TableColumn, TableSchema
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBResource
from dagster_duckdb.io_manager import DuckDbClient, _partition_where_clause
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler


class _ReplacingClient(DuckDbClient):
    @staticmethod
    @contextmanager
    def connect(context, table_slice: TableSlice) -> Iterator[duckdb.DuckDBPyConnection]:
        # the library closes its connection only when no exception was raised: a failed write
        # would leave the file open (and locked) for the rest of the process
        with DuckDbClient.connect(context, table_slice) as connection:
            try:
                yield connection
            finally:
                connection.close()

    @staticmethod
    def delete_table_slice(context: OutputContext, table_slice: TableSlice, connection) -> None:
        # the type handler deletes (a partition) or replaces (a table) in its own transaction
        return None


class _ReplacingPandasTypeHandler(DuckDBPandasTypeHandler):
    def handle_output(
        self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection
    ):
        table = f"{table_slice.schema}.{table_slice.table}"
        partitioned = bool(table_slice.partition_dimensions)
        connection.register("finmath_output_frame", obj)
        try:
            connection.execute("BEGIN TRANSACTION")
            if partitioned:
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} AS "
                    "SELECT * FROM finmath_output_frame LIMIT 0"
                )
                where = _partition_where_clause(table_slice.partition_dimensions)
                connection.execute(f"DELETE FROM {table} WHERE {where}")
                connection.execute(
                    f"INSERT INTO {table} BY NAME SELECT * FROM finmath_output_frame"
                )
            else:
                connection.execute(
                    f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM finmath_output_frame"
                )
            connection.execute("COMMIT")
        except Exception:
            connection.execute("ROLLBACK")
            raise
        finally:
            connection.unregister("finmath_output_frame")
        if partitioned and len(context.asset_partition_keys) > 1:
            # a range (a backfill): Dagster copies output metadata onto every partition's event,
            # so the ~2 KB schema would be stored thousands of times over, and a per-partition
            # row count is not known here
            context.add_output_metadata(
                {"rows_written": obj.shape[0], "dagster/storage_kind": "duckdb"}
            )
            return
        columns = connection.execute(f"DESCRIBE {table}").fetchall()
        count_key = "dagster/partition_row_count" if partitioned else "dagster/row_count"
        context.add_output_metadata(
            {
                count_key: obj.shape[0],
                "dagster/storage_kind": "duckdb",
                "dagster/column_schema": MetadataValue.table_schema(
                    TableSchema(columns=[TableColumn(name=c[0], type=c[1]) for c in columns])
                ),
            }
        )


class WarehouseIOManager(DuckDBPandasIOManager):
    """Stores pandas DataFrames as ``<key prefix>.<asset name>`` tables in one DuckDB file."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [_ReplacingPandasTypeHandler()]

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=_ReplacingClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=pd.DataFrame,
            io_manager_name="WarehouseIOManager",
        )


class WarehouseResource(DuckDBResource):
    """Direct SQL access to the warehouse for assets that need more than load/store (the
    embedding cache). Like the IO manager, it closes the connection even when the work fails."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with super().get_connection() as connection:
            try:
                yield connection
            finally:
                connection.close()
