"""The demo service's latency histogram: `http_request_duration_seconds{flag, variant}`, each
variant's own latency, and the 95th percentile that the latency-p95 template reads from it."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client import generate_latest

from featurerollout_demo.service import DemoService, FixedWeights, Latencies, parser, service_from_args


def bucket_counts(service: DemoService, flag: str, variant: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in service.registry.collect():
        for sample in family.samples:
            if (sample.name == "http_request_duration_seconds_bucket" and sample.labels["flag"] == flag
                    and sample.labels["variant"] == variant):
                counts[sample.labels["le"]] = sample.value
    return counts


def p95_upper_bucket(counts: dict[str, float]) -> float:
    """The smallest bucket bound holding 95% of the observations (histogram_quantile's bucket)."""
    total = counts["+Inf"]
    return min(float(le) for le, count in counts.items() if count >= 0.95 * total)


def test_each_variant_has_its_own_latency() -> None:
    service = DemoService(FixedWeights({"slow": 50}), flags=["slow"], seed=7,
                          latencies={"slow": Latencies(on=0.2, off=0.03)})
    for user in range(2000):
        service.serve("slow", f"user-{user}")
    on, off = bucket_counts(service, "slow", "on"), bucket_counts(service, "slow", "off")
    assert on["+Inf"] > 500 and off["+Inf"] > 500
    # uniform in [0.5, 1.5] x typical: p95 about 1.45 x: 0.29 s (bucket 0.3) and 0.0435 s (bucket 0.05)
    assert p95_upper_bucket(on) == 0.3 and p95_upper_bucket(off) == 0.05
    assert on["0.075"] == 0  # never faster than half of 0.2 s


def test_series_come_into_being_at_their_first_request() -> None:
    # As a client library does: no series before the first observation, then only the ones touched.
    service = DemoService(FixedWeights({"f": 0}), flags=["f"])
    text = generate_latest(service.registry).decode()
    assert 'flag="f"' not in text
    service.serve("f", "user-1")  # weight 0: the "off" variant
    text = generate_latest(service.registry).decode()
    assert 'http_request_duration_seconds_count{flag="f",variant="off"} 1.0' in text
    assert 'http_requests_total{code="200",flag="f",variant="off"} 1.0' in text
    assert 'variant="on"' not in text and 'code="500"' not in text


def test_command_line_latencies() -> None:
    args = parser().parse_args(["--weight", "p=10", "--flag-latency", "p:on=0.2", "--off-latency", "0.01"])
    service, _ = service_from_args(args)
    assert service.latency_of("p") == Latencies(on=0.2, off=0.01)
    with pytest.raises(SystemExit):
        parser().parse_args(["--flag-latency", "p:maybe=0.2"])


def test_the_handler_really_takes_the_latency_and_control_changes_it() -> None:
    async def scenario() -> tuple[float, dict[str, object]]:
        service = DemoService(FixedWeights({"p": 100}), flags=["p"], latencies={"p": Latencies(on=0.2)})
        url = await service.start()
        try:
            async with aiohttp.ClientSession() as session:
                loop = asyncio.get_running_loop()
                began = loop.time()
                async with session.get(f"{url}/serve", params={"flag": "p", "user": "u"}) as response:
                    assert response.status == 200 and (await response.json())["variant"] == "on"
                took = loop.time() - began
                async with session.post(f"{url}/control", json={"p": {"on_latency": 0.01}}) as response:
                    state = await response.json()
            return took, state
        finally:
            await service.stop()

    took, state = asyncio.run(scenario())
    assert took >= 0.1  # at least half the typical 0.2 s
    assert state["p"]["on_latency"] == 0.01  # type: ignore[index]


@pytest.mark.parametrize(("option", "value", "form"), [
    ("--flag-latency", "new-pricing:on=11", "write FLAG:on=SECONDS or FLAG:off=SECONDS"),
    ("--flag-latency", "new-pricing=0.2", "write FLAG:on=SECONDS or FLAG:off=SECONDS"),
    ("--flag-error-rate", "new-checkout:maybe=0.3", "write FLAG:on=RATE or FLAG:off=RATE"),
    ("--flag-error-rate", "new-checkout:on=1.5", "write FLAG:on=RATE or FLAG:off=RATE"),
])
def test_a_bad_flag_option_is_refused_with_the_form_to_write(
    option: str, value: str, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args([option, value])
    assert form in capsys.readouterr().err


def test_flag_options_parse() -> None:
    args = parser().parse_args(["--flag-latency", "new-pricing:on=0.2", "--flag-error-rate", "new-checkout:off=0.3"])
    assert args.flag_latency == [("new-pricing", "on", 0.2)]
    assert args.flag_error_rate == [("new-checkout", "off", 0.3)]
