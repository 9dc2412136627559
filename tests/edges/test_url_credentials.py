"""Credentials inside the URLs a rollout names (user:password@, token=...) are redacted in every
message the edges write (the gate's status message, the webhook target's condition, a metric's
error), also when the receiver or the HTTP client echoes them; the request itself still carries them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from tests.process.gates.test_gates_webhook import asked, spec_for

from featurerollout.api import PrometheusProvider
from featurerollout.api import WebhookTarget as WebhookSpec
from featurerollout.edges.metrics.prometheus import PrometheusMetricProvider
from featurerollout.edges.targets.base import TargetError
from featurerollout.edges.targets.webhook import WebhookClients, WebhookTarget

PASSWORD, TOKEN = "pa55w0rd-91c2", "t0ken-4e7d0b"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Echo:
    """Answers every request with 500 and the request's first line (its path and query) in the body."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(65536)
                self.requests.append(request)
                body = b"you asked: " + request.split(b"\r\n", 1)[0]
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(body), body))


@pytest.fixture
def echo() -> Iterator[Echo]:
    running = Echo()
    try:
        yield running
    finally:
        running.sock.close()


def test_a_gate_message_shows_its_url_without_credentials_even_when_echoed(echo: Echo) -> None:
    url = f"http://me:{PASSWORD}@127.0.0.1:{echo.port}/gate?token={TOKEN}&team=shop"
    check = asked(spec_for(url))
    assert not check.opened
    assert check.message.startswith(
        f"POST http://me:[redacted]@127.0.0.1:{echo.port}/gate?token=[redacted]&team=shop answered 500"), check.message
    assert "you asked: POST /gate?token=[redacted]&team=shop" in check.message
    assert PASSWORD not in check.message and TOKEN not in check.message
    assert f"token={TOKEN}".encode() in echo.requests[0]  # the receiver still got what the URL says


def test_a_gate_that_cannot_be_reached_says_so_without_credentials() -> None:
    port = closed_port()
    check = asked(spec_for(f"http://me:{PASSWORD}@127.0.0.1:{port}/gate?access_token={TOKEN}"))
    assert f"POST http://me:[redacted]@127.0.0.1:{port}/gate?access_token=[redacted]: could not connect" \
        in check.message, check.message
    assert PASSWORD not in check.message and TOKEN not in check.message


async def test_a_webhook_target_error_shows_its_url_without_credentials(echo: Echo) -> None:
    clients = WebhookClients()
    try:
        for url in (f"http://me:{PASSWORD}@127.0.0.1:{echo.port}/flags?api_key={TOKEN}",
                    f"http://me:{PASSWORD}@127.0.0.1:{closed_port()}/flags?api_key={TOKEN}"):
            target = WebhookTarget(None, clients, "shop", "r", WebhookSpec(url=url, timeout="2s"), "f")  # type: ignore[arg-type]
            with pytest.raises(TargetError) as failed:
                await target.apply(10)
            message = failed.value.message
            assert "webhook PUT http://me:[redacted]@127.0.0.1:" in message and "api_key=[redacted]" in message
            assert PASSWORD not in message and TOKEN not in message, message
            assert target.describe().endswith("/flags?api_key=[redacted]")
    finally:
        await clients.aclose()


async def test_a_prometheus_error_shows_its_address_without_credentials() -> None:
    port = closed_port()
    provider = PrometheusMetricProvider(PrometheusProvider(address=f"http://me:{PASSWORD}@127.0.0.1:{port}",
                                                           timeout="2s"))
    try:
        measured = await provider.measure("vector(1)")
    finally:
        await provider.aclose()
    assert f"Prometheus at http://me:[redacted]@127.0.0.1:{port} is unreachable" in measured.detail, measured.detail
    assert PASSWORD not in measured.detail and PASSWORD not in repr(provider)
