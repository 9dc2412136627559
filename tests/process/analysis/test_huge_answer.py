"""The real operator against a Prometheus address that streams a 1 GiB answer (a server of the
test's own, generating it lazily): the metric is an Error naming the cap, the operator's peak RSS
stays under the chart's memory limit (256 Mi), and it lives on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.rollouts import make_configmap, make_rollout, status

pytestmark = pytest.mark.integration

GIB, MIB = 1 << 30, 1 << 20
CHART_MEMORY_LIMIT = 256 * MIB


class HugeAnswers(BaseHTTPRequestHandler):
    """Every query is answered with 1 GiB of JSON-looking series, a MiB at a time."""

    protocol_version = "HTTP/1.0"  # no Content-Length: the body ends when the connection does
    sent: list[int] = []  # bytes per answer
    head = b'{"status":"success","data":{"resultType":"vector","result":['
    chunk = (b'{"metric":{"pad":"' + b"p" * 1000 + b'"},"value":[1,"1"]},') * (MIB // 1030)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        sent = 0
        try:
            self.wfile.write(self.head)
            while sent < GIB:
                self.wfile.write(self.chunk)
                sent += len(self.chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the operator hung up: what the cap is for
        self.sent.append(sent)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def huge_prometheus() -> Iterator[str]:
    HugeAnswers.sent = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), HugeAnswers)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_1_gib_answer_is_an_error_naming_the_cap_and_the_operator_lives(
    cluster: Cluster, operator: OperatorFactory, huge_prometheus: str
) -> None:
    make_configmap(cluster)
    process = operator()
    assert process.popen is not None
    make_rollout(cluster, "flooded", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}], analysis={
        "interval": "1s", "consecutiveErrorLimit": 1000,
        "prometheus": {"address": huge_prometheus, "timeout": "30s"},
        "metrics": [{"name": "errors", "query": "x", "max": 1}],
    })
    metric = wait_until(
        lambda: next((m for m in status(cluster, "flooded").get("metrics", [])
                      if "answer larger than" in (m.get("message") or "")), None),
        60, "the metric's Error naming the cap",
    )
    assert "answer larger than 10 MiB" in metric["message"], metric
    wait_until(lambda: len(HugeAnswers.sent) >= 3, 30, "three answers cut short")
    assert process.running, "the operator died"
    peak = peak_rss(process.popen.pid)
    assert peak < CHART_MEMORY_LIMIT, f"the operator's peak RSS was {peak / MIB:.0f} MiB"
    print(f"operator peak RSS {peak / MIB:.0f} MiB; bytes sent per answer {HugeAnswers.sent}")
    assert all(sent < 200 * MIB for sent in HugeAnswers.sent), HugeAnswers.sent
    held = status(cluster, "flooded")
    assert (held["phase"], held["currentWeight"]) == ("Progressing", 10)
