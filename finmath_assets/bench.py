"""Benchmark of the data spine: ``python -m finmath_assets.bench`` (or ``make bench``).

Prints, from one run on this machine:

0. ``make run`` on a fresh FINMATH_HOME (the venv installed), then ``make run`` again with nothing
   changed, and the registered model versions after each (``--make-run-only``: just this);
1. cold materialisation with the `make run` command (fresh FINMATH_HOME and datasets cache: every
   text is embedded), of the data spine (raw records to features) and of the whole graph;
2. warm re-materialisation with no data change (0 texts re-embedded), of both;
3. embedding throughput of the asset's embedding stage (hash, cache lookup, encode, cache write;
   configured backend, ONNX Runtime by default) against the baseline, a plain torch
   ``SentenceTransformer.encode`` of the same 1,200 texts (``--batch-size``), alternating the two
   for ``--rounds`` rounds and reporting the median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from finmath_assets.defs.constants import DATA_SPINE_ASSETS, KEY_PREFIX

ROOT = Path(__file__).resolve().parents[1]


DATA_SPINE = ",".join(f"{KEY_PREFIX}/{name}" for name in DATA_SPINE_ASSETS)
WHOLE_GRAPH = f"key:{KEY_PREFIX}/*"  # the FinanceMath graph (the market half has its own jobs)


def _materialize(home: Path, selection: str, **settings: str) -> float:
    """Run the `make run` command on a fresh ``home``; ``settings`` are extra FINMATH_* values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINMATH_")}
    env.update(settings)
    env.update(
        FINMATH_HOME=str(home),
        FINMATH_HF_CACHE_DIR=str(home / "hf-cache"),
        DAGSTER_HOME=str(home / "dagster_home"),
        HF_HUB_OFFLINE="1",
    )
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    dagster = Path(sys.executable).parent / "dagster"
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "--select",
            selection,
            "-m",
            "finmath_assets.definitions",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"materialisation failed in {home}")
    return seconds


