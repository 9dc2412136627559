"""Manual control that a GitOps tool will not revert.

`featurerollout promote|pause|resume|abort|retry` never touch the spec, which Argo CD or Flux
owns and would put back (the complaint in fluxcd/flagger#1814). The CLI writes a request into
the annotation `featurerollout.io/request` as `{"id": ..., "action": ...}`; the operator carries
it out once, records its id in `status.lastRequest`, and keeps the outcome (a pause, a stage)
in the status. A `kubectl apply` of the original manifest leaves an annotation it never set
alone, and the status is not the GitOps tool's to write, so neither undoes the request.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from featurerollout.api import ControlAction
from featurerollout.api.group import annotation
from featurerollout.core.engine import ControlRequest

REQUEST_ANNOTATION = annotation("request")


class BadRequest(ValueError):
    """The annotation holds something that is not a request."""


def parse_request(annotations: dict[str, str] | None) -> ControlRequest | None:
    """The pending request in the annotations, if any. Raises BadRequest for a malformed one."""
    raw = (annotations or {}).get(REQUEST_ANNOTATION)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return ControlRequest(id=str(data["id"]), action=ControlAction(data["action"]))
    except (ValueError, KeyError, TypeError) as error:
        raise BadRequest(
            f"annotation {REQUEST_ANNOTATION} must be JSON like "
            f'{{"id": "...", "action": "promote|pause|resume|abort|retry|approve"}}: {error}'
        ) from None


def new_request(action: ControlAction, now: datetime | None = None) -> dict[str, str]:
    """A fresh request's annotation value, with an id no earlier request has."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return {"id": f"{moment}-{secrets.token_hex(4)}", "action": action.value}


def request_patch(action: ControlAction, now: datetime | None = None) -> dict[str, Any]:
    """The merge patch that files a request on a FeatureRollout."""
    return {"metadata": {"annotations": {REQUEST_ANNOTATION: json.dumps(new_request(action, now))}}}
