"""Secrets by consent (edges/kube.py, docs/security.md#secrets-by-consent): every reader of a Secret a
rollout names (webhook target and gates, notifications, Prometheus auth) refuses one that is not
labelled `featurerollout.io/usable: "true"`, naming the Secret and the label, never its value."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes.client import V1ObjectMeta, V1Secret

from featurerollout.api import PrometheusProvider, SecretKeyRef
from featurerollout.api import WebhookTarget as WebhookSpec
from featurerollout.edges.kube import SecretKeyUnreadable, read_secret_key
from featurerollout.edges.metrics.measurer import Measurer
from featurerollout.edges.metrics.prometheus import InvalidCredentials
from featurerollout.edges.notify.dispatcher import SecretProblem, kube_secrets
from featurerollout.edges.targets.base import TargetError
from featurerollout.edges.targets.webhook import INVALID_SECRET, WebhookClients, WebhookTarget

VALUE = "tok-6d1e0c9b-never-shown"
LABEL = "featurerollout.io/usable"


class FakeCore:
    def __init__(self, labels: dict[str, str] | None) -> None:
        self.labels = labels
        self.reads = 0

    def read_namespaced_secret(self, name: str, namespace: str) -> V1Secret:
        self.reads += 1
        encoded = base64.b64encode(VALUE.encode()).decode()
        return V1Secret(metadata=V1ObjectMeta(name=name, namespace=namespace, labels=self.labels),
                        data={"token": encoded, "url": encoded})


class FakeKube:
    def __init__(self, labels: dict[str, str] | None) -> None:
        self.core = FakeCore(labels)

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


REFUSED = ("Secret shop/prom-token{field} is not labelled featurerollout.io/usable=true: the operator reads only "
           "Secrets labelled for it (kubectl -n shop label secret prom-token featurerollout.io/usable=true)")


@pytest.mark.parametrize("labels", [None, {}, {LABEL: "false"}, {LABEL: "True"}, {"usable": "true"}])
async def test_an_unlabelled_secret_is_refused_naming_it_and_the_label(labels: dict[str, str] | None) -> None:
    kube: Any = FakeKube(labels)
    with pytest.raises(SecretKeyUnreadable) as raised:
        await read_secret_key(kube, "shop", "prom-token", "token", "spec.gates[0].webhook.secretRef")
    assert raised.value.message == REFUSED.format(field=" (spec.gates[0].webhook.secretRef)")
    assert raised.value.not_usable and VALUE not in str(raised.value)

    with pytest.raises(InvalidCredentials) as invalid:
        await Measurer(kube).credentials(PrometheusProvider(address="http://p:9090", auth={"secretName": "prom-token"}),
                                         "shop")
    assert str(invalid.value) == REFUSED.format(field=" (spec.analysis.prometheus.auth)")

    with pytest.raises(SecretProblem, match=r"is not labelled featurerollout\.io/usable=true"):
        await kube_secrets(kube)("shop", SecretKeyRef(name="prom-token", key="url"))

    target = WebhookTarget(kube, WebhookClients(), "shop", "r", WebhookSpec(
        url="http://flags.example/", secretRef={"name": "prom-token", "key": "token"}), "f")
    with pytest.raises(TargetError) as failed:
        await target.apply(10)
    assert failed.value.reason == INVALID_SECRET
    assert "is not labelled featurerollout.io/usable=true" in str(failed.value) and VALUE not in str(failed.value)


async def test_a_labelled_secret_is_read() -> None:
    kube: Any = FakeKube({LABEL: "true", "team": "shop"})
    assert await read_secret_key(kube, "shop", "prom-token", "token") == VALUE
    credentials = await Measurer(kube).credentials(
        PrometheusProvider(address="http://p:9090", auth={"secretName": "prom-token"}), "shop")
    assert credentials is not None and credentials.token == VALUE
