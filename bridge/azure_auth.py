"""Microsoft Entra ID credentials for the Azure connections: Event Hubs (AMQP and its Kafka endpoint) and the
blob checkpoint store, without connection strings or keys.

``AzureCredentialConfig`` picks an ``azure-identity`` credential: ``default`` (``DefaultAzureCredential``:
environment, AKS workload identity, managed identity, then developer logins), or one of those explicitly.
``build_credential`` returns the async credential; the caller closes it. Tokens are never logged: the
credential objects hold them, and the bridge passes them straight to the SDKs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CredentialKind = Literal["default", "workload_identity", "managed_identity", "environment"]


class AzureCredentialConfig(BaseModel):
    """Which Entra ID credential the bridge uses (azure-identity)."""

    model_config = ConfigDict(extra="forbid")

    kind: CredentialKind = Field(
        "default",
        description="default: DefaultAzureCredential (environment, AKS workload identity, managed identity, ...); "
        "workload_identity: the federated token of AKS workload identity (AZURE_FEDERATED_TOKEN_FILE); "
        "managed_identity: the VM / node / App Service identity; environment: AZURE_CLIENT_ID + secret or "
        "certificate variables",
    )
    client_id: str | None = Field(
        None,
        description="client ID of a user-assigned managed identity or of the workload identity's app "
        "(default: AZURE_CLIENT_ID, which AKS workload identity injects)",
    )
    tenant_id: str | None = Field(None, description="tenant for workload identity (default: AZURE_TENANT_ID)")


def build_credential(cfg: AzureCredentialConfig) -> Any:
    """The async ``azure-identity`` credential chosen by ``cfg`` (close it with ``await cred.close()``)."""
    from azure.identity.aio import (
        DefaultAzureCredential,
        EnvironmentCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    if cfg.kind == "workload_identity":
        kwargs: dict[str, Any] = {}
        if cfg.client_id:
            kwargs["client_id"] = cfg.client_id
        if cfg.tenant_id:
            kwargs["tenant_id"] = cfg.tenant_id
        return WorkloadIdentityCredential(**kwargs)
    if cfg.kind == "managed_identity":
        return ManagedIdentityCredential(client_id=cfg.client_id) if cfg.client_id else ManagedIdentityCredential()
    if cfg.kind == "environment":
        return EnvironmentCredential()
    default_kwargs: dict[str, Any] = {"exclude_interactive_browser_credential": True}
    if cfg.client_id:
        default_kwargs["managed_identity_client_id"] = cfg.client_id
        default_kwargs["workload_identity_client_id"] = cfg.client_id
    if cfg.tenant_id:
        default_kwargs["workload_identity_tenant_id"] = cfg.tenant_id
    return DefaultAzureCredential(**default_kwargs)
