"""Kubernetes Events on a FeatureRollout (what `kubectl describe` and `kubectl get events` show)."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
from datetime import datetime
from typing import Any

from featurerollout import API_VERSION, KIND
from featurerollout.edges.kube import CONFLICT, Kube, api_message, status_code

log = logging.getLogger(__name__)

COMPONENT = "featurerollout"
INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()


def event_body(
    metadata: dict[str, Any], type_: str, reason: str, message: str, now: datetime, key: str | None = None
) -> dict[str, Any]:
    """A core/v1 Event about the FeatureRollout that `metadata` describes. `key`: what makes the
    Event unique; the same key gives the same name, so a second post of it is refused
    (AlreadyExists) instead of shown twice. None: a random name."""
    name = str(metadata["name"])
    stamp = now.isoformat().replace("+00:00", "Z")
    suffix = secrets.token_hex(8) if key is None else hashlib.sha256(key.encode()).hexdigest()[:16]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{suffix}", "namespace": metadata.get("namespace", "default")},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": name,
            "namespace": metadata.get("namespace", "default"),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": INSTANCE,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post_event(kube: Kube, metadata: dict[str, Any], type_: str, reason: str, message: str,
                     now: datetime, key: str | None = None) -> None:
    """Post one Event. A failure to post is logged, never fatal: the status already says the same.
    An Event with this `key` already posted (by a process that died before it wrote the status)
    is left as it is."""
    body = event_body(metadata, type_, reason, message, now, key)
    try:
        await kube.call(kube.core.create_namespaced_event, body["metadata"]["namespace"], body)
    except Exception as error:
        if key is not None and status_code(error) == CONFLICT:
            return
        log.warning("could not post the %s event %s: %s", type_, reason, api_message(error))
