"""A Prometheus answer is read with a byte cap: 1 GiB streamed by a server of the test's own is an
Error naming the cap, and the process's memory barely moves."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from tests.edges.metrics.servers import serve

from featurerollout.api import PrometheusProvider
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.edges.http_bodies import MAX_ANSWER_BYTES, AnswerTooLarge, read_capped, size_text
from featurerollout.edges.metrics import PrometheusMetricProvider

pytestmark = pytest.mark.integration

GIB = 1 << 30
MIB = 1 << 20


class Huge:
    """What the streaming server did: how many bytes it managed to send."""

    sent = 0


@contextlib.asynccontextmanager
async def huge_prometheus(huge: Huge, *, declare_length: bool) -> AsyncIterator[str]:
    """/api/v1/query answers a 1 GiB JSON document, generated a MiB at a time (never held whole)."""
    head = b'{"status":"success","data":{"resultType":"vector","result":['
    series = b'{"metric":{"__name__":"x","pad":"' + b"p" * 900 + b'"},"value":[1,"1"]},'
    chunk = series * (MIB // len(series))

    async def query(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if declare_length:
            response.content_length = GIB
        await response.prepare(request)
        try:
            await response.write(head)
            huge.sent = len(head)
            while huge.sent + len(chunk) < GIB:
                await response.write(chunk)
                huge.sent += len(chunk)
        except (ConnectionError, RuntimeError):  # the client hung up: what the cap is for
            pass
        return response

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", query)
    async with serve(app) as url:
        yield url


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


@pytest.mark.parametrize("declare_length", [False, True], ids=["chunked", "content-length"])
async def test_a_1_gib_answer_is_an_error_naming_the_cap_and_costs_no_memory(declare_length: bool) -> None:
    huge = Huge()
    before = peak_rss_bytes()
    async with huge_prometheus(huge, declare_length=declare_length) as url:
        provider = PrometheusMetricProvider(PrometheusProvider(address=url, timeout="60s"))
        try:
            measured = await provider.measure("x")
        finally:
            await provider.aclose()
    growth = peak_rss_bytes() - before
    assert measured.kind is MeasurementKind.ERROR, measured
    assert "answer larger than 10 MiB" in measured.detail, measured
    assert growth < 100 * MIB, f"the process grew by {growth / MIB:.0f} MiB reading the answer"
    assert huge.sent < 200 * MIB, f"the server sent {huge.sent / MIB:.0f} MiB: the answer was read on"


async def test_an_answer_under_the_cap_is_read_as_before() -> None:
    async def query(request: web.Request) -> web.Response:
        body = {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"pad": "p" * (2 * MIB)}, "value": [1, "0.5"]}]}}
        return web.json_response(body)

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", query)
    async with serve(app) as url:
        small = PrometheusMetricProvider(PrometheusProvider(address=url), max_answer_bytes=MIB)
        roomy = PrometheusMetricProvider(PrometheusProvider(address=url))
        try:
            too_big = await small.measure("x")
            assert await roomy.measure("x") == Measurement.of(0.5)
        finally:
            small.close()
            roomy.close()
    assert too_big.kind is MeasurementKind.ERROR and "answer larger than 1 MiB" in too_big.detail


def test_read_capped_stops_at_the_cap_without_reading_on() -> None:
    taken: list[int] = []

    def chunks() -> Iterator[bytes]:
        for index in range(1000):
            taken.append(index)
            yield b"x" * 1000

    assert read_capped(iter([b"ab", b"cd"]), 4) == b"abcd"
    with pytest.raises(AnswerTooLarge, match="answer larger than 5000 bytes"):
        read_capped(chunks(), 5000)
    assert len(taken) == 6
    assert size_text(MAX_ANSWER_BYTES) == "10 MiB" and size_text(64 * 1024) == "64 KiB"


def test_the_run_flag_defaults_to_the_operators_cap_and_reaches_the_providers() -> None:
    from featurerollout.commands.cli import build_parser
    from featurerollout.edges.metrics.measurer import Measurer
    from featurerollout.process.runner import MAX_RESPONSE_BYTES

    assert MAX_RESPONSE_BYTES == MAX_ANSWER_BYTES
    assert build_parser().parse_args(["run"]).max_response_bytes == MAX_ANSWER_BYTES
    assert build_parser().parse_args(["run", "--max-response-bytes=2048"]).max_response_bytes == 2048
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--max-response-bytes=10MiB"])
    measurer = Measurer(kube=None, max_answer_bytes=4096)  # type: ignore[arg-type]
    provider = measurer.provider(PrometheusProvider(address="http://127.0.0.1:9"), None)
    assert isinstance(provider, PrometheusMetricProvider)
    session = provider._connect._session
    assert getattr(session, "max_bytes", None) == 4096
    provider.close()
