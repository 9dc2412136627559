"""Pure tests: query templating, credentials from a Secret, result classification, measure_all."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

import pytest

from featurerollout.api import Metric
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.edges.metrics import (
    InvalidCredentials,
    MetricProvider,
    PrometheusCredentials,
    UnknownQueryVariable,
    credentials_from_secret,
    measure_all,
    prometheus_duration,
    render_query,
)
from featurerollout.edges.metrics.prometheus import classify_result

VARS = {"flag": "new-checkout", "name": "checkout", "namespace": "shop", "interval": "1m"}


def test_all_variables_are_rendered_with_or_without_spaces() -> None:
    template = '{{flag}} {{ flag }} {{name}} {{  namespace  }} [{{interval}}] [{{ interval }}]'
    assert render_query(template, **VARS) == "new-checkout new-checkout checkout shop [1m] [1m]"


def test_a_realistic_error_rate_query() -> None:
    template = (
        'sum(rate(http_requests_total{flag="{{flag}}",code=~"5.."}[{{ interval }}]))\n'
        '/ sum(rate(http_requests_total{flag="{{flag}}"}[{{ interval }}]))'
    )
    assert render_query(template, **{**VARS, "interval": "30s"}) == (
        'sum(rate(http_requests_total{flag="new-checkout",code=~"5.."}[30s]))\n'
        '/ sum(rate(http_requests_total{flag="new-checkout"}[30s]))'
    )


def test_a_query_without_variables_is_unchanged() -> None:
    assert render_query('up{job="x"}', **VARS) == 'up{job="x"}'


@pytest.mark.parametrize("variable", ["flga", "variables.x", "target", "Flag", ""])
def test_an_unknown_variable_is_an_error_naming_it(variable: str) -> None:
    with pytest.raises(UnknownQueryVariable) as raised:
        render_query("x{a=\"{{ " + variable + " }}\"}", **VARS)
    assert isinstance(raised.value, ValueError)
    assert f"unknown query variable {{{{{variable}}}}}" in str(raised.value)
    assert "{{flag}}, {{name}}, {{namespace}}, {{interval}}" in str(raised.value)


@pytest.mark.parametrize(
    ("interval", "rendered"),
    [
        ("1m", "1m"),
        ("60s", "1m"),
        ("30s", "30s"),
        ("90s", "1m30s"),
        ("1.5m", "1m30s"),
        ("1h30m", "1h30m"),
        ("168h", "168h"),
        ("1500ms", "1s500ms"),
        (timedelta(minutes=2), "2m"),
    ],
)
def test_interval_is_rendered_as_a_prometheus_duration(interval: str | timedelta, rendered: str) -> None:
    assert prometheus_duration(interval) == rendered
    assert render_query("[{{interval}}]", **{**VARS, "interval": interval}) == f"[{rendered}]"


def test_interval_is_only_checked_when_used() -> None:
    assert render_query("{{flag}}", **{**VARS, "interval": "0s"}) == "new-checkout"
    with pytest.raises(ValueError, match="at least 1ms"):
        render_query("[{{interval}}]", **{**VARS, "interval": "0s"})


# --- credentials ------------------------------------------------------------------------------


def test_bearer_token_is_read_and_stripped() -> None:
    assert credentials_from_secret({"token": "abc\n"}) == PrometheusCredentials(token="abc")


def test_basic_auth_and_ca_bundle_are_read() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
    assert credentials_from_secret({"username": "u", "password": "p", "ca.crt": pem}) == (
        PrometheusCredentials(username="u", password="p", ca_bundle=pem)
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"token": "t", "username": "u", "password": "p"}, "both a token and a username/password"),
        ({"username": "u"}, "holds a username but no password"),
        ({"password": "p"}, "holds a password but no username"),
        ({"other": "x"}, "none of the keys token, username, password or ca.crt (it has: other)"),
        ({}, "(it has: no keys)"),
        ({"ca.crt": "not a pem"}, "not a PEM certificate"),
    ],
)
def test_inconsistent_secrets_are_refused_with_a_clear_message(data: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidCredentials) as raised:
        credentials_from_secret(data)
    assert message in str(raised.value)


def test_credentials_never_show_secrets() -> None:
    shown = repr(PrometheusCredentials(token="s3cr3t"))
    assert "s3cr3t" not in shown and "token=***" in shown


# --- classification of the query API's `data.result` ------------------------------------------


def test_classification_of_result_shapes() -> None:
    assert classify_result([1.0, "0.5"]) == Measurement.of(0.5)
    assert classify_result([{"metric": {}, "value": [1.0, "2"]}]) == Measurement.of(2)
    assert classify_result([]).kind is MeasurementKind.NO_DATA
    assert classify_result([1.0, "NaN"]).kind is MeasurementKind.NO_DATA
    inf = classify_result([1.0, "-Inf"])
    assert inf.kind is MeasurementKind.VALUE and inf.value is not None and math.isinf(inf.value)
    assert "3 series" in classify_result([{"metric": {}, "value": [1, "1"]}] * 3).detail
    assert "range vector" in classify_result([{"metric": {}, "values": [[1, "1"]]}]).detail
    assert "string 'x'" in classify_result([1.0, "x"]).detail
    assert classify_result({"unexpected": True}).kind is MeasurementKind.ERROR


# --- measure_all --------------------------------------------------------------------------------


class FakeProvider:
    """Answers from a table, after a delay per query, and records what it was asked."""

    def __init__(self, answers: dict[str, Measurement], delay: float = 0.0) -> None:
        self.answers = answers
        self.delay = delay
        self.asked: list[str] = []
        self.running = 0
        self.most_running = 0

    async def measure(self, query: str) -> Measurement:
        self.asked.append(query)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            if query == "boom":
                raise RuntimeError("provider bug")
            return self.answers[query]
        finally:
            self.running -= 1

    async def is_online(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def test_the_fake_is_a_metric_provider() -> None:
    assert isinstance(FakeProvider({}), MetricProvider)


async def test_measure_all_runs_the_metrics_concurrently_and_keys_them_by_name() -> None:
    provider = FakeProvider({'a{flag="f"}': Measurement.of(1), "b[1m]": Measurement.of(2)}, delay=0.05)
    metrics = [
        Metric(name="first", query='a{flag="{{flag}}"}', max=1),
        Metric(name="second", query="b[{{interval}}]", max=1),
        Metric(name="typo", query="{{nope}}", max=1),
        Metric(name="bug", query="boom", max=1),
    ]
    results = await measure_all(provider, metrics, flag="f", name="n", namespace="ns", interval="60s")
    assert results["first"] == Measurement.of(1)
    assert results["second"] == Measurement.of(2)
    assert results["typo"].kind is MeasurementKind.ERROR
    assert results["typo"].detail.startswith("metric 'typo': unknown query variable {{nope}}")
    assert results["bug"] == Measurement.error("metric 'bug': RuntimeError: provider bug")
    assert provider.most_running == 3  # the three renderable queries were in flight together
