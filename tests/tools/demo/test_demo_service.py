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
from tests.edges.metrics.servers import serve
from tests.support.fixtures import PrometheusFactory
from tests.support.prometheus import wait_for_query_async

from featurerollout.api import PrometheusProvider
from featurerollout.core.measurement import MeasurementKind
from featurerollout.edges.metrics import PrometheusMetricProvider, render_query
from featurerollout.edges.targets.flagd import flag_entry
from featurerollout_demo.service import (
    ConfigMapFlags,
    DemoService,
    FixedWeights,
    FlagdEvaluator,
    FlagdFile,
    parser,
    service_from_args,
    weight_in,
)


def flagd(weight_on: int, weight_off: int, state: str = "ENABLED") -> dict[str, object]:
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


def share_on(evaluator: FlagdEvaluator, flag: str, users: list[str]) -> float:
    return sum(evaluator.variant(flag, u) == "on" for u in users) / len(users)


def test_the_variant_comes_from_the_official_evaluator() -> None:
    """The share at a weight and the stability per user; the 100,000-key properties of the
    documents the operator writes are in tests/edges/targets/test_flagd_official_evaluator.py."""
    users = [f"user-{i}" for i in range(4000)]
    evaluator = FlagdEvaluator()
    evaluator.load(flagd(25, 75))
    assert 0.22 < share_on(evaluator, "new-checkout", users) < 0.28
    assert [evaluator.variant("new-checkout", u) for u in users[:200]] == [
        evaluator.variant("new-checkout", u) for u in users[:200]
    ]
    assert share_on(evaluator, "other", users) == 1  # no targeting: the default variant, on
    evaluator.load(flagd(25, 75, state="DISABLED"))
    assert share_on(evaluator, "new-checkout", users) == 0  # DISABLED: the application's default
    assert evaluator.variant("missing", "u") == "off"  # unknown flag: the application's default


def test_a_document_flagd_refuses_keeps_the_last_flags() -> None:
    evaluator = FlagdEvaluator()
    evaluator.load(flagd(100, 0))
    assert evaluator.variant("new-checkout", "u") == "on"
    evaluator.load({"flags": {"new-checkout": {"state": "SOMETIMES", "variants": {}}}})
    assert evaluator.error is not None
    assert evaluator.variant("new-checkout", "u") == "on"


def test_non_integer_weights_are_not_served_by_flagd() -> None:
    """Why the operator writes 0.5% as 5/995: flagd 2.0's `fractional` refuses 0.5/99.5, and
    then serves the default variant to everyone."""
    users = [f"user-{i}" for i in range(4000)]
    evaluator = FlagdEvaluator()
    refused = flagd(0, 0)
    refused["flags"]["new-checkout"]["targeting"]["fractional"] = [["on", 50.5], ["off", 49.5]]  # type: ignore[index]
    evaluator.load(refused)
    assert share_on(evaluator, "new-checkout", users) == 0
    evaluator.load({"flags": {"new-checkout": flag_entry(50.5)}})
    assert 0.47 < share_on(evaluator, "new-checkout", users) < 0.54


def test_weight_of_a_flagd_document() -> None:
    assert weight_in(flagd(25, 75), "new-checkout") == 25
    assert weight_in(json.loads(json.dumps(flagd(5, 995))), "new-checkout") == 0.5
    assert weight_in(flagd(25, 75, state="DISABLED"), "new-checkout") == 0
    assert weight_in(flagd(25, 75), "missing") == 0
    assert weight_in({}, "new-checkout") == 0


def test_fixed_weights_are_the_operators_entries() -> None:
    source = FixedWeights({"new-checkout": 0.5})
    document = source.document()
    assert document == {"flags": {"new-checkout": flag_entry(0.5)}}
    assert source.document() is document  # unchanged: the same object, so no reload
    source.weights["new-checkout"] = 25
    assert source.document() == {"flags": {"new-checkout": flag_entry(25)}}


def test_a_flagd_file_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "flags.flagd.json"
    source = FlagdFile(path)
    assert weight_in(source.document(), "new-checkout") == 0  # no file yet
    path.write_text(json.dumps(flagd(10, 90)))
    assert weight_in(source.document(), "new-checkout") == 10
    path.write_text(json.dumps(flagd(100, 0)) + "\n")
    assert weight_in(source.document(), "new-checkout") == 100


def test_the_module_runs_with_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "featurerollout_demo.service", "--help"], capture_output=True, text=True, timeout=60
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
    assert service.weight("new-checkout") == 25
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
    assert isinstance(demo.source, FixedWeights)
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
        demo.source.weights["new-checkout"] = 100
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
    # Created at its first increment, as a client library does: "off" never failed, so it has no 500 series.
    assert 'code="500",flag="new-checkout",variant="off"' not in text
    assert 'code="200",flag="new-checkout",variant="on"' not in text


async def test_the_load_generator_sends_requests_to_itself() -> None:
    service = DemoService(FixedWeights({"new-checkout": 50}), rps=200, seed=2)
    await service.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            # Read from the registry, not through .labels(), which would create the series it reads.
            total = sum(
                service.registry.get_sample_value(
                    "http_requests_total", {"flag": "new-checkout", "variant": v, "code": c}
                ) or 0.0
                for v in ("on", "off") for c in ("200", "500")
            )
            if total >= 50:
                break
        assert total >= 50
    finally:
        await service.stop()


async def test_configmap_flags_follow_the_configmap_through_the_kubernetes_api(tmp_path: Path) -> None:
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
        flags = ConfigMapFlags(str(kubeconfig), "shop", "feature-flags")
        poll = asyncio.create_task(flags.poll(every=0.05))
        try:
            async def until(expected: float) -> None:
                for _ in range(200):
                    if weight_in(flags.document(), "new-checkout") == expected:
                        return
                    await asyncio.sleep(0.02)
                raise AssertionError(f"weight stayed {weight_in(flags.document(), 'new-checkout')}, "
                                     f"not {expected}: {flags.last_error}")

            await until(10)
            document["text"] = json.dumps(flagd(50, 50))
            await until(50)
            document["text"] = json.dumps(flagd(50, 50, state="DISABLED"))
            await until(0)
        finally:
            poll.cancel()
        missing = ConfigMapFlags(str(kubeconfig), "shop", "nope")
        await asyncio.to_thread(missing.read)
        assert weight_in(missing.document(), "new-checkout") == 0
        assert missing.last_error is not None and "404" in missing.last_error


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
