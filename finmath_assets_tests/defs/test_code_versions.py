"""Code versions: every asset of the FinanceMath graph has one, built from its module and the
core modules it reaches, stable from one build to the next."""

from finmath_assets.definitions import build_definitions
from finmath_assets.defs.code_versions import _core_modules_used, module_code_version
from finmath_assets.defs.finmath.assets import features, ingestion
from finmath_assets.settings import Settings


def test_an_asset_module_reaches_the_core_modules_behind_it() -> None:
    # features.py imports core.features, which parses tables with core.tables and core.numbers
    assert {
        "finmath_assets.core.features",
        "finmath_assets.core.tables",
        "finmath_assets.core.numbers",
    } <= _core_modules_used(features)
    assert "finmath_assets.core.modeling" not in _core_modules_used(features)
    assert module_code_version(features) != module_code_version(ingestion)


def test_every_finmath_asset_has_a_stable_code_version(tmp_path) -> None:
    def versions() -> dict[str, str | None]:
        defs = build_definitions(Settings(home=tmp_path / "home", hf_cache_dir=tmp_path / "hf"))
        graph = defs.get_repository_def().asset_graph
        return {
            key.to_user_string(): graph.get(key).code_version
            for key in graph.get_all_asset_keys()
            if key.path[0] == "finmath"
        }

    first = versions()
    assert len(first) == 14 and all(first.values()), first
    assert versions() == first
    assert first["finmath/validated_records"] == first["finmath/raw_records"]  # one module
    assert first["finmath/features"] != first["finmath/raw_records"]
