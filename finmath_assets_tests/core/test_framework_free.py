"""The shared feature code must not import Dagster or FastAPI (the service imports it too), nor
the application's settings or the service: core takes its configuration as arguments."""

import ast
import subprocess
import sys
from pathlib import Path

import finmath_assets.core

CORE = Path(finmath_assets.core.__file__).parent
# what core must never import, not even for type checking (prefixes of module names)
FORBIDDEN = ("dagster", "fastapi", "pydantic_settings", "serving", "finmath_assets.settings")


def _forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


def _imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports anywhere, ``if TYPE_CHECKING:``
    blocks and functions included; ``from a import b`` counts as ``a`` and ``a.b``, relative
    imports resolved."""
    parts = package.split(".")
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            modules.add(module)
            modules.update(f"{module}.{alias.name}" for alias in node.names)
    return modules


def _package(path: Path) -> str:
    return ".".join(["finmath_assets", "core", *path.relative_to(CORE).parent.parts])


def test_core_modules_import_without_dagster_or_fastapi() -> None:
    modules = sorted(
        ".".join(p.relative_to(CORE).with_suffix("").parts).removesuffix(".__init__")
        for p in CORE.rglob("*.py")
        if p != CORE / "__init__.py"
    )
    assert {
        "features",
        "numbers",
        "records",
        "tables",
        "text",
        "embeddings",
        "sources",
        "onnx_encoder",
        "openvino_encoder",
        "market.prices",
        "market.forecasting",
        "llm.client",
    } <= set(modules)
    code = (
        "import sys\n"
        + "".join(f"import finmath_assets.core.{m}\n" for m in modules)
        + f"forbidden = {FORBIDDEN!r}\n"
        + "bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') "
        + "for f in forbidden))\n"
        + "assert not bad, bad\n"
        + "import finmath_assets.settings\n"
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'dagster', 'fastapi'})\n"
        + "assert not bad, bad\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_core_sources_do_not_mention_the_frameworks() -> None:
    for path in CORE.rglob("*.py"):
        text = path.read_text()
        assert "import dagster" not in text and "from dagster" not in text, path
        assert "import fastapi" not in text and "from fastapi" not in text, path


def test_core_sources_import_neither_the_app_settings_nor_the_service() -> None:
    # static, so an import under `if TYPE_CHECKING:` (which never runs) is caught too
    found = {
        str(path.relative_to(CORE)): sorted(
            filter(_forbidden, _imported_modules(path.read_text(), _package(path)))
        )
        for path in sorted(CORE.rglob("*.py"))
    }
    assert {path: modules for path, modules in found.items() if modules} == {}


def test_the_import_scan_sees_every_spelling() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from finmath_assets.settings import Settings\n"
        "from finmath_assets import settings\n"
        "from ... import settings as s\n"
        "from .. import features\n"
        "import serving.app\n"
        "def f():\n"
        "    from pydantic_settings import BaseSettings\n"
    )
    found = _imported_modules(source, "finmath_assets.core.llm")
    assert "finmath_assets.core.features" in found
    assert set(filter(_forbidden, found)) == {
        "finmath_assets.settings",
        "finmath_assets.settings.Settings",
        "serving.app",
        "pydantic_settings",
        "pydantic_settings.BaseSettings",
    }
