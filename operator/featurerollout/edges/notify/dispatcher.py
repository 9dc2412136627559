"""Sending notifications without ever getting in the rollout's way.

`Notifier.submit()` is what a reconcile calls: it only puts deliveries on a bounded queue and
returns (no I/O, no await), so a receiver that is slow, dead or hanging can never delay a
rollback, a promotion or another rollout's reconcile. A few worker tasks take deliveries off the
queue; each reads the receiver's URL (and token) from its Secret, POSTs the JSON body with a hard
timeout per attempt, and retries a connection error, a timeout, a 429 or a 5xx a few times with
jittered backoff (a 4xx is the receiver's answer and is not retried).

When the queue is full the OLDEST waiting delivery is dropped: what comes last (a rollback after
the stage advances that backed the queue up) is what a person needs most. Every delivery ends in
`featurerollout_notifications_total{receiver_kind, result}` as sent, failed or dropped, and
failures are logged naming the receiver by its place in the spec and its Secret, never by the URL
or the token (which are scrubbed from any error text).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from featurerollout.api import Receiver, ReceiverType, SecretKeyRef
from featurerollout.core.redact import scrub as scrub  # the one place that redacts (re-exported)
from featurerollout.edges import egress, telemetry
from featurerollout.edges.kube import Kube, SecretKeyUnreadable, read_secret_key
from featurerollout.edges.notify.base import Format
from featurerollout.edges.notify.notices import Notification
from featurerollout.edges.notify.slack import SlackFormat
from featurerollout.edges.notify.teams import TeamsFormat
from featurerollout.edges.notify.webhook import WebhookFormat

log = logging.getLogger("featurerollout")

QUEUE_SIZE = 1000  # deliveries waiting; a burst of 1,000 rollouts starting fits
WORKERS = 16  # deliveries in flight at once (coroutines): a hanging receiver holds one each, not the others
TIMEOUT = 5.0  # seconds per attempt, connect to answer: a hanging receiver is given up on
MAX_ATTEMPTS = 3
BACKOFF_BASE = 0.5  # seconds before the 2nd attempt, doubled for each later one, jittered

FORMATS: dict[ReceiverType, Format] = {
    ReceiverType.SLACK: SlackFormat(),
    ReceiverType.TEAMS: TeamsFormat(),
    ReceiverType.WEBHOOK: WebhookFormat(),
}

SecretReader = Callable[[str, SecretKeyRef], Awaitable[str]]


class SecretProblem(Exception):
    """A receiver's Secret could not be read; the message names it, never its value."""


@dataclass(frozen=True)
class Delivery:
    """One notification for one receiver (`spec.notifications[index]`)."""

    notification: Notification
    receiver: Receiver
    index: int

    @property
    def kind(self) -> str:
        return FORMATS[self.receiver.type].kind

    def describe(self) -> str:
        ref = self.receiver.secret_ref
        n = self.notification
        return (f"{self.receiver.type} receiver spec.notifications[{self.index}] (Secret {n.namespace}/{ref.name} "
                f"key {ref.key})")


def kube_secrets(kube: Kube) -> SecretReader:
    """Read a Secret key in a namespace through the operator's Kubernetes client."""

    async def read(namespace: str, ref: SecretKeyRef) -> str:
        try:
            return (await read_secret_key(kube, namespace, ref.name, ref.key)).strip()
        except SecretKeyUnreadable as error:
            raise SecretProblem(error.message) from None

    return read


def _backoff(attempt: int) -> float:
    return float(BACKOFF_BASE * 2**attempt * random.uniform(0.5, 1.5))


