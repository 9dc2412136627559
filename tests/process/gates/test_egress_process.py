"""The egress policy through the real operator process, in cluster mode (`--deny-loopback`, as the
chart runs it), on the real API server (issue 21, "Egress policy"): a webhook gate whose URL's host
resolves to loopback, one at the cloud metadata address, and a Prometheus on loopback are refused
with the rule's name, and the test's own listener sees no connection at all."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.rollouts import make_configmap, make_rollout, status

pytestmark = pytest.mark.integration


class Listener:
    """A TCP listener on 127.0.0.1 that counts every connection it accepts (and answers 200)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                except OSError:
                    pass


@pytest.fixture
def listener() -> Iterator[Listener]:
    running = Listener()
    try:
        yield running
    finally:
        running.sock.close()


def _gate_message(cluster: Cluster, name: str, says: str) -> str:
    found: str = wait_until(
        lambda: says in (m := ((status(cluster, name).get("gate") or {}).get("message") or "")) and m, 30,
        f"{name}'s gate to be refused")
    return found


def test_gates_at_loopback_and_metadata_addresses_are_refused_naming_the_rule_and_nothing_is_sent(
    cluster: Cluster, operator: OperatorFactory, listener: Listener
) -> None:
    make_configmap(cluster)
    operator("--deny-loopback")
    stages = [{"weight": 10, "duration": "1h"}, {"weight": 100}]
    # `localhost` is a name: the check is on what it resolves to (127.0.0.1 or ::1), not on the text.
    make_rollout(cluster, "to-loopback", stages=stages, gates=[{
        "name": "smoke", "before": "Start",
        "webhook": {"url": f"http://localhost:{listener.port}/gate", "timeout": "2s"}}])
    make_rollout(cluster, "to-metadata", stages=stages, gates=[{
        "name": "smoke", "before": "Start",
        "webhook": {"url": "http://169.254.169.254/latest/meta-data/", "timeout": "2s"}}])

    loopback = _gate_message(cluster, "to-loopback", "refused")
    assert f"POST http://localhost:{listener.port}/gate not sent: refused: localhost resolves to " in loopback
    assert "(loopback or this host; --deny-loopback)" in loopback, loopback
    metadata = _gate_message(cluster, "to-metadata", "refused")
    assert metadata.startswith("POST http://169.254.169.254/latest/meta-data/ not sent: refused: 169.254.169.254 "
                               "is in 169.254.169.254/32 (cloud metadata; the operator's egress policy)"), metadata
    for name in ("to-loopback", "to-metadata"):
        held = status(cluster, name)
        assert (held["phase"], held["currentWeight"]) == ("Waiting", 0)
    assert listener.accepted == 0


def test_a_prometheus_on_loopback_is_refused_in_cluster_mode_and_asked_without_it(
    cluster: Cluster, operator: OperatorFactory, listener: Listener
) -> None:
    make_configmap(cluster)
    process = operator("--deny-loopback")
    make_rollout(cluster, "measured", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}], analysis={
        "interval": "1s", "consecutiveErrorLimit": 100,
        "prometheus": {"address": f"http://localhost:{listener.port}", "timeout": "2s"},
        "metrics": [{"name": "error-rate", "query": "vector(0)", "max": 0.05}],
    })
    message: str = wait_until(lambda: (status(cluster, "measured").get("metrics") or [{}])[0].get("message"), 30,
                              "the refused evaluation")
    assert f"Prometheus at http://localhost:{listener.port} not asked: refused: localhost resolves to " in message
    assert "(loopback or this host; --deny-loopback)" in message
    assert listener.accepted == 0
    process.stop()
