"""Offline checks of the Kubernetes manifests in deploy/k8s (no cluster needed)."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SECRET_EXAMPLE = "secret.example.yaml"
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
# Oldest Kubernetes minor the manifests promise to work on, and the kubectl client's.
K8S_VERSIONS = ("1.29.0", "1.32.0")

Doc = dict[str, Any]


def _load_docs(path: Path) -> list[Doc]:
    """All non-empty YAML documents of a file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def kustomization() -> Doc:
    """The parsed kustomization.yaml."""
    docs = _load_docs(K8S / "kustomization.yaml")
    assert len(docs) == 1
    return docs[0]


@pytest.fixture(scope="module")
def resources(kustomization: Doc) -> dict[str, Doc]:
    """Every resource the kustomization applies, keyed by kind."""
    out: dict[str, Doc] = {}
    for rel in kustomization["resources"]:
        for doc in _load_docs(K8S / rel):
            assert doc["kind"] not in out, f"two {doc['kind']} resources"
            out[doc["kind"]] = doc
    return out


@pytest.fixture(scope="module")
def deployment(resources: dict[str, Doc]) -> Doc:
    """The bridge Deployment."""
    return resources["Deployment"]


@pytest.fixture(scope="module")
def container(deployment: Doc) -> Doc:
    """The bridge container of the Deployment."""
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def config_text(resources: dict[str, Doc]) -> str:
    """The raw config.yaml held by the ConfigMap."""
    return str(resources["ConfigMap"]["data"]["config.yaml"])


@pytest.fixture(scope="module")
def config(config_text: str) -> Doc:
    """The ConfigMap's config.yaml, parsed (variables unexpanded)."""
    data = yaml.safe_load(config_text)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def secret_example() -> Doc:
    """The example Secret (documentation only, never applied)."""
    docs = _load_docs(K8S / SECRET_EXAMPLE)
    assert len(docs) == 1
    return docs[0]


def _required_env_refs(node: Any) -> set[str]:
    """Names of ${VAR} references without a default in the string values of a parsed config."""
    if isinstance(node, dict):
        return set().union(*(_required_env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_required_env_refs(v) for v in node))
    if isinstance(node, str):
        return {m.group(1) for m in ENV_REF.finditer(node) if not m.group(2)}
    return set()


def _port_number(container: Doc, port: int | str) -> int:
    """Resolve a probe/service port (number or container port name) to its number."""
    if isinstance(port, int):
        return port
    matches = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert len(matches) == 1, f"no container port named {port!r}"
    return int(matches[0])


def _mebibytes(quantity: str) -> int:
    """A Kubernetes memory quantity in MiB (``768Mi``, ``1Gi``)."""
    units = {"Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    raise AssertionError(f"unexpected memory quantity {quantity!r}")


def _env_value(c: Doc, entry: Doc) -> str:
    """What one env entry of the container resolves to (the Downward API ones as Kubernetes would)."""
    if "value" in entry:
        return str(entry["value"])
    ref = entry.get("valueFrom", {}).get("resourceFieldRef")
    if ref is not None:
        assert ref["resource"] == "limits.memory" and ref["divisor"] == "1Mi", ref
        return str(_mebibytes(c["resources"]["limits"]["memory"]))
    return "pod-name-0"


def _deployment_env(deployment: Doc, secret: Doc) -> dict[str, str]:
    """The environment the bridge container would see: literal env entries plus the Secret's keys."""
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: _env_value(c, e) for e in c.get("env", [])}
    env.update({k: str(v) for k, v in secret["stringData"].items()})
    return env


