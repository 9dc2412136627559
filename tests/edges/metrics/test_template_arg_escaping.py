"""A metric template's `{{args.NAME}}` cannot change the query's structure: inside a PromQL string
it is escaped as the string's content; outside one it must be a bare word, number or duration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.fixtures import require_prometheus
from tests.support.prometheus import PrometheusServer, start_prometheus

from featurerollout.api import PrometheusProvider
from featurerollout.core.measurement import Measurement
from featurerollout.edges.metrics import PrometheusMetricProvider, render_query
from featurerollout.edges.metrics.queries import UnsafeTemplateArgument, placeholder_quotes

VARS = {"flag": "f", "name": "r", "namespace": "shop", "interval": "1m"}
HOSTILE = ['"}', ") or vector(1)", '"}) or vector(1) or sum(x{a="', "\\", 'a\\"b', "line\nbreak", "it's", "`"]
SCOPED = 'sum(rate(x{namespace="{{namespace}}",job="{{args.job}}"}[{{args.rateWindow}}]))'


def render(template: str, **args: str) -> str:
    return render_query(template, **VARS, args=args)


@pytest.mark.parametrize("value", HOSTILE)
def test_an_arg_inside_double_quotes_stays_inside_them(value: str) -> None:
    query = render(SCOPED, job=value, rateWindow="4m")
    head = 'sum(rate(x{namespace="shop",job="'
    tail = '"}[4m]))'
    assert query.startswith(head) and query.endswith(tail)
    content = query[len(head):-len(tail)]
    # The content is one PromQL string: every quote and backslash in it escaped, no raw newline.
    assert "\n" not in content
    unescaped, pos = "", 0
    while pos < len(content):
        if content[pos] == "\\":
            unescaped += {"n": "\n", "r": "\r"}.get(content[pos + 1], content[pos + 1])
            pos += 2
            continue
        assert content[pos] != '"', f"an unescaped quote in {content!r}"
        unescaped += content[pos]
        pos += 1
    assert unescaped == value


def test_single_quoted_and_raw_strings() -> None:
    assert render("x{a='{{args.v}}'}", v="it's \\ \"") == "x{a='it\\'s \\\\ \"'}"
    assert render("x{a=~`{{args.v}}`}", v='5\\d"') == 'x{a=~`5\\d"`}'
    with pytest.raises(UnsafeTemplateArgument, match="backtick"):
        render("x{a=~`{{args.v}}`}", v="`) or vector(1) or x{a=`")


@pytest.mark.parametrize("value", ["4m) or vector(1", "4m] ) or vector(1) #", "1m\n", "x{a=\"b\"}", ""])
def test_an_arg_outside_quotes_must_be_one_bare_token(value: str) -> None:
    with pytest.raises(UnsafeTemplateArgument, match=r"\{\{args.rateWindow\}\}: the template puts it outside"):
        render(SCOPED, job="a", rateWindow=value)


@pytest.mark.parametrize("value", ["4m", "1h30m", "0.5", "-1", "1e3", "instance", "job:rate5m"])
def test_bare_words_numbers_and_durations_pass_as_they_are(value: str) -> None:
    assert render("sum(x) * {{args.v}}", v=value) == f"sum(x) * {value}"


def test_the_quote_context_follows_escapes_and_comments() -> None:
    template = 'x{a="\\"{{args.v}}", b="{{flag}}"} # "{{args.w}}\ny{c="{{ args.u }}"}'
    quotes = list(placeholder_quotes(template).values())
    assert quotes == ['"', '"', None, '"']


def test_the_shipped_templates_still_render_with_their_defaults() -> None:
    import yaml

    root = Path(__file__).resolve().parents[3]
    for path in sorted((root / "examples" / "metric-templates").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())["spec"]
        args = {a["name"]: a["value"] for a in spec["args"]}
        query = render(spec["query"], **args)
        assert 'variant="on"' in query and "[4m]" in query, path.name
        hostile = render(spec["query"], **{**args, "variant": '"} or vector(1) or x{a="'})
        assert 'variant="\\"} or vector(1) or x{a=\\""' in hostile, path.name


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    require_prometheus()
    with start_prometheus(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.mark.integration
@pytest.mark.parametrize("value", HOSTILE)
async def test_prometheus_receives_the_arg_inside_the_string(prometheus: PrometheusServer, value: str) -> None:
    """label_replace echoes the string Prometheus parsed back as a label: it is the arg, byte for byte,
    and the query is one series, not the `or vector(1)` an escaped arg would have added."""
    provider = PrometheusMetricProvider(PrometheusProvider(address=prometheus.url))
    try:
        echo = await provider.query_at(render('label_replace(vector(1), "echo", "{{args.v}}", "", "")', v=value),
                                       None)
        scoped = await provider.measure(render('sum(nothing{job="{{args.v}}"}) or vector(7)', v=value))
    finally:
        await provider.aclose()
    assert isinstance(echo, list) and len(echo) == 1, echo
    assert echo[0]["metric"]["echo"] == value
    assert scoped == Measurement.of(7)
