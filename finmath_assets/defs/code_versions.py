"""Code versions: an asset's is a digest of the module that defines it and of every ``core``
module it reaches, so Dagster's provenance (and the automation that follows data versions) sees
a change in the code that computes an asset as a change."""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Sequence
from types import ModuleType

import dagster as dg

CORE = "finmath_assets.core"


def _core_modules_used(module: ModuleType) -> set[str]:
    """Names of the ``core`` modules ``module`` uses, directly or through other core modules."""
    found: set[str] = set()
    pending = [module]
    while pending:
        for value in vars(pending.pop()).values():
            name = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", "")
            if isinstance(name, str) and name.startswith(CORE) and name not in found:
                found.add(name)
                pending.append(sys.modules[name])
    return found


def module_code_version(module: ModuleType) -> str:
    digest = hashlib.sha256(inspect.getsource(module).encode())
    for name in sorted(_core_modules_used(module)):
        digest.update(inspect.getsource(sys.modules[name]).encode())
    return digest.hexdigest()[:16]


def load_versioned_assets(modules: Sequence[ModuleType]) -> list[dg.AssetsDefinition]:
    """The assets of ``modules``, each carrying its module's code version."""
    assets: list[dg.AssetsDefinition] = []
    for module in modules:
        version = module_code_version(module)
        loaded = [
            a for a in dg.load_assets_from_modules([module]) if isinstance(a, dg.AssetsDefinition)
        ]
        assets += dg.map_asset_specs(
            lambda spec, version=version: spec.replace_attributes(code_version=version), loaded
        )
    return assets
