"""Every Dagster run worker, code server and CLI call loads the definitions first, so what they
import is paid on each run: the heavy libraries wait for the step that uses them."""

import subprocess
import sys

# imported by the steps (or the requests) that use them, never by loading the definitions
DEFERRED = (
    "openai",
    "torch",
    "transformers",
    "mlflow",
    "evidently",
    "lightgbm",
    "mlforecast",
    "onnxruntime",
)


def test_loading_the_definitions_imports_none_of_the_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from finmath_assets.definitions import defs\n"
        "assert defs.resolve_job_def('finmath_job') is not None\n"
        f"loaded = sorted(m for m in {DEFERRED!r} if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
