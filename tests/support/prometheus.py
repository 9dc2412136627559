"""Start the REAL Prometheus server for a test, and wait on its query API.

    with start_prometheus(tmp_path, targets=["127.0.0.1:8000"]) as prom:
        wait_for_query(prom.url, 'up{job="app"}', lambda r: r.value == 1, timeout=20)

The server listens on a free loopback port, scrapes (and evaluates rules) every second, keeps its
TSDB under `tmp_path`, and is stopped (terminate, then kill) however the test ends. Targets can be
changed on a running server with `set_targets` (the config is rewritten and reloaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from featurerollout_sandbox.children import spawn

READY_TIMEOUT = 30.0


class PrometheusMissing(RuntimeError):
    """The prometheus binary is not installed."""


def find_prometheus() -> str | None:
    """The prometheus binary: $PROMETHEUS_BIN, else `prometheus` on PATH, else /usr/bin/prometheus."""
    explicit = os.environ.get("PROMETHEUS_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Targets = Sequence[str] | Mapping[str, Sequence[str]]


def _scrape_configs(targets: Targets, scrape_interval: str) -> list[dict[str, Any]]:
    jobs: Mapping[str, Sequence[str]] = {"app": targets} if not isinstance(targets, Mapping) else targets
    return [
        {
            "job_name": job,
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "static_configs": [{"targets": list(addresses)}],
        }
        for job, addresses in jobs.items()
        if addresses
    ]


@dataclass
class PrometheusServer:
    """A running Prometheus. `url` is the base of its HTTP API (`http://127.0.0.1:PORT`)."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    config_path: Path
    data_dir: Path
    log_path: Path
    scrape_interval: str = "1s"
    rule_files: list[str] = field(default_factory=list)

    def set_targets(self, targets: Targets) -> None:
        """Replace the scrape targets (a list for job `app`, or {job: [host:port, ...]}) and reload."""
        _write_config(self.config_path, targets, self.scrape_interval, self.rule_files)
        response = httpx.post(f"{self.url}/-/reload", timeout=10)
        response.raise_for_status()

    def log(self) -> str:
        """What the server wrote to stdout and stderr so far (for failure messages)."""
        return self.log_path.read_text(errors="replace")


def _write_config(path: Path, targets: Targets, scrape_interval: str, rule_files: list[str]) -> None:
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": _scrape_configs(targets, scrape_interval),
    }
    if rule_files:
        config["rule_files"] = rule_files
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(config, sort_keys=False))
    temporary.replace(path)


@contextlib.contextmanager
def start_prometheus(
    directory: Path,
    targets: Targets = (),
    *,
    scrape_interval: str = "1s",
    web_config: Mapping[str, Any] | None = None,
    rule_files: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    ready_timeout: float = READY_TIMEOUT,
    port: int | None = None,
    data_dir: Path | None = None,
    retention: str = "1h",
) -> Iterator[PrometheusServer]:
    """Run Prometheus until the block ends. Raises PrometheusMissing if it is not installed.

    `web_config` is written as `--web.config.file` (e.g. `basic_auth_users`); `/-/ready` is then
    polled without credentials only when there are none to check. Give `port` and the same
    `directory` to start a stopped server again where it was (an outage and a recovery).
    `data_dir` serves a prepared TSDB (e.g. blocks made by `promtool tsdb create-blocks-from
    openmetrics`); give a `retention` that keeps their age (the default 1h would delete them).
    """
    binary = find_prometheus()
    if binary is None:
        raise PrometheusMissing(
            "the prometheus binary was not found (set PROMETHEUS_BIN, or install the Debian package "
            "`prometheus`: `make prometheus`)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "prometheus.yml"
    data_dir = data_dir or directory / "data"
    log_path = directory / "prometheus.log"
    _write_config(config_path, targets, scrape_interval, list(rule_files))
    port = port or free_port()
    args = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",  # POST /-/reload, for set_targets
        "--log.level=warn",
        # a short lookback makes a stopped series disappear quickly from instant queries
        "--query.lookback-delta=30s",
    ]
    if web_config is not None:
        web_config_path = directory / "web.yml"
        web_config_path.write_text(yaml.safe_dump(dict(web_config)))
        args.append(f"--web.config.file={web_config_path}")
    args.extend(extra_args)
    with log_path.open("wb") as log:
        process = spawn(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = PrometheusServer(
        url=f"http://127.0.0.1:{port}",
        port=port,
        process=process,
        config_path=config_path,
        data_dir=data_dir,
        log_path=log_path,
        scrape_interval=scrape_interval,
        rule_files=list(rule_files),
    )
    try:
        _wait_ready(server, ready_timeout, authenticated=web_config is not None)
        yield server
    finally:
        stop(process)


def _wait_ready(server: PrometheusServer, timeout: float, *, authenticated: bool) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"prometheus exited with {server.process.returncode} before it was ready:\n{server.log()}"
            )
        try:
            response = httpx.get(f"{server.url}/-/ready", timeout=2)
            # With a web config, 401 proves the server is up; whether it is ready the caller's
            # credentialed queries will find out.
            if response.status_code == 200 or (authenticated and response.status_code == 401):
                return
            last = f"HTTP {response.status_code}: {response.text.strip()}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.05)
    raise TimeoutError(f"prometheus at {server.url} not ready after {timeout:g}s ({last}):\n{server.log()}")


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate the process, then kill it if it has not ended within `grace` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


