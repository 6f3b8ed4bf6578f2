"""The settings object: environment variables, defaults and clear errors."""

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, ValidationError

from finmath_assets.core.embeddings import DEFAULT_MODEL_NAME
from finmath_assets.settings import Settings
from serving.settings import ServingSettings

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"
SETTINGS_SOURCE = ROOT / "finmath_assets" / "settings.py"


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
    assert (settings.embedding_backend, settings.embedding_batch_size) == ("openvino", 1)
    assert settings.model_cache_dir_value == tmp_path / "data" / "models"
    embedder = settings.embedder(threads=1)
    assert (embedder.backend, embedder.threads, embedder.models_dir) == (
        "openvino",
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


def _settings_sections() -> dict[str, str]:
    """``FINMATH_<FIELD>`` -> the section comment (``# -- Title ---``) it sits under in
    settings.py."""
    sections, current = {}, None
    for line in SETTINGS_SOURCE.read_text().splitlines():
        if header := re.fullmatch(r"    # -- (.+?) -+", line):
            current = header.group(1)
        elif (field := re.match(r"    ([a-z_]+): ", line)) and current is not None:
            sections[f"FINMATH_{field.group(1).upper()}"] = current
    return sections


def _doc_sections() -> dict[str, list[str]]:
    """``### Title`` -> the variables its table rows document (the first cell's names, with
    shorthands like `_MAX_TABLES` as written)."""
    text = CONFIGURATION_DOC.read_text()
    body = text[text.index("## Configuration\n") :].split("\n## ")[0]
    sections: dict[str, list[str]] = {}
    current = None
    for line in body.splitlines():
        if line.startswith("### "):
            current = line.removeprefix("### ")
            sections[current] = []
        elif line.startswith("| `") and current is not None:
            sections[current] += re.findall(r"`([A-Z0-9_]+)`", line.split("|")[1])
    return sections


def test_every_setting_is_in_the_configuration_doc() -> None:
    settings_sections = _settings_sections()
    assert set(settings_sections) == {f"FINMATH_{name.upper()}" for name in Settings.model_fields}
    doc = _doc_sections()
    documented = {name: title for title, names in doc.items() for name in names}
    # every setting has a row, in the doc section named like its section in settings.py
    misplaced = {
        name: (section, documented.get(name))
        for name, section in settings_sections.items()
        if documented.get(name) != section
    }
    assert misplaced == {}
    # the settings' sections come first, in the same order; nothing else sits in them
    titles = list(dict.fromkeys(settings_sections.values()))
    assert list(doc)[: len(titles)] == titles
    aliases = {  # FINMATH_HF_TOKEN (or HF_TOKEN)
        choice
        for field in Settings.model_fields.values()
        if isinstance(field.validation_alias, AliasChoices)
        for choice in field.validation_alias.choices
    }
    known = set(settings_sections) | aliases
    stale = [name for title in titles for name in doc[title] if name not in known]
    assert stale == []
    # the serving rows group related limits: `FINMATH_SERVING_A` / `_B` / `_C`
    serving = next(names for title, names in doc.items() if "`FINMATH_SERVING_*`" in title)
    missing = [
        f"FINMATH_SERVING_{name.upper()}"
        for name in ServingSettings.model_fields
        if f"FINMATH_SERVING_{name.upper()}" not in serving and f"_{name.upper()}" not in serving
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