def test_every_manifest_parses_with_kind_and_name() -> None:
    """Each YAML file in deploy/k8s parses and every document has apiVersion, kind and metadata.name."""
    files = sorted(K8S.glob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        for doc in _load_docs(path):
            assert doc.get("apiVersion") and doc.get("kind"), path.name
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path.name


def test_kustomization_lists_every_manifest_but_the_secret_example(kustomization: Doc) -> None:
    """kustomization.yaml applies every manifest file that exists, and never the example Secret."""
    listed = list(kustomization["resources"])
    assert len(listed) == len(set(listed))
    for rel in listed:
        assert (K8S / rel).is_file(), rel
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", SECRET_EXAMPLE}
    assert set(listed) == on_disk
    assert SECRET_EXAMPLE not in listed


def test_kustomization_applies_the_expected_kinds(resources: dict[str, Doc]) -> None:
    """The applied set is ServiceAccount, ConfigMap, Deployment, Service, PDB and HPA, and no Secret."""
    assert set(resources) == {
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }


def test_kustomize_build_renders(kustomization: Doc) -> None:
    """`kubectl kustomize deploy/k8s` renders the same resources offline, with the image override applied."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with built-in kustomize) is required for this test"
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert sorted(d["kind"] for d in docs) == sorted(
        [
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
        ]
    )
    image = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    override = kustomization["images"][0]
    assert image["image"] == f"{override['newName']}:{override['newTag']}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schema(version: str, resources: dict[str, Doc]) -> None:
    """Every applied resource and the example Secret pass strict Kubernetes OpenAPI schema validation."""
    kubernetes_validate = importlib.import_module("kubernetes_validate")
    docs = [*resources.values(), *_load_docs(K8S / SECRET_EXAMPLE)]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_probes_target_health_endpoints_on_the_config_port(container: Doc, config: Doc) -> None:
    """Startup/liveness probe /healthz and readiness /readyz, on the container port equal to http.port."""
    http_port = int(config["http"]["port"])
    assert [p["containerPort"] for p in container["ports"]] == [http_port]
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert _port_number(container, get["port"]) == http_port, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_container_runs_the_daemon_on_the_mounted_config(deployment: Doc, container: Doc) -> None:
    """The ConfigMap is mounted read-only at /etc/bridge and the container runs `bridge run` on it."""
    spec = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    cfg_vol = next(v for v in volumes.values() if "configMap" in v)
    assert cfg_vol["configMap"]["name"] == "ml-event-bridge-config"
    assert [i["key"] for i in cfg_vol["configMap"].get("items", [{"key": "config.yaml"}])] == ["config.yaml"]
    assert mounts[cfg_vol["name"]]["mountPath"] == "/etc/bridge"
    assert mounts[cfg_vol["name"]]["readOnly"] is True
    assert container.get("args", ["run", "--config", "/etc/bridge/config.yaml"]) == [
        "run",
        "--config",
        "/etc/bridge/config.yaml",
    ]
    assert "command" not in container, "the image ENTRYPOINT (bridge) must stay in charge"
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]


def test_termination_grace_exceeds_shutdown_drain(deployment: Doc, config: Doc) -> None:
    """terminationGracePeriodSeconds leaves room for shutdown.grace_seconds before SIGKILL."""
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == 40
    assert grace > int(config["shutdown"]["grace_seconds"]) + 5


def test_resources_have_requests_and_limits(container: Doc) -> None:
    """The container sets CPU and memory requests and limits (the HPA needs the CPU request)."""
    res = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res[kind]), kind


def test_security_context_is_hardened(deployment: Doc, container: Doc) -> None:
    """Pod and container run as the image's non-root UID, read-only, without capabilities, seccomp on."""
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    dockerfile_users = re.findall(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert dockerfile_users and int(dockerfile_users[-1]) == pod["runAsUser"] == sc.get("runAsUser", 10001)


def test_service_account_is_used_without_an_api_token(resources: dict[str, Doc], deployment: Doc) -> None:
    """The pod uses the bridge ServiceAccount and mounts no API token (it never calls the API server)."""
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == resources["ServiceAccount"]["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False
    assert resources["ServiceAccount"]["automountServiceAccountToken"] is False


def test_secret_ref_names_the_example_secret_which_is_not_applied(
    container: Doc, secret_example: Doc
) -> None:
    """envFrom reads the Secret named in secret.example.yaml, whose values are placeholders only."""
    refs = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
    assert refs == [secret_example["metadata"]["name"]]
    assert secret_example["kind"] == "Secret"
    for key, value in secret_example["stringData"].items():
        assert "REPLACE_ME" in str(value), key


def test_config_env_references_are_provided(config: Doc, deployment: Doc, secret_example: Doc) -> None:
    """Every ${VAR} without default in the ConfigMap config is set by the Deployment env or the Secret."""
    required = _required_env_refs(config)
    assert "REDIS_URL" in required
    provided = set(_deployment_env(deployment, secret_example))
    assert not required - provided, f"unset: {sorted(required - provided)}"
    secret_keys = set(secret_example["stringData"])
    assert "REDIS_URL" in secret_keys, "REDIS_URL is a secret and must come from the Secret"
    literal = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    assert not literal & secret_keys, "secret values must not be set literally in the Deployment"


def test_selectors_match_the_deployment_labels(resources: dict[str, Doc], deployment: Doc) -> None:
    """Deployment, Service, PDB and spread-constraint selectors all select the Deployment's pod labels."""
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert resources["Service"]["spec"]["selector"] == selector
    for tsc in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert tsc["labelSelector"]["matchLabels"] == selector


def test_pdb_keeps_one_pod_and_hpa_scales_on_cpu(resources: dict[str, Doc], deployment: Doc) -> None:
    """PDB keeps 1 pod; the autoscaling/v2 HPA scales the Deployment on CPU from above minAvailable."""
    pdb = resources["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 1
    hpa = resources["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    metrics = hpa["spec"]["metrics"]
    cpu = [m for m in metrics if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"
    assert 0 < cpu[0]["resource"]["target"]["averageUtilization"] <= 100
    min_r, max_r = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    assert pdb["spec"]["minAvailable"] < min_r <= max_r
    assert deployment["spec"]["replicas"] == 2 and min_r <= deployment["spec"]["replicas"] <= max_r


def test_service_and_scrape_annotations_point_at_metrics(
    resources: dict[str, Doc], deployment: Doc, container: Doc, config: Doc
) -> None:
    """The Service and the pod's prometheus.io annotations expose /metrics on the configured HTTP port."""
    http_port = int(config["http"]["port"])
    ann = deployment["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] == "/metrics"
    assert int(ann["prometheus.io/port"]) == http_port
    ports = resources["Service"]["spec"]["ports"]
    assert len(ports) == 1
    assert _port_number(container, ports[0]["targetPort"]) == http_port
    assert "metrics" in ports[0]["name"]


def test_configmap_config_validates_with_the_bridge_loader(
    tmp_path: Path, config_text: str, deployment: Doc, secret_example: Doc
) -> None:
    """The ConfigMap's config.yaml loads through bridge.config.load_config with the pod's environment."""
    loader = importlib.import_module("bridge.config").load_config
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    env: Mapping[str, str] = _deployment_env(deployment, secret_example)
    cfg = loader(path, env=env)
    assert cfg is not None
    http = cfg["http"] if isinstance(cfg, Mapping) else cfg.http
    port = http["port"] if isinstance(http, Mapping) else http.port
    assert int(port) == 8080


def test_memory_budget_follows_the_container_memory_limit(
    tmp_path: Path, config_text: str, deployment: Doc, container: Doc, secret_example: Doc
) -> None:
    """limits.memory_mb comes from the bridge container's own memory limit (Downward API, in MiB), so the
    budget and the limit that OOM-kills the pod cannot drift apart."""
    env_entry = next(e for e in container["env"] if e["name"] == "BRIDGE_MEMORY_MB")
    ref = env_entry["valueFrom"]["resourceFieldRef"]
    assert (ref["containerName"], ref["resource"], ref["divisor"]) == (container["name"], "limits.memory", "1Mi")
    loader = importlib.import_module("bridge.config").load_config
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    cfg = loader(path, env=_deployment_env(deployment, secret_example))
    assert cfg.limits.memory_mb == _mebibytes(container["resources"]["limits"]["memory"]) == 768
