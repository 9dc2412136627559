"""The demo service: bucketing, weight sources, its HTTP API, and its metrics in the real Prometheus."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from tests.metrics.servers import serve
from tests.support.fixtures import PrometheusFactory
from tests.support.prometheus import wait_for_query_async

from featurerollout.api import PrometheusProvider
from featurerollout.demo.service import (
    ConfigMapWeights,
    DemoService,
    FixedWeights,
    FlagdFileWeights,
    bucket_of,
    murmur3_32,
    parser,
    service_from_args,
    variant_for,
    weight_from_flagd,
)
from featurerollout.measurement import MeasurementKind
from featurerollout.metrics import PrometheusMetricProvider, render_query


def flagd(weight_on: float, weight_off: float, state: str = "ENABLED") -> dict[str, object]:
    return {
        "flags": {
            "new-checkout": {
                "state": state,
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {"fractional": [["on", weight_on], ["off", weight_off]]},
            },
            "other": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        }
    }


def test_murmur3_matches_the_reference_vectors() -> None:
    assert murmur3_32(b"") == 0
    assert murmur3_32(b"", 1) == 0x514E28B7
    assert murmur3_32(b"hello") == 0x248BFA47
    assert murmur3_32(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723


def test_bucketing_is_stable_and_splits_users_at_the_weight() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    assert all(0 <= bucket_of("f", u) <= 100 for u in users[:100])
    share = sum(variant_for("f", u, 25) == "on" for u in users) / len(users)
    assert 0.23 < share < 0.27
    # Raising the weight only adds users: whoever had `on` at 10 keeps it at 50.
    assert all(variant_for("f", u, 50) == "on" for u in users if variant_for("f", u, 10) == "on")
    assert all(variant_for("f", u, 0) == "off" for u in users[:500])
    assert all(variant_for("f", u, 100) == "on" for u in users[:500])


def test_weight_from_a_flagd_document() -> None:
    assert weight_from_flagd(flagd(25, 75), "new-checkout") == 25
    assert weight_from_flagd(json.dumps(flagd(5, 995)), "new-checkout") == 0.5
    assert weight_from_flagd(flagd(25, 75, state="DISABLED"), "new-checkout") == 0
    assert weight_from_flagd(flagd(25, 75), "missing") == 0
    assert weight_from_flagd(flagd(25, 75), "other") == 100  # no targeting: the default variant
    assert weight_from_flagd({}, "new-checkout") == 0


def test_flagd_file_weights_follow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.flagd.json"
    weights = FlagdFileWeights(path)
    assert weights("new-checkout") == 0  # no file yet
    path.write_text(json.dumps(flagd(10, 90)))
    assert weights("new-checkout") == 10
    path.write_text(json.dumps(flagd(100, 0)) + "\n")
    assert weights("new-checkout") == 100


def test_the_module_runs_with_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "featurerollout.demo.service", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--on-error-rate" in done.stdout and "--kubeconfig" in done.stdout


def test_the_command_line_builds_the_service() -> None:
    args = parser().parse_args(
        ["--weight", "new-checkout=25", "--on-error-rate", "0.3", "--flag-error-rate", "new-checkout:off=0.05",
         "--rps", "0"]
    )
    service, poller = service_from_args(args)
    assert poller is None
    assert service.flags == ["new-checkout"]
    assert service.weights("new-checkout") == 25
    assert (service.rates("new-checkout").on, service.rates("new-checkout").off) == (0.3, 0.05)
    with pytest.raises(SystemExit):
        parser().parse_args(["--weight", "new-checkout=250"])


@pytest.fixture
async def demo() -> AsyncIterator[DemoService]:
    service = DemoService(FixedWeights({"new-checkout": 0}), rps=0, seed=1)
    await service.start()
    yield service
    await service.stop()


async def test_serve_picks_the_variant_at_the_weight_and_fails_at_the_variants_rate(demo: DemoService) -> None:
    assert isinstance(demo.weights, FixedWeights)
    async with aiohttp.ClientSession() as http:

        async def serve_many(n: int) -> list[dict[str, object]]:
            answers = []
            for i in range(n):
                async with http.get(f"{demo.url}/serve", params={"flag": "new-checkout", "user": f"u{i}"}) as r:
                    body = await r.json()
                    assert r.status == body["code"]
                    answers.append(body)
            return answers

        assert {a["variant"] for a in await serve_many(50)} == {"off"}
        demo.weights.weights["new-checkout"] = 100
        async with http.post(f"{demo.url}/control", json={"new-checkout": {"on_error_rate": 1.0}}) as r:
            assert (await r.json())["new-checkout"]["on_error_rate"] == 1.0
        answers = await serve_many(50)
        assert {(a["variant"], a["code"]) for a in answers} == {("on", 500)}
        async with http.post(f"{demo.url}/control", json={"new-checkout": {"on_error_rate": 7}}) as r:
            assert r.status == 400 and "not a probability" in (await r.json())["error"]
        async with http.get(f"{demo.url}/metrics") as r:
            text = await r.text()
    assert 'http_requests_total{code="200",flag="new-checkout",variant="off"} 50.0' in text
    assert 'http_requests_total{code="500",flag="new-checkout",variant="on"} 50.0' in text
    assert 'http_requests_total{code="500",flag="new-checkout",variant="off"} 0.0' in text


async def test_the_load_generator_sends_requests_to_itself() -> None:
    service = DemoService(FixedWeights({"new-checkout": 50}), rps=200, seed=2)
    await service.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            total = sum(
                service.requests.labels(flag="new-checkout", variant=v, code=c)._value.get()
                for v in ("on", "off") for c in ("200", "500")
            )
            if total >= 50:
                break
        assert total >= 50
    finally:
        await service.stop()


async def test_configmap_weights_follow_the_configmap_through_the_kubernetes_api(tmp_path: Path) -> None:
    document = {"text": json.dumps(flagd(10, 90))}

    async def read(request: web.Request) -> web.Response:
        if request.match_info["name"] != "feature-flags":
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        return web.json_response({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "feature-flags", "namespace": request.match_info["ns"]},
            "data": {"flags.flagd.json": document["text"]},
        })

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/configmaps/{name}", read)
    async with serve(app) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "fake", "user": {"token": "x"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        weights = ConfigMapWeights(str(kubeconfig), "shop", "feature-flags")
        poll = asyncio.create_task(weights.poll(every=0.05))
        try:
            async def until(expected: float) -> None:
                for _ in range(200):
                    if weights("new-checkout") == expected:
                        return
                    await asyncio.sleep(0.02)
                raise AssertionError(f"weight stayed {weights('new-checkout')}, not {expected}: {weights.last_error}")

            await until(10)
            document["text"] = json.dumps(flagd(50, 50))
            await until(50)
            document["text"] = json.dumps(flagd(50, 50, state="DISABLED"))
            await until(0)
        finally:
            poll.cancel()
        missing = ConfigMapWeights(str(kubeconfig), "shop", "nope")
        await asyncio.to_thread(missing.read)
        assert missing("new-checkout") == 0 and missing.last_error is not None and "404" in missing.last_error


@pytest.mark.integration
async def test_error_ratio_of_the_demo_service_measured_through_the_real_prometheus(
    prometheus_server: PrometheusFactory,
) -> None:
    service = DemoService(
        FixedWeights({"new-checkout": 50}), on_error_rate=0.3, off_error_rate=0.0, rps=100, seed=3
    )
    await service.start()
    try:
        prom = prometheus_server(targets=[service.url.removeprefix("http://")])
        on_ratio = (
            'sum(rate(http_requests_total{flag="{{flag}}",variant="on",code=~"5.."}[{{interval}}]))'
            ' / sum(rate(http_requests_total{flag="{{flag}}",variant="on"}[{{interval}}]))'
        )
        overall = (
            'sum(rate(http_requests_total{flag="{{flag}}",code=~"5.."}[{{interval}}]))'
            ' / sum(rate(http_requests_total{flag="{{flag}}"}[{{interval}}]))'
        )
        variables = {"flag": "new-checkout", "name": "demo", "namespace": "shop", "interval": "10s"}
        # Enough samples for a stable ratio: at 100 rps, ~500 requests with the flag on.
        await wait_for_query_async(
            prom.url,
            'sum(increase(http_requests_total{flag="new-checkout",variant="on"}[10s]))',
            lambda r: r.value is not None and r.value > 300,
            timeout=40,
        )
        provider = PrometheusMetricProvider(PrometheusProvider(address=prom.url))
        on = await provider.measure(render_query(on_ratio, **variables))
        both = await provider.measure(render_query(overall, **variables))
        await provider.aclose()
    finally:
        await service.stop()
    assert on.kind is MeasurementKind.VALUE and on.value is not None
    assert both.kind is MeasurementKind.VALUE and both.value is not None
    assert 0.2 < on.value < 0.4, on
    assert 0.08 < both.value < 0.22, both
