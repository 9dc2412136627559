"""A pytest plugin: the `prometheus_server` factory fixture.

    def test_x(prometheus_server, exporter_port):
        prom = prometheus_server(targets=[f"127.0.0.1:{exporter_port}"])
        wait_for_query(prom.url, "up", lambda r: r.value == 1)

Each call starts one real Prometheus (see support/prometheus.py); all are stopped at teardown.
Without the binary the test is skipped with the reason, except under CI (env CI set), where it fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.support.missing import skip_or_fail
from tests.support.prometheus import PrometheusMissing, PrometheusServer, Targets, find_prometheus, start_prometheus


class PrometheusFactory(Protocol):
    def __call__(
        self,
        targets: Targets = (),
        *,
        scrape_interval: str = "1s",
        web_config: Mapping[str, Any] | None = None,
        rule_files: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> PrometheusServer: ...


def require_prometheus() -> str:
    """The prometheus binary's path; skips the test (fails it under CI) if it is not installed."""
    binary = find_prometheus()
    if binary is None:
        reason = (
            "the real Prometheus server is not installed (Debian package `prometheus`; `make prometheus` "
            "installs it, or set PROMETHEUS_BIN)"
        )
        skip_or_fail(reason)
    return binary


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """A factory that starts a real Prometheus scraping the given targets every second."""
    require_prometheus()
    with contextlib.ExitStack() as stack:
        count = 0

        def start(
            targets: Targets = (),
            *,
            scrape_interval: str = "1s",
            web_config: Mapping[str, Any] | None = None,
            rule_files: Sequence[str] = (),
            extra_args: Sequence[str] = (),
        ) -> PrometheusServer:
            nonlocal count
            count += 1
            try:
                return stack.enter_context(
                    start_prometheus(
                        tmp_path / f"prometheus-{count}",
                        targets,
                        scrape_interval=scrape_interval,
                        web_config=web_config,
                        rule_files=rule_files,
                        extra_args=extra_args,
                    )
                )
            except PrometheusMissing as error:  # removed between the check and the start
                pytest.skip(str(error))

        yield start
