"""The warehouse IO manager: atomic replace, empty frames, changed columns, real DuckDB file."""

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from finmath_assets.defs.resources import WarehouseIOManager, WarehouseResource


def _materialize(db: Path, frame: pd.DataFrame) -> dg.ExecuteInProcessResult:
    @dg.asset(key_prefix="finmath", name="things")
    def things() -> pd.DataFrame:
        return frame

    return dg.materialize([things], resources={"io_manager": WarehouseIOManager(database=str(db))})


def _rows(db: Path) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute("SELECT * FROM finmath.things").fetchdf()


def test_rewrite_replaces_rows_and_columns(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    _materialize(db, pd.DataFrame({"a": [1, 2, 3]}))
    assert _rows(db)["a"].tolist() == [1, 2, 3]
    result = _materialize(db, pd.DataFrame({"a": [9], "b": ["new column"]}))
    assert result.success
    assert _rows(db).to_dict("records") == [{"a": 9, "b": "new column"}]
    meta = result.asset_materializations_for_node("finmath__things")[0].metadata
    assert meta["dagster/row_count"].value == 1


def test_empty_frame_writes_an_empty_table(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    _materialize(db, pd.DataFrame({"a": [1]}))
    _materialize(db, pd.DataFrame({"a": pd.Series([], dtype="int64")}))
    assert len(_rows(db)) == 0  # the stock handler would have kept the old row


def test_failed_write_keeps_the_previous_table(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    _materialize(db, pd.DataFrame({"a": [1, 2]}))

    unstorable = pd.DataFrame({"a": [b"bytes", 1.5]})  # DuckDB cannot cast DOUBLE to BLOB
    with pytest.raises(duckdb.InvalidInputException, match="BLOB"):
        _materialize(db, unstorable)
    assert _rows(db)["a"].tolist() == [1, 2]  # rolled back: the old table is intact


def test_list_columns_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    _materialize(db, pd.DataFrame({"tables": [["| a |", "| b |"], []], "v": [[0.5, 0.25], [1.0]]}))
    rows = _rows(db)
    assert list(rows["tables"][0]) == ["| a |", "| b |"] and list(rows["tables"][1]) == []
    assert list(rows["v"][0]) == [0.5, 0.25]


def test_resource_closes_its_connection_when_the_work_fails(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    warehouse = WarehouseResource(database=str(db))
    with pytest.raises(duckdb.CatalogException), warehouse.get_connection() as conn:
        conn.execute("SELECT * FROM no_such_table")
    # a leaked read-write connection would make this read-only open fail in this process
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
