"""The executor, chosen by ``FINMATH_EXECUTOR``.

``in_process`` (default) runs every step of a run in one process: DuckDB takes one writer per
file, the embedding model loads once, and no step pays interpreter start-up. ``multiprocess``
runs steps in subprocesses (writes still serialised by pool ``duckdb``). ``k8s`` and ``celery``
hand each step to a Kubernetes Job or a Celery worker; they need the optional extras
``finmath[k8s]`` / ``finmath[celery]`` and a warehouse every worker can reach (docs/deployment.md,
"Scale-out").
"""

from __future__ import annotations

import importlib

import dagster as dg

from finmath_assets.settings import ExecutorName

# name -> (module, attribute, the pip extra that provides it)
_PLUGGABLE = {
    "k8s": ("dagster_k8s", "k8s_job_executor", "finmath[k8s]"),
    "celery": ("dagster_celery", "celery_executor", "finmath[celery]"),
}


def build_executor(name: ExecutorName) -> dg.ExecutorDefinition:
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    module_name, attribute, extra = _PLUGGABLE[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise dg.DagsterInvalidDefinitionError(
            f"FINMATH_EXECUTOR={name} needs {module_name}: pip install '{extra}'"
        ) from error
    return getattr(module, attribute)
