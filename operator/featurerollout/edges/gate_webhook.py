"""The edge that asks a webhook gate (spec.gates[].webhook) whether the rollout may go on.

`POST url` with `Content-Type: application/json` and the body
`{"rollout", "namespace", "flag", "stage", "weight", "gate"}` (`stage`: the current stage, 1-based,
0 before the first exposure; `weight`: what the flag exposes now); with `secretRef`, the header
`Authorization: Bearer <the Secret key's value>`. Any 2xx opens the gate. Anything else, a timeout
or a connection error keeps it closed; the engine asks again at the analysis interval. One request
per ask (no retries within it: the next ask is the retry). The answer reaches the status as at most
200 bytes, with the token redacted should the receiver echo it; the token itself never does.
"""

from __future__ import annotations

import httpx

from featurerollout.api import FeatureRolloutSpec, FeatureRolloutStatus, Gate, parse_duration
from featurerollout.core.gates import GateCheck
from featurerollout.core.redact import scrub_url, shown_url
from featurerollout.edges import egress
from featurerollout.edges.kube import Kube, SecretKeyUnreadable, read_secret_key
from featurerollout.edges.targets.webhook import WebhookClients, read_limited, shown_body, wire_weight


class GateSecretError(Exception):
    """The gate's Secret cannot be read; the message names it (never its value)."""


async def _token(kube: Kube, namespace: str, gate: Gate, index: int) -> str | None:
    webhook = gate.webhook
    if webhook is None or webhook.secret_ref is None:
        return None
    ref = webhook.secret_ref
    where = f"Secret {namespace}/{ref.name} key {ref.key} (spec.gates[{index}].webhook.secretRef)"
    try:
        token = (await read_secret_key(kube, namespace, ref.name, ref.key,
                                       f"spec.gates[{index}].webhook.secretRef")).strip()
    except SecretKeyUnreadable as error:
        raise GateSecretError(error.message) from None
    if not token:
        raise GateSecretError(f"{where}: the value is empty")
    return token


def payload(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, *, rollout: str, namespace: str,
            gate: Gate) -> dict[str, object]:
    """The JSON body a gate receives."""
    stage = min(status.current_stage, len(spec.stages) - 1) + 1 if status.started_at is not None else 0
    return {
        "rollout": rollout,
        "namespace": namespace,
        "flag": spec.flag,
        "stage": stage,
        "weight": wire_weight(status.current_weight),
        "gate": gate.name,
    }


async def ask(
    kube: Kube, clients: WebhookClients, spec: FeatureRolloutSpec, status: FeatureRolloutStatus, *,
    rollout: str, namespace: str, gate: Gate,
) -> GateCheck:
    """Ask the gate once; never raises for what the receiver or the network does."""
    webhook = gate.webhook
    assert webhook is not None
    index = next(i for i, g in enumerate(spec.gates or []) if g.name == gate.name)
    where = f"POST {shown_url(webhook.url)}"
    try:
        token = await _token(kube, namespace, gate, index)
    except GateSecretError as error:
        return GateCheck(gate.name, False, f"{where} not sent: {error}")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = payload(spec, status, rollout=rollout, namespace=namespace, gate=gate)
    timeout = parse_duration(webhook.timeout).total_seconds()
    try:
        async with clients.client().stream("POST", webhook.url, json=body, headers=headers,
                                           timeout=timeout) as response:
            raw = await read_limited(response)
    except httpx.TimeoutException:
        return GateCheck(gate.name, False, f"{where}: no answer within {webhook.timeout}")
    except httpx.HTTPError as error:
        refused = egress.refusal_in(error)
        if refused is not None:
            return GateCheck(gate.name, False, f"{where} not sent: {refused}")
        # httpx's message names the host and the cause, never the request's headers.
        problem = scrub_url(str(error) or type(error).__name__, webhook.url)
        return GateCheck(gate.name, False, f"{where}: could not connect: {problem}")
    code = response.status_code
    words = f"{where} answered {code} {response.reason_phrase}".rstrip()
    snippet = scrub_url(shown_body(raw, token), webhook.url)
    message = words + (f": {snippet}" if snippet else "")
    return GateCheck(gate.name, 200 <= code < 300, message)
