"""A tiny Kopf operator that the sandbox tests run as a subprocess (not a test module).

It writes one line per handler run to $KOPF_TEST_LOG, so that the test can check that the
create handler ran exactly once, the timer ran, and the delete handler (finalizer) ran.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

LOG = os.environ["KOPF_TEST_LOG"]
RESOURCE = ("sandbox.featurerollout.io", "v1", "canaries")


def record(line: str) -> None:
    with open(LOG, "a", encoding="utf-8") as stream:
        stream.write(line + "\n")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 10
    settings.watching.client_timeout = 15
    settings.persistence.finalizer = "sandbox.featurerollout.io/test-finalizer"


@kopf.on.create(*RESOURCE)
def created(name: str, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    record(f"create {name}")
    patch.status["phase"] = "Progressing"
    kopf.info(body, reason="Started", message=f"rollout {name} started")


@kopf.timer(*RESOURCE, interval=0.3, idle=None)
def tick(name: str, status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    record(f"timer {name}")
    patch.status["currentStage"] = int(status.get("currentStage", 0)) + 1


@kopf.on.delete(*RESOURCE)
def deleted(name: str, **_: Any) -> None:
    record(f"delete {name}")
