"""The webhook target: an external flag service (LaunchDarkly, Unleash, a home-grown one) over HTTP.

The contract: `PUT {url}` with `Content-Type: application/json` and the body
`{"flag": F, "weight": W, "namespace": NS, "rollout": NAME}`; with `secretRef`, the header
`Authorization: Bearer <the Secret key's value>`. Any 2xx answer means applied; anything else, a
timeout or a connection error means not applied, and the reconciler records that (no promotion,
Degraded, a Warning Event) and tries again later.

Within one apply, connection errors, timeouts and 5xx answers are retried a bounded number of
times with jittered exponential backoff; a 4xx is the service's considered answer and is not.
TLS is always verified, against the system's CAs or the CA bundle in `caSecretRef`. At most
MAX_RESPONSE_BYTES of an answer are read, and only its first 200 bytes reach a message, with the
token redacted should the service echo it.

The service has no read contract, so this target cannot read back what the service holds:
`reads_back` is False, and `current_weight()` is the last weight the service acknowledged to this
operator process (None before the first acknowledgement since the operator started).
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import httpx

from featurerollout.api import SecretKeyRef, parse_duration
from featurerollout.api import WebhookTarget as WebhookSpec
from featurerollout.core.redact import scrub_url, shown_url
from featurerollout.edges import egress
from featurerollout.edges.http_bodies import read_at_most
from featurerollout.edges.kube import Kube, SecretKeyUnreadable, read_secret_key
from featurerollout.edges.targets.base import Holding, Owner, TargetError

MAX_ATTEMPTS = 3
BACKOFF_BASE = 0.25  # seconds before the 2nd attempt; doubled for each later one, jittered
MAX_RESPONSE_BYTES = 64 * 1024
SHOWN_BODY_BYTES = 200
MAX_CA_CLIENTS = 32  # distinct CA bundles kept with a client of their own (least recently used go)

UNREACHABLE = "WebhookUnreachable"  # connection error or timeout
FAILED = "WebhookFailed"  # 5xx, or another non-2xx that is not a 4xx
REJECTED = "WebhookRejected"  # 4xx: the service refused (a wrong token: 401)
SECRET_NOT_FOUND = "SecretNotFound"
INVALID_SECRET = "InvalidSecret"
REASONS = frozenset({UNREACHABLE, FAILED, REJECTED, SECRET_NOT_FOUND, INVALID_SECRET})

RolloutKey = tuple[str, str]


@dataclass
class WebhookClients:
    """The operator's HTTP clients for webhook targets, shared by every rollout.

    One pooled `httpx.AsyncClient` verifies against the system's CAs; a rollout with
    `caSecretRef` gets the client of its CA bundle (one per distinct bundle, since TLS trust is a
    client-wide setting in httpx). Created lazily, inside the operator's event loop; closed by
    `aclose()` when the operator stops. Also keeps the last weight each rollout's service
    acknowledged, which is all a webhook target can tell about what the service holds."""

    limits: httpx.Limits = field(default_factory=lambda: httpx.Limits(max_connections=64,
                                                                       max_keepalive_connections=16))
    acknowledged: dict[RolloutKey, float] = field(default_factory=dict)
    _default: httpx.AsyncClient | None = field(default=None, init=False)
    _by_ca: OrderedDict[str, httpx.AsyncClient] = field(default_factory=OrderedDict, init=False)

    def _new(self, verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
        # No redirects: a PUT that is redirected elsewhere was not applied where it was meant.
        # Connections only where the egress policy allows (edges/egress.py).
        return httpx.AsyncClient(transport=egress.async_transport(verify=verify, limits=self.limits),
                                 follow_redirects=False)

    def client(self, ca_bundle: str | None = None) -> httpx.AsyncClient:
        """The pooled client for the system's CAs, or for this CA bundle (PEM)."""
        if ca_bundle is None:
            if self._default is None:
                self._default = self._new(True)
            return self._default
        found = self._by_ca.get(ca_bundle)
        if found is not None:
            self._by_ca.move_to_end(ca_bundle)
            return found
        try:
            context = ssl.create_default_context(cadata=ca_bundle)
        except (ssl.SSLError, ValueError) as error:
            raise ValueError(f"not a usable PEM CA bundle ({error})") from None
        created = self._new(context)
        self._by_ca[ca_bundle] = created
        if len(self._by_ca) > MAX_CA_CLIENTS:
            _, evicted = self._by_ca.popitem(last=False)
            asyncio.get_running_loop().create_task(evicted.aclose())
        return created

    async def aclose(self) -> None:
        clients = [c for c in (self._default, *self._by_ca.values()) if c is not None]
        self._default = None
        self._by_ca.clear()
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)


def wire_weight(weight: float) -> int | float:
    """25.0 -> 25 on the wire; a fractional weight stays a number with its fraction (0.5)."""
    return int(weight) if float(weight).is_integer() else weight


def shown_body(raw: bytes, token: str | None) -> str:
    """The first 200 bytes of an answer, on one line, with the token redacted if it is echoed."""
    text = raw[:SHOWN_BODY_BYTES].decode("utf-8", errors="replace")
    if token:
        # Redact in the whole read part first, so a token cut by the 200-byte limit is caught too.
        text = raw.decode("utf-8", errors="replace").replace(token, "[redacted]")[:SHOWN_BODY_BYTES]
        for cut in range(len(token) - 1, 3, -1):  # a token's head at the very end of the snippet
            if text.endswith(token[:cut]):
                text = text[: -cut] + "[redacted]"
                break
    return " ".join(text.split())


