"""Resources, one module per external system."""

from finmath_assets.defs.resources.alerts import AlertSinkResource
from finmath_assets.defs.resources.embedding_model import EmbeddingModelResource
from finmath_assets.defs.resources.llm import LLMResource
from finmath_assets.defs.resources.market import ForecastingResource, MarketFeedsResource
from finmath_assets.defs.resources.mlflow_tracking import MlflowTrackingResource
from finmath_assets.defs.resources.monitoring import MonitoringResource
from finmath_assets.defs.resources.processed_files import ProcessedFilesResource
from finmath_assets.defs.resources.quality import QualityResource
from finmath_assets.defs.resources.quarantine import QuarantineLimitsResource
from finmath_assets.defs.resources.sandbox import SandboxResource
from finmath_assets.defs.resources.source import FinanceMathSourceResource
from finmath_assets.defs.resources.training import TrainingResource
from finmath_assets.defs.resources.warehouse import WarehouseIOManager, WarehouseResource

__all__ = [
    "AlertSinkResource",
    "EmbeddingModelResource",
    "FinanceMathSourceResource",
    "ForecastingResource",
    "LLMResource",
    "MarketFeedsResource",
    "MlflowTrackingResource",
    "MonitoringResource",
    "ProcessedFilesResource",
    "QualityResource",
    "QuarantineLimitsResource",
    "SandboxResource",
    "TrainingResource",
    "WarehouseIOManager",
    "WarehouseResource",
]
