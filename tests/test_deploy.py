"""The deployment files: docker-compose.yml validates, and every command in it parses with our CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from crawler.app.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "configs" / "prometheus.yml"


def _tool(name: str, package: str) -> str:
    """The path of a tool the deployment tests need; missing, they skip, except under CI=true (fail)."""
    tool = shutil.which(name)
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (scripts/install.sh --test installs {package})")
        pytest.skip(f"{name} not installed (outside CI only: CI=true fails instead)")
    return tool


def test_compose_file_validates_with_docker_compose() -> None:
    tool = _tool("docker-compose", "docker-compose")
    proc = subprocess.run([tool, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_service_command_parses() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"redis", "frontier", "worker", "submit", "status", "prometheus"} <= set(services)
    parser = build_parser()
    for name in ("frontier", "worker"):
        args = parser.parse_args(services[name]["command"])
        assert args.redis == "redis://redis:6379/0" and args.job == "crawl"
    submit = [*services["submit"]["entrypoint"][1:], "https://www.example.com/"]
    assert parser.parse_args(submit).command == "submit"
    assert parser.parse_args(services["status"]["entrypoint"][1:]).command == "status"
    redis_cmd = services["redis"]["command"]
    assert "--appendonly" in redis_cmd and redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"


def test_dockerfile_installs_the_package_and_chromium() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.lock" in text and "chromium" in text
    assert "pip install --no-cache-dir --no-deps ." in text
    assert 'ENTRYPOINT ["crawler"]' in text


def test_prometheus_config_passes_promtool() -> None:
    tool = _tool("promtool", "the prometheus package")
    proc = subprocess.run([tool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    # CI gets promtool the way it gets redis-server and chromium.
    assert "command -v promtool >/dev/null 2>&1 || need+=(prometheus)" in (ROOT / "scripts" / "install.sh").read_text()


def test_prometheus_scrapes_the_ports_the_crawler_services_serve() -> None:
    """The compose Prometheus mounts configs/prometheus.yml, whose targets are the frontier's and the workers'
    `--metrics-port`, served on every interface of their containers."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    prom = services["prometheus"]
    assert "./configs/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    parser = build_parser()
    ports = {}
    for name in ("frontier", "worker"):
        args = parser.parse_args(services[name]["command"])
        assert args.metrics_host == "0.0.0.0", name  # reachable from the prometheus container
        ports[name] = args.metrics_port
    jobs = {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}
    assert jobs["crawler-frontier"]["static_configs"] == [{"targets": [f"frontier:{ports['frontier']}"]}]
    # Workers by DNS: one A record per replica of the compose service, so `--scale worker=N` is scraped whole.
    [sd] = jobs["crawler-worker"]["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A" and sd["port"] == ports["worker"]
