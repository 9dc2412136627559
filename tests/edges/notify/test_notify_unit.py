"""Notifications without a cluster: which notifications a decision calls for (the real engine),
each receiver's format, and the queue against real HTTP servers on loopback, one of which
never answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from tests.core.builders import Rollout, bad, make_spec, ok, req

from featurerollout import api
from featurerollout.api import NotificationEvent, Receiver, SecretKeyRef
from featurerollout.core.engine import Decision, EmitEvent
from featurerollout.edges.notify import Notification, Notifier, derive
from featurerollout.edges.notify.dispatcher import SecretProblem, scrub
from featurerollout.edges.notify.slack import SlackFormat
from featurerollout.edges.notify.teams import TeamsFormat
from featurerollout.edges.notify.webhook import WebhookFormat

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def notified(decision: Decision) -> list[Notification]:
    return derive(namespace="shop", rollout="checkout", flag="new-checkout", decision=decision, now=NOW)


# --- derive: from the engine's own decisions ------------------------------------------------------


def test_a_rollout_life_gives_started_stage_advanced_rolled_back_with_metric_value_and_budget() -> None:
    spec = make_spec(((10, "10s"), (25, "1h"), (100, None)),
                     metrics=[{"name": "error-rate", "query": "q", "max": 0.01, "failureLimit": 0}])
    rollout = Rollout(spec)
    assert [n.event for n in notified(rollout.tick())] == [NotificationEvent.STARTED]
    advanced = notified(rollout.tick(10, ok()))
    assert [n.event for n in advanced] == [NotificationEvent.STAGE_ADVANCED]
    assert advanced[0].weight == 25 and advanced[0].stage == "2/3"
    assert notified(rollout.tick(10, ok())) == []  # an evaluation that passes tells nobody
    (rolled,) = notified(rollout.tick(10, bad(0.4)))
    assert rolled.event == NotificationEvent.ROLLED_BACK and rolled.weight == 0 and rolled.phase == "RolledBack"
    assert (rolled.metric, rolled.value, rolled.budget, rolled.reason) == ("error-rate", 0.4, "<= 0.01",
                                                                           "BudgetExceeded")
    assert "error-rate" in rolled.message and "0.4" in rolled.message


def test_abort_promote_and_success() -> None:
    rollout = Rollout(make_spec(((10, "1h"), (50, "1h"), (100, "1h"))))
    rollout.tick()
    assert [n.event for n in notified(rollout.tick(1, request=req("promote")))] == [NotificationEvent.STAGE_ADVANCED]
    assert [n.event for n in notified(rollout.tick(1, request=req("promote", "p2")))] == [
        NotificationEvent.STAGE_ADVANCED]
    # promote at the last stage completes it: Succeeded says it, not a second StageAdvanced
    assert [n.event for n in notified(rollout.tick(1, request=req("promote", "p3")))] == [NotificationEvent.SUCCEEDED]
    again = Rollout(make_spec(((10, "1h"), (100, None))))
    again.tick()
    (aborted,) = notified(again.tick(1, request=req("abort")))
    assert aborted.event == NotificationEvent.ABORTED and aborted.reason == "Aborted" and aborted.metric is None


def test_waiting_for_approval_is_passed_on_from_the_gates_event() -> None:
    status = api.FeatureRolloutStatus(phase=api.Phase.PAUSED, current_weight=25, stage="2/4")
    decision = Decision(status, (EmitEvent("Normal", "WaitingForApproval", "waiting for approval before stage 3"),
                                 EmitEvent("Normal", "WaitingForGate", "...")), None)
    (n,) = notified(decision)
    assert n.event == NotificationEvent.WAITING_FOR_APPROVAL and n.weight == 25 and n.stage == "2/4"


# --- formats --------------------------------------------------------------------------------------


def rolled_back() -> Notification:
    return Notification(event=NotificationEvent.ROLLED_BACK, namespace="shop", rollout="checkout",
                        flag="new-checkout", phase="RolledBack", weight=0, stage="2/4",
                        message="error-rate 0.4 exceeds its budget <= 0.05 at 25% (stage 2/4); rolled back to 0%",
                        at=NOW, reason="BudgetExceeded", metric="error-rate", value=0.4, budget="<= 0.05")


def test_slack_body_has_text_and_blocks_with_the_metric_value_and_budget() -> None:
    body = SlackFormat().body(rolled_back())
    assert "shop/checkout rolled back" in body["text"] and "error-rate 0.4, budget <= 0.05" in body["text"]
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in body["blocks"][2]["fields"]}
    assert fields["*Metric*"] == "error-rate" and fields["*Value*"] == "0.4" and fields["*Budget*"] == "<= 0.05"
    assert fields["*Weight*"] == "0%"


def test_teams_body_is_an_adaptive_card_with_the_facts() -> None:
    body = TeamsFormat().body(rolled_back())
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    facts = {f["title"]: f["value"] for f in attachment["content"]["body"][2]["facts"]}
    assert facts["Metric"] == "error-rate" and facts["Value"] == "0.4" and facts["Budget"] == "<= 0.05"


def test_webhook_body_is_flat_json() -> None:
    body = WebhookFormat().body(rolled_back())
    assert body == {"rollout": "checkout", "namespace": "shop", "flag": "new-checkout", "event": "RolledBack",
                    "phase": "RolledBack", "weight": 0, "stage": "2/4", "message": rolled_back().message,
                    "time": "2026-01-01T12:00:00Z", "reason": "BudgetExceeded", "metric": "error-rate",
                    "value": 0.4, "budget": "<= 0.05"}
    started = WebhookFormat().body(Notification(
        event=NotificationEvent.STARTED, namespace="shop", rollout="checkout", flag="f", phase="Progressing",
        weight=0.5, stage="1/4", message="started", at=NOW))
    assert "metric" not in started and started["weight"] == 0.5


def test_scrub_removes_the_url_its_path_and_the_token() -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    text = f"ConnectError: could not reach {url} (hooks.slack.com/services/T000/B000/XXXXSECRET) tok3n-value"
    cleaned = scrub(text, url, "tok3n-value")
    assert "XXXXSECRET" not in cleaned and "tok3n-value" not in cleaned and "[redacted]" in cleaned


# --- the queue, against real HTTP servers on loopback ---------------------------------------------


@dataclass
class Receivers:
    """One asyncio HTTP server on 127.0.0.1 with three paths: /ok records bodies, /hang reads the
    request and never answers, /fail answers 500 (counted)."""

    port: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    hanging: int = 0
    failed: int = 0
    hung: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        path = lines[0].split()[1]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if path.startswith("/hang"):
            self.hanging += 1
            self.hung.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 60)  # answers nothing for 60 s (or until teardown)
            writer.close()
            return
        if path.startswith("/fail"):
            self.failed += 1
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
        else:
            self.bodies.append(json.loads(body))
            self.headers.append(headers)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    state = Receivers()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        state.stop.set()
        server.close()
        await server.wait_closed()


def secrets_of(values: dict[str, str]) -> Any:
    """The Secret reader the operator uses reads the API; here the same contract over a dict."""
    async def read(namespace: str, ref: SecretKeyRef) -> str:
        if ref.name not in values:
            raise SecretProblem(f"Secret {namespace}/{ref.name} key {ref.key}: the Secret does not exist")
        return values[ref.name]
    return read


def receiver(type_: str, name: str, events: list[str] | None = None, token: str | None = None) -> Receiver:
    return Receiver.model_validate({"type": type_, "secretRef": {"name": name, "key": "url"},
                                    **({"events": events} if events else {}),
                                    **({"tokenSecretRef": {"name": token, "key": "t"}} if token else {})})


def count(kind: str, result: str) -> float:
    return REGISTRY.get_sample_value("featurerollout_notifications_total",
                                     {"receiver_kind": kind, "result": result}) or 0.0


async def test_a_hanging_receiver_never_delays_submit_nor_the_other_receivers(
    receivers: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    secret_path = "/hang/T000/B000/SUPERSECRET"
    notifier = Notifier(secrets_of({"slack": receivers.url("/ok/slack"), "hook": receivers.url("/ok/hook"),
                                    "hang": receivers.url(secret_path), "token": "s3cr3t-token"}),
                        timeout=0.5, attempts=2)
    notifier.start()
    failed_before = count("webhook", "failed")
    try:
        targets = [receiver("Slack", "slack"), receiver("Webhook", "hook", token="token"),
                   receiver("Webhook", "hang")]
        # Fill the hanging receiver first, so that every later submit meets it hanging.
        notifier.submit([rolled_back()], [targets[2]])
        await asyncio.wait_for(receivers.hung.wait(), 5)
        started = time.perf_counter()
        for _ in range(20):
            notifier.submit([rolled_back()], targets)
        took = time.perf_counter() - started
        # 60 deliveries queued in far less than the 100 ms budget: submit does no I/O at all.
        assert took < 0.1, f"submit took {took * 1000:.1f} ms"
        deadline = time.monotonic() + 20
        while len(receivers.bodies) < 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(receivers.bodies) == 40, "the fast receivers got every notification despite the hang"
        assert {b.get("metric") for b in receivers.bodies if "metric" in b} == {"error-rate"}
        slack = [b for b in receivers.bodies if "blocks" in b]
        assert len(slack) == 20
        assert any(h.get("authorization") == "Bearer s3cr3t-token" for h in receivers.headers)
        while count("webhook", "failed") < failed_before + 21 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert count("webhook", "failed") == failed_before + 21  # each hung delivery gave up after 2 x 0.5 s
    finally:
        await notifier.aclose(drain=0)
    logged = caplog.text
    assert "no answer within 0.5s" in logged and "spec.notifications[2]" in logged
    assert "SUPERSECRET" not in logged and "s3cr3t-token" not in logged and "T000" not in logged


async def test_a_full_queue_drops_the_oldest_and_counts_it(receivers: Receivers) -> None:
    notifier = Notifier(secrets_of({"hook": receivers.url("/ok")}), queue_size=3)  # not started: nothing drains
    dropped_before = count("webhook", "dropped")
    notes = [Notification(event=NotificationEvent.STARTED, namespace="ns", rollout=f"r{i}", flag="f",
                          phase="Progressing", weight=10, stage="1/2", message="m", at=NOW) for i in range(5)]
    for note in notes:
        notifier.submit([note], [receiver("Webhook", "hook")])
    assert count("webhook", "dropped") == dropped_before + 2
    kept = [notifier.queue.get_nowait().notification.rollout for _ in range(3)]
    assert kept == ["r2", "r3", "r4"]  # the newest are kept


async def test_event_filter_failures_and_missing_secret(receivers: Receivers, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(secrets_of({"only-rollbacks": receivers.url("/ok"), "broken": receivers.url("/fail")}),
                        timeout=2, attempts=3)
    notifier.start()
    slack_failed, webhook_failed = count("slack", "failed"), count("webhook", "failed")
    try:
        started = Notification(event=NotificationEvent.STARTED, namespace="ns", rollout="r", flag="f",
                               phase="Progressing", weight=10, stage="1/2", message="m", at=NOW)
        queued = notifier.submit([started, rolled_back()], [
            receiver("Webhook", "only-rollbacks", events=["RolledBack"]),
            receiver("Slack", "broken", events=["Started"]),
            receiver("Slack", "missing", events=["Started"]),
        ])
        assert queued == 3  # Started to the two that take it; RolledBack to the first
        await asyncio.wait_for(notifier.queue.join(), 15)
    finally:
        await notifier.aclose()
    assert [b["event"] for b in receivers.bodies] == ["RolledBack"]
    assert receivers.failed == 3  # a 500 is retried: 3 attempts
    assert count("slack", "failed") == slack_failed + 2 and count("webhook", "failed") == webhook_failed
    assert "Secret ns/missing key url: the Secret does not exist" in caplog.text


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="featurerollout")
