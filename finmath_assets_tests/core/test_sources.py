"""Both sources go through `datasets`: the embedded snapshot and a hub-shaped folder."""

import json
import shutil
from pathlib import Path

import pytest

from finmath_assets.core.sources import (
    EMBEDDED_DATA_DIR,
    SourceError,
    load_huggingface,
    load_local,
    read_checksums,
    sha256_file,
)

PINNED = {
    "validation.json": "e22fd12cfcc75098a2636ae34def1369dd6500c78e5c24724bed71ac84f1a711",
    "test.json": "8aaabdc98cad0ec6c0128821185e3551e414d0cd5e5d20619faa86cb8e287bd2",
}


def test_embedded_snapshot_is_the_pinned_financemath_release() -> None:
    assert read_checksums(EMBEDDED_DATA_DIR) == PINNED
    for name, digest in PINNED.items():
        assert sha256_file(EMBEDDED_DATA_DIR / name) == digest
    assert "MIT" in (EMBEDDED_DATA_DIR / "LICENSE").read_text()
    assert "yale-nlp/FinanceMath" in (EMBEDDED_DATA_DIR / "README.md").read_text()


def test_local_source_loads_both_splits(tmp_path: Path) -> None:
    loaded = load_local(cache_dir=tmp_path / "cache")
    splits = [row.split for row in loaded.rows]
    assert (splits.count("validation"), splits.count("test")) == (200, 1000)
    assert loaded.provenance["sha256_validation"] == PINNED["validation.json"]
    first = loaded.rows[0]
    assert (first.split, first.row_index, first.record["question_id"]) == (
        "validation",
        0,
        "validation-0",
    )
    assert first.record["ground_truth"] == -8184.0
    assert loaded.rows[200].record["ground_truth"] is None  # test split is unlabelled


def test_a_changed_file_fails_the_checksum(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(EMBEDDED_DATA_DIR, folder)
    records = json.loads((folder / "validation.json").read_text())
    records[0]["question"] += " (edited)"
    (folder / "validation.json").write_text(json.dumps(records))
    with pytest.raises(SourceError, match=r"SHA-256 .* but SHA256SUMS pins"):
        load_local(folder, cache_dir=tmp_path / "cache")


def test_missing_folder_and_missing_split_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        load_local(tmp_path / "nowhere")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "validation.json").write_text("[]")
    with pytest.raises(SourceError, match=r"has no test\.json"):
        load_local(tmp_path / "only", cache_dir=tmp_path / "cache")


def test_unreadable_json_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "validation.json").write_text('[{"question_id": "validation-0", ')
    (folder / "test.json").write_text("[]")
    with pytest.raises(SourceError, match=r"cannot read .*validation.json as JSON records"):
        load_local(folder, cache_dir=tmp_path / "cache")


def test_mixed_value_types_survive_loading_for_validation_to_judge(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    rows = [
        {
            "question_id": "validation-0",
            "question": "q",
            "tables": [],
            "python_solution": "",
            "ground_truth": "abc",
            "topic": "Accounting",
        },
        {
            "question_id": "validation-1",
            "question": "q",
            "tables": "oops",
            "python_solution": "",
            "ground_truth": 1.5,
            "topic": "Accounting",
        },
    ]
    (folder / "validation.json").write_text(json.dumps(rows))
    (folder / "test.json").write_text("[]")
    loaded = load_local(folder, cache_dir=tmp_path / "cache")
    assert [row.record["ground_truth"] for row in loaded.rows] == ["abc", 1.5]
    assert loaded.rows[1].record["tables"] == "oops"


def hub_shaped_folder(root: Path) -> Path:
    """A folder laid out like the hub repository yale-nlp/FinanceMath."""
    repo = root / "yale-nlp" / "FinanceMath"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("---\nlicense: mit\n---\n# FinanceMath\n")
    for name in PINNED:
        shutil.copy(EMBEDDED_DATA_DIR / name, repo / name)
    return repo


def test_huggingface_source_reads_a_hub_shaped_folder(tmp_path: Path) -> None:
    repo = hub_shaped_folder(tmp_path)
    loaded = load_huggingface(str(repo), token="hf_dummy", cache_dir=tmp_path / "hf")
    splits = [row.split for row in loaded.rows]
    assert (splits.count("validation"), splits.count("test")) == (200, 1000)
    assert loaded.provenance["source"] == "huggingface"
    assert loaded.provenance["fingerprint_validation"]
    assert any((tmp_path / "hf").iterdir())  # datasets cached under the configured folder
    by_id = {row.record["question_id"]: row.record for row in loaded.rows}
    local = {
        row.record["question_id"]: row.record for row in load_local(cache_dir=tmp_path / "c").rows
    }
    assert by_id == local  # same records whichever source


def test_unreachable_gated_dataset_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="FINMATH_HF_TOKEN"):
        load_huggingface("yale-nlp/FinanceMath", token=None, cache_dir=tmp_path / "hf")
