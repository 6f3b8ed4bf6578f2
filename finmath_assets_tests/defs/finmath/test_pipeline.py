"""The asset graph on real DuckDB files, the real data and the real MiniLM model."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from finmath_assets.core.features import feature_columns, features_from_request
from finmath_assets.core.sources import EMBEDDED_DATA_DIR
from finmath_assets.definitions import build_definitions
from finmath_assets.defs.constants import LLM_ASSETS, MODEL_ASSETS, MONITORING_ASSETS
from finmath_assets.defs.finmath.checks import CHECKS
from finmath_assets.defs.market.checks import MARKET_CHECKS
from finmath_assets_tests.conftest import Materialized, materialize

pytestmark = pytest.mark.slow  # materialises the real data (and runs make run)

ROOT = Path(__file__).resolve().parents[3]
ASSETS = [
    "raw_records",
    "validated_records",
    "rejected_records",
    "question_tables",
    "question_embeddings",
    "features",
]


def _query(settings, sql: str):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _frame(settings, table: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM finmath.{table}").fetchdf()


def test_every_table_holds_the_real_data(materialized_real: Materialized) -> None:
    s = materialized_real.settings
    counts = {t: _query(s, f"SELECT count(*) FROM finmath.{t}")[0][0] for t in ASSETS}
    assert counts == {
        "raw_records": 1200,
        "validated_records": 1200,
        "rejected_records": 0,
        "question_tables": 6699,
        "question_embeddings": 1200,
        "features": 1200,
    }
    assert dict(_query(s, "SELECT split, count(*) FROM finmath.raw_records GROUP BY 1")) == {
        "validation": 200,
        "test": 1000,
    }
    labelled = _query(
        s, "SELECT count(*) FROM finmath.validated_records WHERE ground_truth IS NOT NULL"
    )
    assert labelled[0][0] == 200
    meta = materialized_real.metadata("raw_records")
    assert (
        meta["sha256_validation"]
        == "e22fd12cfcc75098a2636ae34def1369dd6500c78e5c24724bed71ac84f1a711"
    )
    assert meta["sha256_test"] == "8aaabdc98cad0ec6c0128821185e3551e414d0cd5e5d20619faa86cb8e287bd2"


def test_raw_payload_is_the_record_as_loaded(materialized_real: Materialized, real_by_id) -> None:
    raw = _frame(materialized_real.settings, "raw_records")
    for row in raw.sample(50, random_state=0).itertuples():
        assert json.loads(row.payload) == real_by_id[row.question_id]


def test_embeddings_are_unit_384d_vectors(materialized_real: Materialized) -> None:
    emb = _frame(materialized_real.settings, "question_embeddings")
    matrix = np.vstack(emb["embedding"].to_numpy()).astype(np.float64)
    assert matrix.shape == (1200, 384)
    assert np.isfinite(matrix).all()
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert emb["question_id"].is_unique
    meta = materialized_real.metadata("question_embeddings")
    assert (meta["texts_embedded"], meta["texts_reused"], meta["embedding_dim"]) == (1200, 0, 384)
    assert meta["texts_per_second"] > 0


def test_features_table_and_parquet_agree(materialized_real: Materialized) -> None:
    s = materialized_real.settings
    table = _frame(s, "features")
    parquet = pd.read_parquet(s.processed_dir / "finance_math_features.parquet")
    pd.testing.assert_frame_equal(table, parquet, check_dtype=False)
    expected = feature_columns(384)
    assert list(table.columns) == ["question_id", "split", "topic", "ground_truth", *expected]
    assert materialized_real.metadata("features")["feature_columns"] == expected
    assert table["question_id"].is_unique and len(table) == 1200


def test_features_equal_the_serving_path_for_every_record(
    materialized_real: Materialized, real_by_id
) -> None:
    """Training/serving skew: rebuild each row from the raw record as the service will."""
    s = materialized_real.settings
    table = _frame(s, "features").set_index("question_id")
    embeddings = _frame(s, "question_embeddings").set_index("question_id")["embedding"]
    columns = feature_columns(384)
    for question_id, record in real_by_id.items():
        served = features_from_request(
            question=record["question"],
            tables=record["tables"],
            topic=record["topic"],
            embedding=embeddings[question_id],
        )
        np.testing.assert_array_equal(
            np.array([served[c] for c in columns]), table.loc[question_id, columns].to_numpy(float)
        )


def test_known_feature_values(materialized_real: Materialized) -> None:
    row = (
        _frame(materialized_real.settings, "features").set_index("question_id").loc["validation-0"]
    )
    # validation-0: $57,000 / $18,000 / 8 years / $15,000 / $27,000 / $21,000
    assert row["n_tables"] == 1 and row["n_numeric_cells"] == 6
    assert row["tbl_value_max"] == 57000.0 and row["tbl_value_min"] == 8.0
    assert row["tbl_value_sum"] == 57000 + 18000 + 8 + 15000 + 27000 + 21000
    assert row["topic__accounting"] == 1.0 and row["ground_truth"] == -8184.0
    no_numbers = _frame(materialized_real.settings, "features").query("tbl_value_count == 0")
    assert no_numbers["tbl_value_mean"].isna().all()  # missing, not zero


def test_unchanged_data_embeds_nothing(warm_copy: Path, monkeypatch, materialized_real) -> None:
    with dg.instance_for_test() as instance:
        run = materialize(warm_copy, monkeypatch, instance, selection=ASSETS)
        meta = run.metadata("question_embeddings")
    assert (meta["texts_embedded"], meta["texts_reused"]) == (0, 1200)
    before = _frame(materialized_real.settings, "question_embeddings")
    after = _frame(run.settings, "question_embeddings")
    np.testing.assert_array_equal(np.vstack(before["embedding"]), np.vstack(after["embedding"]))


def test_changing_one_record_embeds_one(warm_copy: Path, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "edited"
    folder.mkdir()
    for split in ("validation", "test"):
        records = json.loads((EMBEDDED_DATA_DIR / f"{split}.json").read_text())
        if split == "validation":
            records[7]["question"] += " Answer to two decimals."
        (folder / f"{split}.json").write_text(json.dumps(records))
    with dg.instance_for_test() as instance:
        run = materialize(warm_copy, monkeypatch, instance, selection=ASSETS, local_data_dir=folder)
        meta = run.metadata("question_embeddings")
    assert (meta["texts_embedded"], meta["texts_reused"]) == (1, 1199)


def _bad_data_folder(root: Path, real_validation: list, real_test: list) -> Path:
    folder = root / "bad"
    folder.mkdir()
    good = [dict(r) for r in real_validation[:4]]
    bad = [
        {**real_validation[4], "question": None},
        {**real_validation[5], "ground_truth": None},
        {**real_validation[6], "ground_truth": "forty"},
        {**real_validation[7], "topic": "Astrology"},
        {**real_validation[8], "question_id": "validation-0"},  # duplicate id
        {**real_validation[9], "tables": "not a list"},
    ]
    (folder / "validation.json").write_text(json.dumps(good + bad))
    (folder / "test.json").write_text(
        json.dumps([*real_test[:3], {**real_test[3], "ground_truth": 1.0}])
    )
    return folder


def test_bad_rows_are_quarantined_and_good_rows_flow_on(
    tmp_path: Path, monkeypatch, real_validation, real_test
) -> None:
    folder = _bad_data_folder(tmp_path, real_validation, real_test)
    with dg.instance_for_test() as instance:
        # the data spine only: 4 labelled rows are too few to train (a clear error, tested apart)
        # a handful of rows, bad on purpose: the checks' thresholds are for the real data and
        # are tested on their own (test_quality, test_automation)
        run = materialize(
            tmp_path / "home",
            monkeypatch,
            instance,
            selection=ASSETS,
            local_data_dir=folder,
            check_max_reject_rate=1.0,
            check_expected_labelled=4,
            check_min_numeric_share=0.0,
        )
        rejected_meta = run.metadata("rejected_records")
    s = run.settings
    rejected = _frame(s, "rejected_records").sort_values(["split", "row_index"])
    assert len(rejected) == 7 and rejected_meta["rejected_rows"] == 7
    reasons = {
        (r.split, r.row_index): json.loads(r.reasons) for r in rejected.itertuples(index=False)
    }
    assert reasons[("validation", 4)] == ["question: Input should be a valid string"]
    assert reasons[("validation", 5)] == ["record: Value error, labelled row has no ground_truth"]
    assert any("ground_truth" in r for r in reasons[("validation", 6)])
    assert any("unknown topic 'Astrology'" in r for r in reasons[("validation", 7)])
    assert reasons[("validation", 8)] == ["question_id: duplicate of row 0 of split 'validation'"]
    assert any(r.startswith("tables") for r in reasons[("validation", 9)])
    assert reasons[("test", 3)] == ["record: Value error, unlabelled row carries a ground_truth"]
    raw_payload = json.loads(
        rejected[(rejected["split"] == "validation") & (rejected["row_index"] == 6)][
            "payload"
        ].iloc[0]
    )
    assert raw_payload["ground_truth"] == "forty"  # the raw value is kept as it was
    validated = _frame(s, "validated_records")
    assert sorted(validated["question_id"]) == sorted(
        [r["question_id"] for r in real_validation[:4]] + [r["question_id"] for r in real_test[:3]]
    )
    assert len(_frame(s, "features")) == 7
    assert len(_frame(s, "raw_records")) == 14  # nothing dropped before validation


def test_warehouse_assets_share_the_single_writer_pool() -> None:
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()}
    names = [*ASSETS, *MODEL_ASSETS, *MONITORING_ASSETS, *LLM_ASSETS]
    market = [
        "market_prices",
        "rejected_market_prices",
        "price_features",
        "card_transactions",
        "rejected_card_transactions",
        "price_forecaster",
        "forecast_backtest_report",
    ]
    assert pools == {f"finmath/{name}": {"duckdb"} for name in names} | {
        f"market/{name}": {"duckdb"} for name in market
    } | {"llm/llm_qa_eval": {"duckdb"}}
    # the checks read the warehouse: they queue behind writers too
    assert {pool for c in (*CHECKS, *MARKET_CHECKS) for pool in c.op.pools} == {"duckdb"}
    instance_config = (ROOT / "dagster.yaml").read_text()
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as inst:
        assert inst.get_concurrency_config().pool_config.default_pool_limit == 1
    assert "default_limit: 1" in instance_config


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINMATH_")}
    env.update(FINMATH_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"), HF_HUB_OFFLINE="1")
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    return env


def test_summary_without_a_warehouse_says_what_to_do(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "finmath_assets.summary"],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "run `make run` first" in done.stderr


def test_definitions_validate_with_the_workspace(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Validation successful" in done.stdout + done.stderr


def test_nan_in_features_means_no_numbers(materialized_real: Materialized) -> None:
    table = _frame(materialized_real.settings, "features")
    empty = table[table["q_number_count"] == 0]
    assert len(empty) > 0 and empty["q_number_mean"].map(math.isnan).all()
