"""Dagster definitions: assets, resources and (in later issues) checks, sensors and schedules."""
