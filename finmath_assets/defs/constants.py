"""Names shared by the Dagster definitions."""

KEY_PREFIX = "finmath"  # asset key prefix and DuckDB schema
DUCKDB_POOL = "duckdb"  # concurrency pool of every asset that writes the warehouse (limit 1)
WAREHOUSE_IO_MANAGER = "warehouse_io_manager"
