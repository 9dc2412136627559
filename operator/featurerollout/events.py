"""Kubernetes Events on a FeatureRollout (what `kubectl describe` and `kubectl get events` show)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from datetime import datetime
from typing import Any

from featurerollout import API_VERSION, KIND
from featurerollout.kube import Kube, api_message

log = logging.getLogger(__name__)

COMPONENT = "featurerollout"
INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()


def event_body(
    metadata: dict[str, Any], type_: str, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """A core/v1 Event about the FeatureRollout that `metadata` describes."""
    name = str(metadata["name"])
    stamp = now.isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{secrets.token_hex(8)}", "namespace": metadata.get("namespace", "default")},
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
                     now: datetime) -> None:
    """Post one Event. A failure to post is logged, never fatal: the status already says the same."""
    body = event_body(metadata, type_, reason, message, now)
    try:
        await kube.call(kube.core.create_namespaced_event, body["metadata"]["namespace"], body)
    except Exception as error:
        log.warning("could not post the %s event %s: %s", type_, reason, api_message(error))
