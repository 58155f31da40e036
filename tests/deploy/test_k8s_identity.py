"""Offline checks that the Kubernetes manifests use workload identities, not keys: AKS workload identity for
Event Hubs and Blob, EKS IRSA for SQS, and that the ConfigMap asks for no cloud secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bridge.config import load_config
from tests.deploy.test_k8s import _env_value

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
STATIC_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "EVENTHUB_CONNECTION_STRING",
               "CHECKPOINT_STORE_CONNECTION_STRING"}


def _doc(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    assert len(docs) == 1
    return docs[0]


def _env() -> dict[str, str]:
    container = _doc("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: _env_value(container, e) for e in container.get("env", [])}
    env.update({k: str(v) for k, v in _doc("secret.example.yaml")["stringData"].items()})
    return env


def test_service_account_carries_both_cloud_identities_and_the_pod_opts_in() -> None:
    """The ServiceAccount names the Entra client ID and the IAM role; the pod carries the workload-identity label
    and runs as that ServiceAccount."""
    sa = _doc("serviceaccount.yaml")
    annotations = sa["metadata"]["annotations"]
    assert annotations["azure.workload.identity/client-id"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    pod = _doc("deployment.yaml")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_configmap_uses_identities_and_asks_for_no_static_keys(tmp_path: Path) -> None:
    """The ConfigMap's sources authenticate with identities: Event Hubs by namespace and workload identity,
    checkpoints by account URL, SQS by the default chain; neither it nor the example Secret holds cloud keys."""
    text = _doc("configmap.yaml")["data"]["config.yaml"]
    for key in STATIC_KEYS:
        assert "${" + key not in text, key
    assert not STATIC_KEYS & set(_doc("secret.example.yaml")["stringData"])
    path = tmp_path / "config.yaml"
    path.write_text(text)
    cfg = load_config(path, env=_env())
    sqs = next(s for s in cfg.sources if s.type == "sqs")
    assert sqs.aws_access_key_id is None and sqs.aws_secret_access_key is None
    eh = next(s for s in cfg.sources if s.type == "eventhubs")
    assert eh.connection_string is None and eh.fully_qualified_namespace
    assert eh.credential.kind == "workload_identity"
    assert eh.checkpoint_store is not None and eh.checkpoint_store.account_url
    assert eh.checkpoint_store.connection_string is None
