"""The webhook gate's edge (gates_webhook.ask) against real HTTP receivers on loopback: what opens
the gate, what keeps it closed, and the words the status gets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from featurerollout.api import FeatureRolloutSpec, FeatureRolloutStatus
from featurerollout.core.gates import GateCheck
from featurerollout.edges.gate_webhook import ask
from featurerollout.edges.targets.webhook import WebhookClients
from tests.process.gates.receiver import GateReceiver


def spec_for(url: str, timeout: str = "2s") -> FeatureRolloutSpec:
    return FeatureRolloutSpec.model_validate({
        "flag": "new-checkout", "target": {"configMap": {"name": "flags"}},
        "stages": [{"weight": 25, "duration": "1m"}, {"weight": 100}],
        "gates": [{"name": "smoke", "before": "Success", "webhook": {"url": url, "timeout": timeout}}],
    })


def asked(spec: FeatureRolloutSpec, status: FeatureRolloutStatus | None = None) -> GateCheck:
    async def main() -> GateCheck:
        clients = WebhookClients()
        try:
            gate = (spec.gates or [])[0]
            # No secretRef: the Kubernetes client is never used.
            return await ask(None, clients, spec, status or FeatureRolloutStatus(), rollout="shop",  # type: ignore[arg-type]
                             namespace="default", gate=gate)
        finally:
            await clients.aclose()
    return asyncio.run(main())


@pytest.fixture
def receiver() -> Iterator[GateReceiver]:
    running = GateReceiver().start()
    try:
        yield running
    finally:
        running.stop()


def test_a_2xx_opens_and_the_body_is_the_contract(receiver: GateReceiver) -> None:
    receiver.code = 204
    status = FeatureRolloutStatus.model_validate({"phase": "Waiting", "currentStage": 1, "currentWeight": 100,
                                                  "startedAt": "2026-01-01T00:00:00Z"})
    check = asked(spec_for(receiver.url), status)
    assert check.opened and check.name == "smoke" and "answered 204" in check.message
    body, headers = receiver.seen[0]
    assert body == {"rollout": "shop", "namespace": "default", "flag": "new-checkout", "stage": 2, "weight": 100,
                    "gate": "smoke"}
    assert "authorization" not in headers


@pytest.mark.parametrize("code", [302, 400, 403, 500, 503])
def test_anything_else_keeps_it_closed_and_says_what_it_answered(receiver: GateReceiver, code: int) -> None:
    receiver.code = code
    check = asked(spec_for(receiver.url))
    assert not check.opened
    assert f"POST {receiver.url} answered {code}" in check.message


def test_a_receiver_that_does_not_answer_in_time_keeps_it_closed() -> None:
    stop = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            stop.wait(10)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        began = time.monotonic()
        check = asked(spec_for(f"http://127.0.0.1:{server.server_address[1]}/", timeout="500ms"))
        assert time.monotonic() - began < 5
        assert not check.opened and "no answer within 500ms" in check.message
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_nobody_listening_keeps_it_closed() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check = asked(spec_for(f"http://127.0.0.1:{port}/"))
    assert not check.opened and "could not connect" in check.message
