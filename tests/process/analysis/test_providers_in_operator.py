"""The provider as the operator uses it: credentials from a Secret, and one slow Prometheus never
holding back the other rollouts. Real operator, real sandbox, real Prometheus."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import pytest

from tests.edges.metrics.servers import AuthProxy, auth_proxy, slow_prometheus
from tests.process.analysis.test_analysis import Exporter, analysis, exporter, prometheus  # noqa: F401 (fixtures)
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.prometheus import PrometheusServer
from tests.support.rollouts import make_configmap, make_rollout, status, wait_phase
from tests.support.secrets import USABLE

pytestmark = pytest.mark.integration
T = TypeVar("T")


@contextlib.contextmanager
def in_background(factory: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[T]:
    """Run an async context manager (a loopback server) on an event loop of its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    manager = factory()
    value = asyncio.run_coroutine_threadsafe(manager.__aenter__(), loop).result(10)
    try:
        yield value
    finally:
        asyncio.run_coroutine_threadsafe(manager.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def secret(cluster: Cluster, name: str, **data: str) -> None:
    cluster.core.create_namespaced_secret("default", {
        "metadata": {"name": name, "labels": USABLE},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    })


def test_bearer_token_from_the_secret_reaches_prometheus(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer  # noqa: F811
) -> None:
    make_configmap(cluster)
    exporter.set("guarded", 0.0)
    exporter.set("locked-out", 0.0)
    secret(cluster, "prometheus-token", token="s3cret\n")
    secret(cluster, "wrong-token", token="guess")
    with in_background(lambda: auth_proxy(prometheus.url, {"Authorization": "Bearer s3cret"})) as proxy:
        assert isinstance(proxy, AuthProxy)
        operator()
        behind_proxy = analysis(prometheus)
        behind_proxy["prometheus"] = {"address": proxy.url, "auth": {"secretName": "prometheus-token"},
                                      "headers": {"X-Scope-OrgID": "shop"}}
        make_rollout(cluster, "guarded", stages=[{"weight": 10, "duration": "1s"}, {"weight": 100}],
                     analysis=behind_proxy)
        locked = analysis(prometheus, consecutiveErrorLimit=100)
        locked["prometheus"] = {"address": proxy.url, "auth": {"secretName": "wrong-token"}}
        make_rollout(cluster, "locked-out", stages=[{"weight": 10, "duration": "1s"}, {"weight": 100}],
                     analysis=locked)
        wait_phase(cluster, "guarded", "Succeeded", timeout=30)
        refused = wait_until(lambda: (status(cluster, "locked-out").get("metrics") or [{}])[0].get("message"),
                             20, "the refused evaluation")
        assert any(h.get("X-Scope-OrgID") == "shop" for h in proxy.seen)
    assert "401" in refused
    held = status(cluster, "locked-out")
    assert (held["phase"], held["currentWeight"]) == ("Progressing", 10)


def test_missing_secret_is_an_analysis_error_that_names_it(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer  # noqa: F811
) -> None:
    make_configmap(cluster)
    operator()
    spec = analysis(prometheus, consecutiveErrorLimit=100)
    spec["prometheus"]["auth"] = {"secretName": "nowhere"}
    make_rollout(cluster, "nosecret", stages=[{"weight": 10, "duration": "1s"}, {"weight": 100}], analysis=spec)
    message = wait_until(lambda: (status(cluster, "nosecret").get("metrics") or [{}])[0].get("message"), 20,
                         "an errored evaluation")
    assert "Secret default/nowhere (spec.analysis.prometheus.auth)" in message


def test_one_slow_prometheus_never_delays_the_other_rollouts(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer  # noqa: F811
) -> None:
    make_configmap(cluster)
    exporter.set("quick", 0.0)
    slow_manager: Callable[[], AsyncIterator[str]] = lambda: slow_prometheus(60.0)  # noqa: E731
    with in_background(slow_manager) as slow_url:  # type: ignore[arg-type]
        operator()
        stalled = analysis(prometheus, consecutiveErrorLimit=100)
        stalled["prometheus"] = {"address": slow_url, "timeout": "40s"}
        stages: list[dict[str, Any]] = [{"weight": 10, "duration": "1s"}, {"weight": 100}]
        for index in range(5):
            # One flag each: two rollouts never share a flag (issue 9, one owner per flag).
            make_rollout(cluster, f"stalled-{index}", stages=stages, analysis=stalled)
        # The stalled rollouts' first queries are under way before the quick one starts.
        wait_until(lambda: all(status(cluster, f"stalled-{i}").get("currentWeight") == 10 for i in range(5)), 40,
                   "the stalled rollouts' first stage (the operator's start-up included)")
        make_rollout(cluster, "quick", stages=[{"weight": 10, "duration": "1s"}, {"weight": 25, "duration": "1s"},
                                               {"weight": 100}], analysis=analysis(prometheus))
        # Five rollouts each wait 40 s on every query. The quick one needs ~3 s of holds and
        # analysis: 20 s is a wide margin on a loaded machine, and still half of one stalled query.
        wait_phase(cluster, "quick", "Succeeded", timeout=20)
        for index in range(5):
            assert status(cluster, f"stalled-{index}")["currentWeight"] == 10
