"""Secrets handed to a resource without becoming its config.

A ``dg.ResourceDependency`` field filled with :func:`secret` gets the value at run time, but the
value is not part of the resource's config, so the Dagster UI (which displays config) never shows
it. ``from_settings`` fills these fields from the settings: no resource reads them itself.
"""

from __future__ import annotations

import dagster as dg


def secret(value: str | None, description: str) -> dg.ResourceDefinition:
    """``value`` as a nested resource of its own, with no config to display."""
    return dg.ResourceDefinition.hardcoded_resource(value, description)