def _make_run(home: Path) -> float:
    """`make run` on ``home`` (a fresh one: everything is built), its wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINMATH_", "DAGSTER_"))}
    started = time.perf_counter()
    done = subprocess.run(
        ["make", "run", f"FINMATH_HOME={home}"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    (home.parent / f"make-run-{int(started)}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.stderr.write((done.stdout + done.stderr)[-4000:])
        raise SystemExit(f"make run failed in {home}")
    return seconds


def _registered_versions(home: Path) -> int:
    import mlflow

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return sum(
        len(client.search_model_versions(f"name='{model.name}'"))
        for model in client.search_registered_models()
    )


def _make_run_twice(tmp: Path) -> dict[str, float]:
    home = tmp / "make-run" / "home"
    home.parent.mkdir(parents=True)
    print("make run on a fresh FINMATH_HOME ...", flush=True)
    cold = _make_run(home)
    after_one = _registered_versions(home)
    print("make run again, nothing changed ...", flush=True)
    second = _make_run(home)
    return {
        "make_run_cold_seconds": cold,
        "make_run_second_seconds": second,
        "model_versions_after_one": after_one,
        "model_versions_after_two": _registered_versions(home),
    }


def _print_make_run(figures: dict[str, float]) -> None:
    print()
    print("| `make run` | value | target |")
    print("|---|---|---|")
    print(
        f"| cold, fresh FINMATH_HOME, venv installed | {figures['make_run_cold_seconds']:.1f} s "
        "| <= 150 s |"
    )
    print(f"| second, nothing changed | {figures['make_run_second_seconds']:.1f} s | <= 30 s |")
    print(
        "| registered model versions after one / two runs | "
        f"{figures['model_versions_after_one']:.0f} / {figures['model_versions_after_two']:.0f} "
        "| equal |"
    )


def _embedding_metadata(home: Path) -> dict:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster_home"))
    event = instance.get_latest_materialization_event(
        dg.AssetKey(["finmath", "question_embeddings"])
    )
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _throughput(rounds: int, batch_size: int) -> dict:
    from sentence_transformers import SentenceTransformer

    from finmath_assets.core.sources import EMBEDDED_DATA_DIR
    from finmath_assets.core.text import record_text
    from finmath_assets.defs.finmath.assets.embeddings import embed_with_cache
    from finmath_assets.defs.resources import WarehouseResource
    from finmath_assets.settings import Settings

    records = [
        record
        for split in ("validation", "test")
        for record in json.loads((EMBEDDED_DATA_DIR / f"{split}.json").read_text())
    ]
    texts = [record_text(r["question"], r["tables"]) for r in records]
    with tempfile.TemporaryDirectory() as models:
        embedder = Settings(model_cache_dir=Path(models)).embedder().load()
        plain_model = SentenceTransformer(embedder.resolved.path, device="cpu")
        plain, stage = [], []
        for round_index in range(rounds):
            for kind in ("plain", "asset") if round_index % 2 == 0 else ("asset", "plain"):
                if kind == "plain":
                    started = time.perf_counter()
                    plain_model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
                    plain.append(time.perf_counter() - started)
                else:
                    with tempfile.TemporaryDirectory() as tmp:
                        warehouse = WarehouseResource(database=str(Path(tmp) / "bench.duckdb"))
                        result = embed_with_cache(
                            texts, embedder.model_id, lambda: embedder, warehouse
                        )
                        assert result.embedded == len(texts)
                        stage.append(result.stage_seconds)
                seconds = (plain if kind == "plain" else stage)[-1]
                print(f"  round {round_index + 1} {kind:<5} {seconds:6.1f} s", flush=True)
    plain_s, stage_s = statistics.median(plain), statistics.median(stage)
    return {
        "texts": len(texts),
        "backend": embedder.backend,
        "asset_batch_size": embedder.batch_size,
        "plain_seconds": plain_s,
        "asset_seconds": stage_s,
        "plain_texts_per_second": len(texts) / plain_s,
        "asset_texts_per_second": len(texts) / stage_s,
        "speedup": plain_s / stage_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (median)")
    parser.add_argument("--batch-size", type=int, default=64, help="of the plain baseline")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--make-run-only", action="store_true", help="only section 0")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    runs: dict[str, tuple[float, int]] = {}
    cold_meta: dict = {}
    with tempfile.TemporaryDirectory(prefix="finmath-bench-") as tmp:
        make_run = _make_run_twice(Path(tmp))
        if args.make_run_only:
            _print_make_run(make_run)
            if args.json:
                args.json.write_text(json.dumps(make_run, indent=2))
            return 0
        for label, selection in (("data spine", DATA_SPINE), ("whole graph", WHOLE_GRAPH)):
            home = Path(tmp) / label.replace(" ", "-")
            for state in ("cold", "warm"):
                print(f"{state} materialisation of the {label} ...", flush=True)
                seconds = _materialize(home, selection)
                meta = _embedding_metadata(home)
                runs[f"{state} {label}"] = (seconds, meta["texts_embedded"])
                if state == "cold" and not cold_meta:
                    cold_meta = meta
    print(f"embedding throughput, {args.rounds} rounds ...", flush=True)
    throughput = _throughput(args.rounds, args.batch_size)

    figures = {
        **make_run,
        **{f"{name.replace(' ', '_')}_seconds": sec for name, (sec, _) in runs.items()},
        **{f"{name.replace(' ', '_')}_texts_embedded": n for name, (_, n) in runs.items()},
        "cold_encode_texts_per_second": cold_meta["texts_per_second"],
        "cold_model_load_seconds": cold_meta["model_load_seconds"],
        **throughput,
    }
    targets = {"cold data spine": "<= 60 s", "warm data spine": "<= 10 s, 0 texts"}
    _print_make_run(make_run)
    print()
    print("| measure | value | target |")
    print("|---|---|---|")
    for name, (seconds, embedded) in runs.items():
        print(
            f"| {name} (`make run` command) | {seconds:.1f} s, {embedded} texts embedded | "
            f"{targets.get(name, '')} |"
        )
    print(
        "| model load in the cold run (runtime import, ONNX export included) | "
        f"{cold_meta['model_load_seconds']:.1f} s | |"
    )
    print(f"| encode rate inside the cold run | {cold_meta['texts_per_second']:.1f} texts/s | |")
    print(
        f"| plain torch SentenceTransformer.encode, batch {args.batch_size} | "
        f"{throughput['plain_texts_per_second']:.1f} texts/s "
        f"({throughput['plain_seconds']:.1f} s) | baseline |"
    )
    print(
        f"| asset embedding stage, {throughput['backend']} backend, batch "
        f"{throughput['asset_batch_size']} | {throughput['asset_texts_per_second']:.1f} texts/s "
        f"({throughput['asset_seconds']:.1f} s) | |"
    )
    print(f"| asset stage speed over plain encode | {throughput['speedup']:.2f}x | >= 0.91x |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
