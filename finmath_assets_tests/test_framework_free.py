"""The shared feature code must not import Dagster or FastAPI (the service imports it too)."""

import subprocess
import sys
from pathlib import Path

import finmath_assets.core

CORE = Path(finmath_assets.core.__file__).parent


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
        "market.prices",
        "market.forecasting",
    } <= set(modules)
    code = (
        "import sys\n"
        + "".join(f"import finmath_assets.core.{m}\n" for m in modules)
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
