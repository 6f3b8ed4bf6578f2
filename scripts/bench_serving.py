"""Side-by-side benchmark: our service against `mlflow models serve` of the same model.

    make bench-serving        (= .venv/bin/python scripts/bench_serving.py, after `make run`)

The peer is the champion wrapped in an MLflow pyfunc that does the same featurisation
(features_from_request on a torch sentence-transformers embedding, one text per request),
served by `mlflow models serve --env-manager local`. Both run on 127.0.0.1, one at a time (so
they never share the two cores), and receive the same request set (the 1,000 questions of the
test split, cycled in order) from wrk (Debian package `wrk`: a C load generator, so the client
takes little of the two cores) at concurrency 1, 8 and 32 for a fixed time per level. Prints
p50/p99 latency, requests/s and errors per level, and our/their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
import mlflow
import pandas as pd

from finmath_assets.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


class PeerModel(mlflow.pyfunc.PythonModel):
    """The champion behind MLflow's own scoring server, featurising like the assets do."""

    def load_context(self, context) -> None:
        from finmath_assets.core.embeddings import Embedder

        # the peer embeds the way sentence-transformers users do: torch, batch of one request
        self.embedder = Embedder(backend="torch").load()
        self.regressor = mlflow.sklearn.load_model(context.artifacts["regressor"])
        self.columns = json.loads(Path(context.artifacts["feature_columns"]).read_text())

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from finmath_assets.core.features import features_from_request
        from finmath_assets.core.text import record_text

        rows = []
        for record in model_input.to_dict("records"):
            tables = record.get("tables")
            tables = list(tables) if tables is not None else []
            vector = self.embedder.encode([record_text(record["question"], tables)])[0]
            rows.append(
                features_from_request(
                    question=record["question"],
                    tables=tables,
                    topic=record["topic"],
                    embedding=vector,
                )
            )
        return self.regressor.predict(pd.DataFrame(rows)[self.columns])


def _register_peer(settings: Settings) -> str:
    uri = settings.mlflow_tracking_uri_value
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    regressor = mlflow.artifacts.download_artifacts(f"models:/{settings.model_name}@champion")
    version = mlflow.tracking.MlflowClient().get_model_version_by_alias(
        settings.model_name, "champion"
    )
    columns = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="feature_columns.json"
    )
    mlflow.set_experiment("finmath-serving-bench")
    with mlflow.start_run(run_name="peer-pyfunc") as run:
        mlflow.pyfunc.log_model(
            name="peer",
            python_model=PeerModel(),
            artifacts={"regressor": regressor, "feature_columns": columns},
            pip_requirements=["mlflow", "lightgbm", "scikit-learn", "sentence-transformers"],
        )
    return f"runs:/{run.info.run_id}/peer"


def _start(cmd: list[str], health: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited; see {log}")
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"{cmd} did not become healthy; see {log}")


WRK_SCRIPT = """
local bodies, n, i = {}, 0, 0
for line in io.lines(os.getenv("BENCH_BODIES")) do n = n + 1; bodies[n] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % n + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "seconds": %f, "errors": %d, "p50_ms": %f, "p99_ms": %f}\\n',
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _wrk(url: str, bodies: Path, script: Path, concurrency: int, seconds: int) -> dict:
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "60s",
            "-s",
            str(script),
            url,
        ],
        env={**os.environ, "BENCH_BODIES": str(bodies)},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH "))
    result = json.loads(line[len("BENCH ") :])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--seconds", type=int, default=20, help="load time per level")
    parser.add_argument(
        "--ours-only", action="store_true", help="skip the peer (quick iterations; no ratios)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench-serving does)")
    settings = Settings()
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT question, tables, topic FROM finmath.validated_records WHERE split = 'test' "
            "ORDER BY question_id"
        ).fetchall()
    ours_bodies = [{"question": q, "tables": list(t), "topic": p} for q, t, p in rows]
    peer_bodies = [{"dataframe_records": [body]} for body in ours_bodies]
    peer_uri = _register_peer(settings)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri_value,
        # `mlflow models serve` starts `uvicorn` from PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    bin_dir = Path(sys.executable).parent
    levels = [int(level) for level in args.levels.split(",")]
    results: dict[str, dict[int, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        services = {
            "ours": (
                [
                    str(bin_dir / "uvicorn"),
                    "serving.app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "8765",
                ],
                "http://127.0.0.1:8765/health",
                "http://127.0.0.1:8765/predict",
                ours_bodies,
            ),
            "mlflow models serve": (
                [
                    str(bin_dir / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    peer_uri,
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    "8766",
                ],
                "http://127.0.0.1:8766/ping",
                "http://127.0.0.1:8766/invocations",
                peer_bodies,
            ),
        }
        script = Path(tmp) / "bench.lua"
        script.write_text(WRK_SCRIPT)
        if args.ours_only:
            del services["mlflow models serve"]
        for name, (cmd, health, url, bodies) in services.items():
            body_file = Path(tmp) / f"{name.split()[0]}-bodies.jsonl"
            body_file.write_text("".join(json.dumps(b) + "\n" for b in bodies))
            print(f"starting {name} ...", flush=True)
            process = _start(cmd, health, env, Path(tmp) / f"{name.split()[0]}.log")
            try:
                _wrk(url, body_file, script, 2, 5)  # warm-up
                results[name] = {}
                for level in levels:
                    r = results[name][level] = _wrk(url, body_file, script, level, args.seconds)
                    print(
                        f"  {name:<20} c={level:<3} {r['rps']:6.1f} req/s  "
                        f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                        f"requests {r['requests']}  errors {r['errors']}",
                        flush=True,
                    )
            finally:
                process.terminate()
                process.wait(30)
    if args.ours_only:
        return 0
    print()
    print(
        "| concurrency | ours req/s | peer req/s | ratio | ours p50 / p99 ms | peer p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    for level in levels:
        ours, peer = results["ours"][level], results["mlflow models serve"][level]
        ratio = ours["rps"] / peer["rps"]
        print(
            f"| {level} | {ours['rps']:.1f} | {peer['rps']:.1f} | {ratio:.2f}x | "
            f"{ours['p50_ms']:.0f} / {ours['p99_ms']:.0f} | "
            f"{peer['p50_ms']:.0f} / {peer['p99_ms']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
