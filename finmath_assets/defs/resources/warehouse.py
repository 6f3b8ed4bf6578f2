"""The DuckDB warehouse IO manager.

``dagster-duckdb-pandas`` writes a whole table as ``DELETE`` + ``INSERT``: two commits, so a reader
can see an empty table in between; an empty DataFrame is skipped (the table keeps its old rows or
is never created); and a DataFrame with a changed column list fails to insert into the old table.
This subclass keeps the library's connection handling, partition support and loading, and
replaces a non-partitioned table atomically in one short transaction
(``CREATE OR REPLACE TABLE ... AS SELECT``), empty frames and new columns included.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb
import pandas as pd
from dagster import MetadataValue, OutputContext, TableColumn, TableSchema
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBResource
from dagster_duckdb.io_manager import DuckDbClient
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
        # whole tables are replaced by the type handler in one transaction; only partitioned
        # tables (a later issue) need the library's DELETE of the partition's rows
        if table_slice.partition_dimensions:
            DuckDbClient.delete_table_slice(context, table_slice, connection)


class _ReplacingPandasTypeHandler(DuckDBPandasTypeHandler):
    def handle_output(
        self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection
    ):
        if table_slice.partition_dimensions:
            return super().handle_output(context, table_slice, obj, connection)
        table = f"{table_slice.schema}.{table_slice.table}"
        connection.register("finmath_output_frame", obj)
        try:
            connection.execute("BEGIN TRANSACTION")
            connection.execute(
                f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM finmath_output_frame"
            )
            connection.execute("COMMIT")
        except Exception:
            connection.execute("ROLLBACK")
            raise
        finally:
            connection.unregister("finmath_output_frame")
        columns = connection.execute(f"DESCRIBE {table}").fetchall()
        context.add_output_metadata(
            {
                "dagster/row_count": obj.shape[0],
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