async def read_limited(response: httpx.Response) -> bytes:
    """At most MAX_RESPONSE_BYTES of the body: a service that answers with gigabytes costs nothing."""
    return await read_at_most(response, MAX_RESPONSE_BYTES)


def _backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential, with jitter so that many
    rollouts failing together do not retry in step."""
    return float(BACKOFF_BASE * 2**attempt * random.uniform(0.5, 1.5))


class WebhookTarget:
    """An external flag service behind one URL."""

    reads_back = False

    def __init__(
        self, kube: Kube, clients: WebhookClients, namespace: str, rollout: str, spec: WebhookSpec, flag: str
    ) -> None:
        self.kube = kube
        self.clients = clients
        self.namespace = namespace
        self.rollout = rollout
        self.spec = spec
        self.flag = flag

    def describe(self) -> str:
        return f"webhook PUT {shown_url(self.spec.url)}"

    async def _secret_value(self, ref: SecretKeyRef, field_name: str) -> str:
        try:
            return await read_secret_key(self.kube, self.namespace, ref.name, ref.key,
                                         f"spec.target.webhook.{field_name}")
        except SecretKeyUnreadable as error:
            if error.missing:
                fix = "; create it or fix the name" if error.message.endswith("does not exist") else ""
                raise TargetError(SECRET_NOT_FOUND, error.message + fix) from None
            reason = INVALID_SECRET if error.not_text or error.not_usable else "TargetError"
            raise TargetError(reason, error.message) from None

    async def _credentials(self) -> tuple[str | None, str | None]:
        token = ca_bundle = None
        if self.spec.secret_ref is not None:
            # A token pasted with `echo` ends with a newline; a header value must not.
            token = (await self._secret_value(self.spec.secret_ref, "secretRef")).strip()
            if not token:
                raise TargetError(INVALID_SECRET, f"Secret {self.namespace}/{self.spec.secret_ref.name} key "
                                  f"{self.spec.secret_ref.key} (spec.target.webhook.secretRef) is empty")
        if self.spec.ca_secret_ref is not None:
            ca_bundle = await self._secret_value(self.spec.ca_secret_ref, "caSecretRef")
        return token, ca_bundle

    def _client(self, ca_bundle: str | None) -> httpx.AsyncClient:
        try:
            return self.clients.client(ca_bundle)
        except ValueError as error:
            ref = self.spec.ca_secret_ref
            where = f"Secret {self.namespace}/{ref.name} key {ref.key}" if ref else "the CA bundle"
            raise TargetError(INVALID_SECRET, f"{where} (spec.target.webhook.caSecretRef): {error}") from None

    async def apply(self, weight: float) -> bool:
        token, ca_bundle = await self._credentials()
        client = self._client(ca_bundle)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body: dict[str, Any] = {
            "flag": self.flag, "weight": wire_weight(weight), "namespace": self.namespace, "rollout": self.rollout,
        }
        timeout = parse_duration(self.spec.timeout).total_seconds()
        problem = ""
        reason = UNREACHABLE
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                await asyncio.sleep(_backoff(attempt - 1))
            try:
                async with client.stream("PUT", self.spec.url, json=body, headers=headers,
                                         timeout=timeout) as response:
                    raw = await read_limited(response)
            except httpx.TimeoutException:
                reason, problem = UNREACHABLE, f"no answer within {self.spec.timeout}"
                continue
            except httpx.TransportError as error:
                refused = egress.refusal_in(error)
                if refused is not None:  # the policy's answer will not change on a retry
                    raise TargetError(UNREACHABLE, f"{self.describe()} not sent: {refused}; not applied") from None
                # httpx's message names the host and the cause, never the request's headers.
                problem = scrub_url(str(error) or type(error).__name__, self.spec.url)
                reason = UNREACHABLE
                problem = f"could not connect: {problem}"
                continue
            code = response.status_code
            if 200 <= code < 300:
                self.clients.acknowledged[(self.namespace, self.rollout)] = weight
                return True
            words = f"answered {code} {response.reason_phrase}".rstrip()
            snippet = scrub_url(shown_body(raw, token), self.spec.url)
            problem = words + (f": {snippet}" if snippet else "")
            if 400 <= code < 500:
                advice = "; check the token in spec.target.webhook.secretRef" if code in (401, 403) else ""
                raise TargetError(REJECTED, f"{self.describe()} {problem}{advice}; not applied")
            reason = FAILED
        tries = f"{MAX_ATTEMPTS} attempts"
        raise TargetError(reason, f"{self.describe()}: {problem} ({tries}); not applied, will try again")

    def claim(self, owner: Owner, replacing: Owner | None = None) -> None:
        """A flag service holds no marker of ours: ownership is not enforced for a webhook."""

    def expect(self, read: float | None) -> None:
        """A flag service cannot be read back, so there is nothing to compare a write with."""

    async def holding(self) -> Holding:
        return Holding(await self.current_weight(), None)

    async def current_weight(self) -> float | None:
        """The last weight the service acknowledged to this operator process (it cannot be asked)."""
        return self.clients.acknowledged.get((self.namespace, self.rollout))
