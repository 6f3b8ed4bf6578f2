"""The sandbox's isolation (FINMATH_SANDBOX_ISOLATION; visible in the Dagster UI)."""

from __future__ import annotations

import dataclasses
from typing import Literal

import dagster as dg

from finmath_assets.core.sandbox import Limits
from finmath_assets.settings import Settings


class SandboxResource(dg.ConfigurableResource):
    isolation: Literal["auto", "bubblewrap", "seccomp"]

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxResource:
        return cls(isolation=settings.sandbox_isolation)

    def limits(self, base: Limits | None = None) -> Limits:
        """``base`` (default limits when omitted) with this isolation."""
        return dataclasses.replace(base or Limits(), isolation=self.isolation)
