"""Offline checks of docker-compose.yml, config/compose.yaml and deploy/compose/ (no Docker engine needed)."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BRIDGE_CONFIG = ROOT / "config" / "compose.yaml"
HELPERS = ROOT / "deploy" / "compose"

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
EMULATOR_CONNECTION = (
    "Endpoint=sb://eventhubs-emulator;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed docker-compose.yml."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services by name."""
    svcs = compose["services"]
    assert isinstance(svcs, dict)
    return svcs


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The raw (unexpanded) bridge config used inside compose."""
    data = yaml.safe_load(BRIDGE_CONFIG.read_text())
    assert isinstance(data, dict)
    return data


def _interpolate(value: str) -> str:
    """Compose's own ${VAR:-default} interpolation, as on a host where none of the variables is set."""
    return ENV_REF.sub(lambda m: (m.group(2) or ":-")[2:], value).replace("$$", "$")


def _env(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (interpolated with defaults), whichever compose syntax it uses."""
    env = service.get("environment") or {}
    pairs = [item.split("=", 1) for item in env] if isinstance(env, list) else list(env.items())
    return {str(k): _interpolate(str(v)) for k, v in pairs}


def _bind_mounts(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (host path, container path) pairs of a service's relative bind mounts."""
    mounts = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            src, dst = vol.split(":")[:2]
        else:
            src, dst = vol["source"], vol["target"]
        if src.startswith("."):
            mounts.append((src, dst))
    return mounts


def _container_ports(service: Mapping[str, Any]) -> list[int]:
    """The container-side ports a service publishes."""
    ports = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            ports.append(int(p["target"]))
        else:
            ports.append(int(str(p).split("/")[0].split(":")[-1]))
    return ports


def _duration_seconds(value: str) -> float:
    """Parse a compose duration such as 40s, 1m30s or 500ms."""
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    assert total > 0, value
    return total


def _required_env_refs(node: Any) -> set[str]:
    """Names of ${VAR} references without a default in the string values of a parsed config."""
    if isinstance(node, dict):
        return set().union(*(_required_env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_required_env_refs(v) for v in node))
    if isinstance(node, str):
        return {m.group(1) for m in ENV_REF.finditer(node) if not m.group(2)}
    return set()


def _hosts_in_config(config: Mapping[str, Any]) -> set[str]:
    """Every host name the bridge config connects to (URLs and bootstrap lists)."""
    hosts: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and "${" not in node:
            if key.endswith("_url"):
                host = urlsplit(node).hostname
                assert host, node
                hosts.add(host)
            elif key == "bootstrap_servers":
                hosts.update(part.strip().rsplit(":", 1)[0] for part in node.split(","))

    walk(config)
    return hosts


def test_compose_defines_the_whole_stack(services: dict[str, dict[str, Any]]) -> None:
    """The stack holds Kafka, LocalStack, the Event Hubs emulator with Azurite, Redis and the bridge."""
    assert {"kafka", "localstack", "eventhubs-emulator", "azurite", "redis", "bridge"} <= set(services)
    images = {name: str(svc.get("image", "")) for name, svc in services.items()}
    assert images["kafka"].startswith("apache/kafka:")
    assert "localstack/localstack" in images["localstack"]
    assert images["eventhubs-emulator"].startswith("mcr.microsoft.com/azure-messaging/eventhubs-emulator:")
    assert images["azurite"].startswith("mcr.microsoft.com/azure-storage/azurite:")
    assert images["redis"].startswith("redis:")
    assert not any("zookeeper" in img for img in images.values())


def test_kafka_runs_in_kraft_mode(services: dict[str, dict[str, Any]]) -> None:
    """Kafka is a single KRaft broker+controller advertising kafka:9092 inside the network."""
    env = _env(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_every_bind_mounted_file_exists(services: dict[str, dict[str, Any]]) -> None:
    """Each relative bind mount points at a file in the repository, and mounted scripts are executable."""
    seen = 0
    for name, svc in services.items():
        for src, dst in _bind_mounts(svc):
            path = (ROOT / src).resolve()
            assert path.is_file(), f"{name}: {src} does not exist"
            if dst.endswith(".sh"):
                assert os.access(path, os.X_OK), f"{name}: {src} is not executable"
                assert path.read_text().startswith("#!/bin/bash"), f"{name}: {src} has no shebang"
            seen += 1
    assert seen >= 4


def test_bridge_is_built_from_this_repository(services: dict[str, dict[str, Any]]) -> None:
    """The bridge service builds the root Dockerfile from the repository root."""
    build = services["bridge"]["build"]
    context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert context.resolve() == ROOT
    assert (context / dockerfile).is_file()


def test_bridge_mounts_its_config_where_the_image_reads_it(services: dict[str, dict[str, Any]]) -> None:
    """config/compose.yaml is mounted read-only at the path the run command names."""
    bridge = services["bridge"]
    assert ("./config/compose.yaml", "/etc/bridge/config.yaml") in _bind_mounts(bridge)
    vol = next(v for v in bridge["volumes"] if str(v).startswith("./config/compose.yaml"))
    assert str(vol).endswith(":ro")
    command = bridge.get("command", ["run", "--config", "/etc/bridge/config.yaml"])
    assert command == ["run", "--config", "/etc/bridge/config.yaml"]


def test_bridge_port_matches_config_http_port(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """The bridge publishes exactly the port its config serves HTTP on."""
    assert _container_ports(services["bridge"]) == [int(config["http"]["port"])]
    assert config["http"]["host"] == "0.0.0.0"


def test_bridge_healthcheck_probes_the_configured_port_without_a_proxy(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """The healthcheck runs the image's proxy-free probe on the mounted config, so it follows http.port; it names
    no port, URL, urllib or curl of its own."""
    from bridge.healthcheck import health_url

    bridge = services["bridge"]
    test = bridge["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-m", "bridge.healthcheck"]
    assert test[4:] == ["--config", "/etc/bridge/config.yaml"]
    assert ("./config/compose.yaml", test[5]) in _bind_mounts(bridge)
    text = " ".join(test)
    for banned in ("8080", "http://", "urllib", "curl", "wget"):
        assert banned not in text
    url = health_url(BRIDGE_CONFIG, _env(bridge))
    assert url == f"http://127.0.0.1:{config['http']['port']}/healthz"


def test_bridge_waits_for_healthy_dependencies(services: dict[str, dict[str, Any]]) -> None:
    """depends_on covers every broker; healthy conditions have healthchecks and init jobs must complete."""
    deps = services["bridge"]["depends_on"]
    assert isinstance(deps, dict)
    assert {"kafka", "kafka-init", "localstack", "redis", "eventhubs-emulator", "azurite"} <= set(deps)
    for name, spec in deps.items():
        assert name in services, name
        condition = spec["condition"]
        if condition == "service_healthy":
            assert "healthcheck" in services[name], f"{name} has no healthcheck"
        if name.endswith("-init"):
            assert condition == "service_completed_successfully", name
    for name in ("kafka", "localstack", "redis"):
        assert deps[name]["condition"] == "service_healthy", name


def test_stop_grace_period_exceeds_shutdown_drain(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """docker stop waits longer than shutdown.grace_seconds so the drain finishes before SIGKILL."""
    grace = _duration_seconds(services["bridge"]["stop_grace_period"])
    assert grace > float(config["shutdown"]["grace_seconds"])


def test_config_hosts_are_compose_services(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """Every host the bridge config or its connection strings name is a service of the stack."""
    hosts = _hosts_in_config(config)
    env = _env(services["bridge"])
    eh = re.search(r"Endpoint=sb://([^;/]+)", env["EVENTHUB_CONNECTION_STRING"])
    blob = re.search(r"BlobEndpoint=([^;]+)", env["CHECKPOINT_STORE_CONNECTION_STRING"])
    assert eh and blob
    hosts |= {eh.group(1), urlsplit(blob.group(1)).hostname or ""}
    assert {"kafka", "localstack", "redis", "eventhubs-emulator", "azurite"} <= hosts
    for host in hosts:
        svc = services.get(host)
        assert svc is not None, f"config connects to {host!r}, which is no compose service"


def test_config_env_references_are_set_for_the_bridge(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """Every ${VAR} without a default in config/compose.yaml is set in the bridge's environment."""
    required = _required_env_refs(config)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "EVENTHUB_CONNECTION_STRING"} <= required
    env = _env(services["bridge"])
    missing = required - set(env)
    assert not missing, f"bridge environment lacks {sorted(missing)}"
    assert env["EVENTHUB_CONNECTION_STRING"] == EMULATOR_CONNECTION


def test_kafka_init_creates_every_configured_topic(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """kafka-init creates the source, route and dead-letter topics (auto-create is off)."""
    assert _env(services["kafka"])["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    script = (HELPERS / "kafka-init.sh").read_text()
    block = re.search(r"TOPICS=\((.*?)\)", script, re.S)
    assert block
    created = set(block.group(1).split())
    wanted = {t for s in config["sources"] if s["type"] == "kafka" for t in s["topics"]}
    wanted |= {r["topic"] for r in config["routes"]}
    wanted.add(config["deadletter"]["topic"])
    assert wanted <= created, f"not created: {sorted(wanted - created)}"
    assert "--if-not-exists" in script


def test_localstack_init_wires_sagemaker_rule_to_the_queue(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """The LocalStack ready hook creates the configured queue and an aws.sagemaker rule targeting it."""
    sqs = next(s for s in config["sources"] if s["type"] == "sqs")
    queue_name = sqs["queue_url"].rstrip("/").rsplit("/", 1)[-1]
    account = sqs["queue_url"].rstrip("/").rsplit("/", 2)[-2]
    localstack = services["localstack"]
    assert {"sqs", "events"} <= set(_env(localstack)["SERVICES"].split(","))
    assert _env(localstack)["AWS_DEFAULT_REGION"] == sqs["region"]
    mounts = dict(_bind_mounts(localstack))
    assert mounts["./deploy/compose/localstack-init.sh"].startswith("/etc/localstack/init/ready.d/")
    script = (HELPERS / "localstack-init.sh").read_text()
    assigned = dict(re.findall(r'^([A-Z_]+)="([^"$]*)"', script, re.M))
    assert assigned["QUEUE_NAME"] == queue_name
    assert assigned["ACCOUNT"] == account
    pattern_arg = re.search(r"--event-pattern '([^']+)'", script)
    assert pattern_arg
    assert json.loads(pattern_arg.group(1)) == {"source": ["aws.sagemaker"]}
    assert "events put-targets" in script and "Arn=${QUEUE_ARN}" in script
    assert 'QUEUE_ARN="arn:aws:sqs:${REGION}:${ACCOUNT}:${QUEUE_NAME}"' in script
    health = " ".join(localstack["healthcheck"]["test"])
    assert f"--queue-name {queue_name}" in health and f"--name {assigned['RULE_NAME']}" in health


def test_eventhubs_emulator_config_declares_the_configured_hub(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """The emulator's Config.json declares the configured event hub and a valid consumer group set."""
    emulator = services["eventhubs-emulator"]
    env = _env(emulator)
    assert env["BLOB_SERVER"] == "azurite" and env["METADATA_SERVER"] == "azurite"
    assert "ACCEPT_EULA" in env
    mounts = dict(_bind_mounts(emulator))
    assert mounts["./deploy/compose/eventhubs-config.json"] == "/Eventhubs_Emulator/ConfigFiles/Config.json"
    data = json.loads((HELPERS / "eventhubs-config.json").read_text())
    namespaces = data["UserConfig"]["NamespaceConfig"]
    assert len(namespaces) == 1 and namespaces[0]["Type"] == "EventHub"
    assert namespaces[0]["Name"] == "emulatorNs1"
    assert data["UserConfig"]["LoggingConfig"]["Type"] in {"File", "Console", "File,Console", "Console,File"}
    eh = next(s for s in config["sources"] if s["type"] == "eventhubs")
    entities = {e["Name"]: e for e in namespaces[0]["Entities"]}
    entity = entities[eh["eventhub_name"]]
    assert int(entity["PartitionCount"]) >= 2 and isinstance(entity["PartitionCount"], str)
    groups = {g["Name"] for g in entity["ConsumerGroups"]}
    assert "$default" not in {g.lower() for g in groups}, "$Default is implicit and may not be declared"
    assert eh["consumer_group"] == "$Default" or eh["consumer_group"] in groups


def test_checkpoint_store_points_at_azurite(
    services: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """The checkpoint store uses Azurite's dev account and lets the bridge create its container."""
    eh = next(s for s in config["sources"] if s["type"] == "eventhubs")
    store = eh["checkpoint_store"]
    assert store["container"] and store.get("create_container", True) is True
    conn = _env(services["bridge"])["CHECKPOINT_STORE_CONNECTION_STRING"]
    assert "AccountName=devstoreaccount1;" in conn
    assert "BlobEndpoint=http://azurite:10000/devstoreaccount1;" in conn
    deps = services["bridge"]["depends_on"]
    assert "azurite" in deps and "azurite" in services["eventhubs-emulator"]["depends_on"]


def test_compose_config_validates_with_the_bridge_loader(services: dict[str, dict[str, Any]]) -> None:
    """config/compose.yaml loads through bridge.config.load_config with the bridge service's environment."""
    loader = importlib.import_module("bridge.config").load_config
    env = _env(services["bridge"])
    cfg = loader(BRIDGE_CONFIG, env=env)
    assert cfg is not None
    http = cfg["http"] if isinstance(cfg, Mapping) else cfg.http
    port = http["port"] if isinstance(http, Mapping) else http.port
    assert int(port) == 8080


@pytest.mark.timeout(1200)  # may wait for the image preparation (engine, base, build) that installs the tool
def test_docker_compose_accepts_the_file(docker_compose_v1: str, tmp_path: Path) -> None:
    """`docker-compose config` (v1.29, the compose Debian ships) accepts the file: its schema, interpolation and
    depends_on conditions. v1 predates the compose-v2 top-level `name:`, the one line set aside for it."""
    text = COMPOSE_FILE.read_text()
    without_name, removed = re.subn(r"^name: ml-event-bridge\n", "", text, flags=re.M)
    assert removed == 1
    assert "name" not in yaml.safe_load(without_name)
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(without_name)
    res = subprocess.run([docker_compose_v1, "--project-directory", str(ROOT), "-f", str(copy), "-p",
                          "ml-event-bridge", "config"], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    resolved = yaml.safe_load(res.stdout)
    original = yaml.safe_load(text)
    assert set(resolved["services"]) == set(original["services"])
    bridge = resolved["services"]["bridge"]
    assert bridge["healthcheck"]["test"] == original["services"]["bridge"]["healthcheck"]["test"]
    assert bridge["read_only"] is True and bridge["cap_drop"] == ["ALL"] and bridge["user"] == "10001:10001"
    broken = without_name.replace("stop_grace_period: 40s", "stop_grace_perod: 40s")
    copy.write_text(broken)
    rejected = subprocess.run([docker_compose_v1, "--project-directory", str(ROOT), "-f", str(copy), "config",
                               "-q"], capture_output=True, text=True, timeout=120, check=False)
    assert rejected.returncode != 0 and "stop_grace_perod" in rejected.stderr  # the check can fail


def test_bridge_memory_budget_equals_its_mem_limit(services: dict[str, dict[str, Any]]) -> None:
    """The bridge service's mem_limit and the limits.memory_mb it loads (BRIDGE_MEMORY_MB) are the same."""
    bridge = services["bridge"]
    limit = str(bridge["mem_limit"])
    assert limit.endswith("m")
    cfg = importlib.import_module("bridge.config").load_config(BRIDGE_CONFIG, env=_env(bridge))
    assert cfg.limits.memory_mb == int(limit[:-1])
