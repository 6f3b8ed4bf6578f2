-- Runs once, when the PostgreSQL volume is first initialised: POSTGRES_DB (dagster) is created
-- by the image itself; the MLflow backend store gets a database of its own.
CREATE DATABASE mlflow;