# --- asking the query API ----------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """One instant query's answer: `result_type`, the raw `result`, and `value` when it is one number."""

    result_type: str
    result: Any

    @property
    def series(self) -> int:
        """How many series a vector holds (1 for a scalar)."""
        return len(self.result) if self.result_type in ("vector", "matrix") else 1

    @property
    def value(self) -> float | None:
        """The number of a scalar or a one-series vector; None otherwise."""
        if self.result_type == "scalar":
            return float(self.result[1])
        if self.result_type == "vector" and len(self.result) == 1:
            return float(self.result[0]["value"][1])
        return None

    @property
    def has_number(self) -> bool:
        """A value that is not NaN."""
        return self.value is not None and not math.isnan(self.value)


def query(prom_url: str, promql: str, *, headers: Mapping[str, str] | None = None) -> QueryResult:
    """One instant query; raises on an HTTP or API error (with Prometheus's message)."""
    response = httpx.get(f"{prom_url}/api/v1/query", params={"query": promql}, headers=headers, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed: {body.get('errorType')}: {body.get('error')}")
    return QueryResult(body["data"]["resultType"], body["data"]["result"])


def wait_for_query(
    prom_url: str,
    promql: str,
    predicate: Callable[[QueryResult], bool] = lambda result: result.has_number,
    timeout: float = 30.0,
    *,
    interval: float = 0.25,
) -> QueryResult:
    """Poll an instant query until `predicate(result)` holds; returns that result, or raises TimeoutError.

    Blocking: in an async test whose event loop serves a scrape target, use `wait_for_query_async`.
    """
    deadline = time.monotonic() + timeout
    last: object = "no answer yet"
    while True:
        try:
            result = query(prom_url, promql)
            if predicate(result):
                return result
            last = result
        except (httpx.HTTPError, RuntimeError, ValueError) as error:
            last = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{promql!r} did not satisfy the condition within {timeout:g}s; last: {last!r}")
        time.sleep(interval)


async def wait_for_query_async(
    prom_url: str,
    promql: str,
    predicate: Callable[[QueryResult], bool] = lambda result: result.has_number,
    timeout: float = 30.0,
    *,
    interval: float = 0.25,
) -> QueryResult:
    """As wait_for_query, without blocking the event loop (the HTTP call runs in a thread)."""
    deadline = time.monotonic() + timeout
    last: object = "no answer yet"
    while True:
        try:
            result = await asyncio.to_thread(query, prom_url, promql)
            if predicate(result):
                return result
            last = result
        except (httpx.HTTPError, RuntimeError, ValueError) as error:
            last = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{promql!r} did not satisfy the condition within {timeout:g}s; last: {last!r}")
        await asyncio.sleep(interval)


def targets_up(prom_url: str) -> dict[str, str]:
    """The health of each active target, by scrape URL (`up`, `down`, `unknown`)."""
    response = httpx.get(f"{prom_url}/api/v1/targets", timeout=10)
    response.raise_for_status()
    return {t["scrapeUrl"]: t["health"] for t in json.loads(response.text)["data"]["activeTargets"]}
