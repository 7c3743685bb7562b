"""Drives a live Berth server through the Python client that
openapi-python-client generates from openapi/openapi.json.

Usage: sdk_smoke.py BASE_URL ADMIN_PASSWORD, with the generated package
`berth_client` on PYTHONPATH. It signs in as the platform admin, creates a
tenant, applies one Deployment and creates another through the typed
functions, then lists them back. It exits non-zero on the first thing that
does not go as the document says.
"""

import sys

from berth_client import AuthenticatedClient, Client
from berth_client.api.apply import apply_objects
from berth_client.api.auth import login_user
from berth_client.api.deployments import create_deployment, get_deployment, list_deployments
from berth_client.api.tenants import create_tenant
from berth_client.models import (
    ApplyObjectsJsonBody,
    ApplyResponse,
    CreateTenantRequest,
    Deployment,
    DeploymentList,
    LoginRequest,
    Session,
    TenantCreated,
)

ADMIN = "admin@berth.local"
TENANT = "sdk-smoke"


def deployment(name):
    """A Deployment as a manifest would hold it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "busybox:1"}]},
            },
        },
    }


def expect(response, status, model):
    """The parsed body of `response`, which must have `status` and parse as
    `model`; anything else ends the script."""
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(
            f"expected {status} with a {model.__name__}, got {int(response.status_code)}: "
            f"{response.content.decode(errors='replace')}"
        )
    return response.parsed


def main(base_url, password):
    # Undocumented status codes raise instead of parsing to None.
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    session = expect(
        login_user.sync_detailed(client=anonymous, body=LoginRequest(email=ADMIN, password=password)),
        200,
        Session,
    )
    client = AuthenticatedClient(base_url=base_url, token=session.token, raise_on_unexpected_status=True)

    tenant = expect(
        create_tenant.sync_detailed(client=client, body=CreateTenantRequest(name=TENANT)),
        201,
        TenantCreated,
    )
    assert tenant.name == TENANT, tenant

    applied = expect(
        apply_objects.sync_detailed(
            TENANT, client=client, body=ApplyObjectsJsonBody.from_dict(deployment("applied"))
        ),
        200,
        ApplyResponse,
    )
    assert (applied.applied, applied.failed) == (1, 0), applied
    assert applied.results[0].action == "created", applied

    created = expect(
        create_deployment.sync_detailed(
            TENANT, client=client, body=Deployment.from_dict(deployment("created"))
        ),
        201,
        Deployment,
    )
    assert created.metadata.name == "created", created
    assert created.metadata.resource_version, created
    assert created.spec.replicas == 2, created

    read = expect(get_deployment.sync_detailed(TENANT, "applied", client=client), 200, Deployment)
    assert read.spec.template.spec.containers[0].image == "busybox:1", read

    listed = expect(list_deployments.sync_detailed(TENANT, client=client), 200, DeploymentList)
    names = sorted(item.metadata.name for item in listed.items)
    assert names == ["applied", "created"], names
    assert listed.metadata.resource_version, listed

    selected = expect(
        list_deployments.sync_detailed(TENANT, client=client, label_selector="app=created"),
        200,
        DeploymentList,
    )
    assert [item.metadata.name for item in selected.items] == ["created"], selected
    print(f"listed {names} in tenant {TENANT}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: sdk_smoke.py BASE_URL ADMIN_PASSWORD")
    main(sys.argv[1], sys.argv[2])