class Notifier:
    """The queue and its workers. `start()` and `aclose()` follow the operator's life."""

    def __init__(
        self, secrets: SecretReader, *, queue_size: int = QUEUE_SIZE, workers: int = WORKERS,
        timeout: float = TIMEOUT, attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.secrets = secrets
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=queue_size)
        self.workers = workers
        self.timeout = timeout
        self.attempts = attempts
        self.tasks: list[asyncio.Task[None]] = []
        self.client: httpx.AsyncClient | None = None

    def start(self) -> None:
        """Start the workers in the running event loop."""
        # No redirects (a redirect could send the body elsewhere); TLS verified with the system's CAs;
        # connections only where the egress policy allows (edges/egress.py).
        limits = httpx.Limits(max_connections=self.workers * 2)
        self.client = httpx.AsyncClient(follow_redirects=False, transport=egress.async_transport(limits=limits))
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._work(), name=f"featurerollout-notify-{i}") for i in range(self.workers)]

    async def aclose(self, drain: float = 2.0) -> None:
        """Give what is queued `drain` seconds to go out, then stop the workers."""
        if self.tasks:
            try:
                await asyncio.wait_for(self.queue.join(), drain)
            except TimeoutError:
                log.info("stopping with %d notifications not sent", self.queue.qsize())
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.tasks = []
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def submit(self, notifications: Iterable[Notification], receivers: Iterable[Receiver] | None) -> int:
        """Queue each notification for every receiver that wants it; returns how many were queued.
        Never waits: when the queue is full, the oldest delivery waiting is dropped (and counted)."""
        queued = 0
        wanted = list(receivers or ())
        for notification in notifications:
            for index, receiver in enumerate(wanted):
                if not receiver.wants(notification.event):
                    continue
                delivery = Delivery(notification, receiver, index)
                if self.queue.full():
                    dropped = self.queue.get_nowait()
                    self.queue.task_done()
                    telemetry.notifications.labels(dropped.kind, "dropped").inc()
                    log.warning("%s/%s: the notification queue is full (%d): dropped the oldest, %s for the %s",
                                dropped.notification.namespace, dropped.notification.rollout, self.queue.maxsize,
                                dropped.notification.event, dropped.describe())
                self.queue.put_nowait(delivery)
                queued += 1
        telemetry.notification_queue.set(self.queue.qsize())
        return queued

    async def _work(self) -> None:
        while True:
            delivery = await self.queue.get()
            try:
                result = await self.deliver(delivery)
                telemetry.notifications.labels(delivery.kind, result).inc()
            except Exception:  # a bug must not kill the worker
                log.exception("sending a notification failed unexpectedly")
                telemetry.notifications.labels(delivery.kind, "failed").inc()
            finally:
                self.queue.task_done()
                telemetry.notification_queue.set(self.queue.qsize())

    async def deliver(self, delivery: Delivery) -> str:
        """Send one delivery: `sent` or `failed` (logged, without the URL or the token)."""
        n, receiver = delivery.notification, delivery.receiver
        prefix = f"{n.namespace}/{n.rollout}: could not send {n.event} to the {delivery.describe()}"
        url = token = None
        try:
            async with asyncio.timeout(self.timeout):
                url = await self.secrets(n.namespace, receiver.secret_ref)
                if receiver.token_secret_ref is not None:
                    token = await self.secrets(n.namespace, receiver.token_secret_ref)
        except SecretProblem as unreadable:
            log.warning("%s: %s", prefix, unreadable)
            return "failed"
        except TimeoutError:
            log.warning("%s: its Secret could not be read within %gs", prefix, self.timeout)
            return "failed"
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            log.warning("%s: the Secret's value is not an http(s) URL", prefix)
            return "failed"
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = FORMATS[receiver.type].body(n)
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(_backoff(attempt - 1))
            try:
                code = await self._post(url, body, headers)
            except TimeoutError:
                problem = f"no answer within {self.timeout:g}s"
                continue
            except httpx.HTTPError as error:
                refused = egress.refusal_in(error)
                if refused is not None:  # names an address, never the URL; a retry would be refused too
                    log.warning("%s: not sent: %s", prefix, scrub(refused, url, token))
                    return "failed"
                problem = scrub(f"{type(error).__name__}: {error}", url, token)
                continue
            if 200 <= code < 300:
                log.debug("%s/%s: sent %s to the %s", n.namespace, n.rollout, n.event, delivery.describe())
                return "sent"
            problem = f"answered {code}"
            if 400 <= code < 500 and code != 429:
                log.warning("%s: %s; not retried (check the URL in the Secret)", prefix, problem)
                return "failed"
        log.warning("%s: %s (%d attempts)", prefix, problem, self.attempts)
        return "failed"

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> int:
        """POST and return the status code; the answer's body is never read (nothing in it matters)."""
        assert self.client is not None, "Notifier.start() first"
        async with asyncio.timeout(self.timeout):  # the whole attempt: a trickling answer is cut too
            async with self.client.stream("POST", url, json=body, headers=headers) as response:
                return response.status_code
