"""The settings object: environment variables, defaults and clear errors."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from finmath_assets.core.embeddings import DEFAULT_MODEL_NAME
from finmath_assets.settings import Settings
from serving.settings import ServingSettings

CONFIGURATION_DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "FINMATH_HOME",
        "FINMATH_SOURCE",
        "FINMATH_HF_TOKEN",
        "HF_TOKEN",
        "FINMATH_MODEL_CACHE_DIR",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.home == tmp_path / "data"
    assert settings.warehouse_path == tmp_path / "data" / "warehouse.duckdb"
    assert settings.hf_cache_dir == tmp_path / ".cache" / "hf"
    assert (settings.source, settings.hf_dataset) == ("local", "yale-nlp/FinanceMath")
    assert settings.embedding_model == DEFAULT_MODEL_NAME
    assert settings.hf_token_value is None
    assert (settings.embedding_backend, settings.embedding_batch_size) == ("onnx", 1)
    assert settings.model_cache_dir_value == tmp_path / "data" / "models"
    embedder = settings.embedder(threads=1)
    assert (embedder.backend, embedder.threads, embedder.models_dir) == (
        "onnx",
        1,
        tmp_path / "data" / "models",
    )


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FINMATH_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("FINMATH_SOURCE", "huggingface")
    monkeypatch.setenv("FINMATH_EMBEDDING_BATCH_SIZE", "16")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    settings = Settings()
    assert settings.home == tmp_path / "h"
    assert settings.source == "huggingface"
    assert settings.embedding_batch_size == 16
    assert settings.hf_token_value == "hf_secret"
    assert "hf_secret" not in repr(settings)  # the token never shows in logs or the UI
    monkeypatch.setenv("FINMATH_HF_TOKEN", "hf_preferred")
    assert Settings().hf_token_value == "hf_preferred"


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("FINMATH_SOURCE", "s3", "source"),
        ("FINMATH_EMBEDDING_BATCH_SIZE", "0", "embedding_batch_size"),
        ("FINMATH_EMBEDDING_BATCH_SIZE", "many", "embedding_batch_size"),
        ("FINMATH_EMBEDDING_BACKEND", "tensorrt", "embedding_backend"),
        ("FINMATH_EMBEDDING_THREADS", "-1", "embedding_threads"),
        ("FINMATH_SANDBOX_ISOLATION", "docker", "sandbox_isolation"),
    ],
)
def test_bad_values_name_the_field(monkeypatch: pytest.MonkeyPatch, name, value, field) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_every_setting_is_in_the_configuration_doc() -> None:
    text = CONFIGURATION_DOC.read_text()
    table = text[text.index("## Configuration") :]
    missing = [
        f"FINMATH_{name.upper()}"
        for name in Settings.model_fields
        if f"`FINMATH_{name.upper()}`" not in table
    ]
    # the serving rows group related limits: `FINMATH_SERVING_A` / `_B` / `_C`
    missing += [
        f"FINMATH_SERVING_{name.upper()}"
        for name in ServingSettings.model_fields
        if f"`FINMATH_SERVING_{name.upper()}`" not in table and f"`_{name.upper()}`" not in table
    ]
    assert missing == []


def test_sandbox_isolation_reaches_the_check_and_the_llm_evaluation(tmp_path: Path) -> None:
    from finmath_assets.definitions import build_definitions

    settings = Settings(
        home=tmp_path / "home", hf_cache_dir=tmp_path / "hf", sandbox_isolation="seccomp"
    )
    resource = build_definitions(settings).resources["sandbox"]
    assert resource.limits().isolation == "seccomp"


def test_executor_is_chosen_by_setting(tmp_path: Path) -> None:
    import dagster as dg

    from finmath_assets.definitions import build_definitions

    def executor(**overrides: object) -> dg.ExecutorDefinition:
        settings = Settings(home=tmp_path / "home", hf_cache_dir=tmp_path / "hf", **overrides)
        return build_definitions(settings).resolve_job_def("finmath_job").executor_def

    assert executor() is dg.in_process_executor
    assert executor(executor="multiprocess") is dg.multiprocess_executor
    # the scale-out executors are optional extras: a clear error names the one to install
    with pytest.raises(dg.DagsterInvalidDefinitionError, match=r"pip install 'finmath\[k8s\]'"):
        executor(executor="k8s")
    with pytest.raises(ValidationError, match="executor"):
        Settings(executor="threads")
