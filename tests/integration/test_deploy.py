"""compose.yaml, the Dockerfile and deploy/: valid, and the topology the design asks for.

Images cannot be built here, so compose.yaml is checked against the Compose specification
(the `compose-spec` package), its references are resolved, and every config it mounts is
checked by its own tool: nats-server -t, promtool check/test, JSON for Grafana.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyOptions

from ironstar.natsserver import binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed = PyOptions(apply_merge=True).from_yaml((ROOT / "compose.yaml").read_text())
    parsed.validate()
    spec: dict[str, Any] = parsed.to_dict()
    return spec


def _of(compose: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if re.fullmatch(rf"{prefix}-\d", n)}


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_compose_runs_three_nats_nodes_in_one_jetstream_cluster(compose: dict[str, Any]) -> None:
    nodes = _of(compose, "nats")
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    assert len({tuple(n["volumes"]) for n in nodes.values()}) == 3, "each node its own store"
    config = (DEPLOY / "nats" / "nats.conf").read_text()
    assert "sync_interval: always" in config
    for node in nodes:
        assert f"nats-route://{node}:6222" in config
    checked = subprocess.run(
        [str(binary()), "-t", "-c", str(DEPLOY / "nats" / "nats.conf")],
        env={"NATS_SERVER_NAME": "nats-1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_compose_runs_replicas_of_every_service_against_every_node(
    compose: dict[str, Any],
) -> None:
    writers, projectors = _of(compose, "writer"), _of(compose, "projector")
    gateways = _of(compose, "gateway")
    assert (len(writers), len(projectors), len(gateways)) == (2, 2, 2)
    for service in [*writers.values(), *projectors.values(), *gateways.values()]:
        env = service["environment"]
        assert env["IRONSTAR_NATS_REPLICAS"] == "3"
        assert env["IRONSTAR_NATS_URL"].count("nats://") == 3
    names = {p["environment"]["IRONSTAR_PROJECTOR_NAME"] for p in projectors.values()}
    volumes = {p["volumes"][0].split(":")[0] for p in projectors.values()}
    assert len(names) == len(volumes) == 2, "each projector replica its own name and volume"
    published = {g["ports"][0].rsplit(":", 2)[-2] for g in gateways.values()}
    assert published == {"8000", "8001"}
    assert (ROOT / "Dockerfile").read_text().count("COPY") >= 5


def test_prometheus_scrapes_every_service_on_its_metrics_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = config["scrape_configs"]
    targets = {t for job in jobs for c in job["static_configs"] for t in c["targets"]}
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        port = env.get("IRONSTAR_WRITER_METRICS_PORT") or env.get("IRONSTAR_PROJECTOR_METRICS_PORT")
        port = port or env.get("IRONSTAR_GATEWAY_PORT")
        if port is not None:
            assert f"{name}:{port}" in targets, f"{name} is not scraped"
    for exporter in _of(compose, "nats-exporter"):
        assert f"{exporter}:7777" in targets
    assert {"prometheus", "grafana"} <= set(compose["services"])


@needs_promtool
def test_alert_rules_pass_promtool_and_fire_at_the_design_thresholds() -> None:
    rules = DEPLOY / "prometheus" / "alerts.yml"
    for command in (
        ["check", "rules", str(rules)],
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        ["test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml")],
    ):
        done = subprocess.run(
            [str(PROMTOOL), *command], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
    groups = yaml.safe_load(rules.read_text())["groups"]
    exprs = " ".join(rule["expr"] for group in groups for rule in group["rules"])
    for threshold in (
        "append_duration_seconds_bucket[5m]))) > 0.1",
        "sse_emit_duration_seconds_bucket[5m]))) > 0.05",
        "(projection_lag_events) > 100",
        "increase(broadcast_lags_total[1m])) > 10",
        "(sse_connections) > 1000",
        "projection_batch_sizes_bucket[5m]))) < 2",
    ):
        assert threshold in exprs


def test_grafana_provisions_the_ironstar_dashboard_on_the_prometheus_datasource() -> None:
    grafana = DEPLOY / "grafana"
    source = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    dashboard = json.loads((grafana / "dashboards/ironstar.json").read_text())
    assert dashboard["uid"] == "ironstar"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert all(p["datasource"]["uid"] == uid for p in dashboard["panels"])
    for metric in ("append_duration_seconds", "projection_lag_events", "sse_connections"):
        assert any(metric in e for e in exprs), f"no panel shows {metric}"
