"""The webhook target against a real HTTP server on loopback (the Secrets come from the cluster).

Issue "Step real traffic: ... external flag services over HTTP (httpx)": the PUT contract, the
bearer token, bounded retries on connection errors and 5xx (none on 4xx), the timeout, TLS
verified against a CA from a Secret, and the response size limit.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.edges.targets.flag_service import FlagService
from tests.edges.targets.tls import make_certificates
from tests.support.cluster import Cluster, wait_until
from tests.support.secrets import USABLE

from featurerollout.api import WebhookTarget as WebhookSpec
from featurerollout.edges.kube import Kube
from featurerollout.edges.targets.base import TargetError
from featurerollout.edges.targets.webhook import MAX_ATTEMPTS, SHOWN_BODY_BYTES, WebhookClients, WebhookTarget

pytestmark = pytest.mark.integration

TOKEN = "s3cr3t-t0ken-4f9a2c"


@pytest.fixture
def service() -> Iterator[FlagService]:
    running = FlagService(token=TOKEN).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def clients() -> AsyncIterator[WebhookClients]:
    pool = WebhookClients()
    try:
        yield pool
    finally:
        await pool.aclose()


def make_secret(cluster: Cluster, name: str, **data: str) -> None:
    cluster.core.create_namespaced_secret("default", {
        "metadata": {"name": name, "labels": USABLE},
        "data": {k.replace("_", "."): base64.b64encode(v.encode()).decode() for k, v in data.items()},
    })


def target(kube: Kube, clients: WebhookClients, url: str, **spec: Any) -> WebhookTarget:
    return WebhookTarget(kube, clients, "default", "new-checkout", WebhookSpec(url=url, **spec), "new-checkout")


async def test_put_carries_the_contract_and_the_bearer_token(
    cluster: Cluster, kube: Kube, clients: WebhookClients, service: FlagService
) -> None:
    make_secret(cluster, "flags", token=TOKEN + "\n")  # pasted with echo: the newline is dropped
    hook = target(kube, clients, service.url, secretRef={"name": "flags", "key": "token"})
    assert hook.reads_back is False
    assert await hook.current_weight() is None  # nothing acknowledged yet
    assert await hook.apply(25) is True
    assert await hook.apply(0.5) is True
    first, second = service.requests()
    assert (first.method, first.path) == ("PUT", "/flags")
    assert first.body == {"flag": "new-checkout", "weight": 25, "namespace": "default", "rollout": "new-checkout"}
    assert second.body is not None and second.body["weight"] == 0.5
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert await hook.current_weight() == 0.5  # the last weight the service acknowledged


async def test_5xx_is_retried_a_bounded_number_of_times_then_not_applied(
    cluster: Cluster, kube: Kube, clients: WebhookClients, service: FlagService
) -> None:
    make_secret(cluster, "flags", token=TOKEN)
    service.mode = "fail"  # its body echoes the Authorization header
    hook = target(kube, clients, service.url, secretRef={"name": "flags", "key": "token"})
    with pytest.raises(TargetError) as raised:
        await hook.apply(10)
    assert raised.value.reason == "WebhookFailed"
    assert len(service.requests()) == MAX_ATTEMPTS
    message = raised.value.message
    assert "answered 500 Internal Server Error" in message
    assert '"error": "backend exploded"' in message
    assert TOKEN not in message and "[redacted]" in message
    assert await hook.current_weight() is None


async def test_4xx_is_the_services_answer_and_is_not_retried(
    cluster: Cluster, kube: Kube, clients: WebhookClients, service: FlagService
) -> None:
    make_secret(cluster, "flags", token="not-the-token")
    hook = target(kube, clients, service.url, secretRef={"name": "flags", "key": "token"})
    with pytest.raises(TargetError) as raised:
        await hook.apply(10)
    assert raised.value.reason == "WebhookRejected"
    assert "answered 401 Unauthorized" in raised.value.message
    assert "not-the-token" not in raised.value.message
    assert len(service.requests()) == 1


async def test_a_service_that_is_down_is_unreachable(
    kube: Kube, clients: WebhookClients, service: FlagService
) -> None:
    service.token = None
    service.stop()
    hook = target(kube, clients, service.url)
    with pytest.raises(TargetError) as raised:
        await hook.apply(10)
    assert raised.value.reason == "WebhookUnreachable"
    assert "could not connect" in raised.value.message and f"{MAX_ATTEMPTS} attempts" in raised.value.message


async def test_no_answer_within_the_timeout_is_not_applied(
    kube: Kube, clients: WebhookClients, service: FlagService
) -> None:
    service.token, service.mode, service.hang_seconds = None, "hang", 5
    hook = target(kube, clients, service.url, timeout="300ms")
    started = time.monotonic()
    with pytest.raises(TargetError) as raised:
        await hook.apply(10)
    assert raised.value.reason == "WebhookUnreachable"
    assert "no answer within 300ms" in raised.value.message
    assert time.monotonic() - started < service.hang_seconds  # it did not wait for the answer


async def test_a_huge_answer_is_read_only_up_to_the_limit(
    kube: Kube, clients: WebhookClients, service: FlagService
) -> None:
    service.token, service.mode, service.fail_body_bytes = None, "fail", 64 * 1024 * 1024
    hook = target(kube, clients, service.url)
    with pytest.raises(TargetError) as raised:
        await hook.apply(10)
    body_part = raised.value.message.split("Internal Server Error: ", 1)[1]
    assert len(body_part.split(" (3 attempts)")[0]) <= SHOWN_BODY_BYTES
    # The message shows 200 bytes whatever was read; what proves the limit is the connection: cut
    # by the client after MAX_RESPONSE_BYTES, so that no answer of 64 MiB was ever sent in full.
    written = wait_until(lambda: len(service.written_in_full) == MAX_ATTEMPTS and list(service.written_in_full),
                         10, "the service to finish each answer")
    assert written == [False] * MAX_ATTEMPTS, "an answer of 64 MiB was read in full: the read limit is gone"


async def test_tls_is_verified_against_the_ca_from_the_secret(
    cluster: Cluster, kube: Kube, clients: WebhookClients, tmp_path: Path
) -> None:
    certificates = make_certificates(tmp_path)
    service = FlagService(tls=certificates.server_context).start()
    try:
        make_secret(cluster, "flags-ca", ca_crt=certificates.ca_pem)
        untrusted = target(kube, clients, service.url)
        with pytest.raises(TargetError) as raised:
            await untrusted.apply(10)
        assert raised.value.reason == "WebhookUnreachable"
        assert "CERTIFICATE_VERIFY_FAILED" in raised.value.message
        trusted = target(kube, clients, service.url, caSecretRef={"name": "flags-ca", "key": "ca.crt"})
        assert await trusted.apply(10) is True
        assert service.accepted() == [10]
    finally:
        service.stop()


async def test_missing_secret_names_the_field(kube: Kube, clients: WebhookClients, service: FlagService) -> None:
    hook = target(kube, clients, service.url, secretRef={"name": "nope", "key": "token"})
    with pytest.raises(TargetError) as raised:
        await hook.apply(10)
    assert raised.value.reason == "SecretNotFound"
    assert "Secret default/nope key token (spec.target.webhook.secretRef)" in raised.value.message
    assert service.requests() == []


async def test_every_rollout_shares_one_pooled_client(clients: WebhookClients) -> None:
    assert clients.client() is clients.client()
