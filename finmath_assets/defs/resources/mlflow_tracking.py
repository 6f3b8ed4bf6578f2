"""MLflow tracking for the assets.

A small resource instead of ``dagster_mlflow.mlflow_tracking``: that resource is the old
function-style API, starts a run when the resource initialises and, used with assets, leaves the
MLflow run ``RUNNING`` after the step ends. Here a run is a context manager that always ends
``FINISHED`` or ``FAILED``, the tracking URI is always explicit (MLflow 3 would otherwise create
``mlflow.db`` in the working directory), and the experiment's artefact location is pinned.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from finmath_assets.settings import Settings

if TYPE_CHECKING:  # mlflow takes ~2 s to import: only runs that track pay for it
    import mlflow
    from mlflow.tracking import MlflowClient


class MlflowTrackingResource(dg.ConfigurableResource):
    tracking_uri: str
    registry_uri: str | None
    experiment_name: str
    artifact_location: str | None
    model_name: str

    @classmethod
    def from_settings(cls, settings: Settings) -> MlflowTrackingResource:
        return cls(
            tracking_uri=settings.mlflow_tracking_uri_value,
            registry_uri=settings.mlflow_registry_uri,
            experiment_name=settings.mlflow_experiment,
            artifact_location=settings.mlflow_artifact_location_value,
            model_name=settings.model_name,
        )

    def client(self) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        # always explicit: MlflowClient falls back to the process-global registry URI, which
        # another resource (or test) may have pointed elsewhere
        return MlflowClient(
            tracking_uri=self.tracking_uri, registry_uri=self.registry_uri or self.tracking_uri
        )

    def _configure(self) -> None:
        import mlflow

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri or self.tracking_uri)

    def experiment_id(self) -> str:
        self._configure()
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(
            self.experiment_name, artifact_location=self.artifact_location
        )

    @contextmanager
    def start_run(self, run_name: str, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
        """An MLflow run that ends FINISHED on success and FAILED on any exception."""
        import mlflow

        experiment_id = self.experiment_id()
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
        try:
            yield run
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run(status="FINISHED")
