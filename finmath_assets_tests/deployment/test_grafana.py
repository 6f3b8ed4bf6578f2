"""The provisioned Grafana dashboard, validated offline (no Grafana server can run here): it
decodes with the Grafana Foundation SDK, every panel uses the provisioned datasource, and every
PromQL expression passes promtool and names a metric the service exports."""

import json
import re
import subprocess
from pathlib import Path

import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard

from serving.metrics import ServiceMetrics

GRAFANA = Path(__file__).resolve().parents[2] / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "finmath.json"


def _targets(dashboard: dict) -> list[dict]:
    return [t for panel in dashboard["panels"] for t in panel.get("targets", [])]


def _datasource_uids(dashboard: dict) -> set[str]:
    return {p["datasource"]["uid"] for p in dashboard["panels"]} | {
        t["datasource"]["uid"] for t in _targets(dashboard)
    }


def _promql_errors(promtool: str, expressions: list[str], tmp_path: Path) -> str:
    """promtool checks PromQL inside rule files: one recording rule per expression."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    return "" if done.returncode == 0 else done.stdout + done.stderr


def test_dashboard_decodes_and_uses_the_provisioned_datasource() -> None:
    raw = json.loads(DASHBOARD.read_text())
    decoded = Dashboard.from_json(raw)
    assert decoded.title == "finmath inference" and len(decoded.panels or []) == len(raw["panels"])
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {d["uid"] for d in provisioned["datasources"]}
    assert _datasource_uids(raw) == uids == {"finmath-prometheus"}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "finmath.yml").read_text())
    assert provider["providers"][0]["options"]["path"].endswith("/finmath")
    titles = " ".join(p["title"] for p in raw["panels"]).lower()
    for topic in ("requests", "latency", "error", "prediction", "model", "drift"):
        assert topic in titles, topic


def test_every_dashboard_query_is_valid_promql_on_metrics_the_service_exports(
    promtool: str, tmp_path: Path
) -> None:
    raw = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for t in _targets(raw)]
    assert _promql_errors(promtool, expressions, tmp_path) == ""
    exported = {m.name for m in ServiceMetrics().registry.collect()}
    for expression in expressions:
        for name in set(re.findall(r"\bfinmath_[a-z_]+", expression)):
            base = re.sub(r"_(total|bucket|count|sum|info)$", "", name)
            assert base in exported, f"{name} in {expression!r} is not exported by the service"


def test_the_validation_catches_a_broken_dashboard(promtool: str, tmp_path: Path) -> None:
    raw = json.loads(DASHBOARD.read_text())
    raw["panels"][0]["targets"][0]["datasource"]["uid"] = "someone-elses"
    assert "someone-elses" in _datasource_uids(raw)
    assert _promql_errors(promtool, ["sum(rate(finmath_http_requests_total[1m])"], tmp_path)
