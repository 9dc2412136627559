"""Manual control that a GitOps tool will not revert.

`featurerollout promote|pause|resume|abort|retry` never touch the spec, which Argo CD or Flux
owns and would put back (the complaint in fluxcd/flagger#1814). The CLI writes a request into
the annotation `featurerollout.io/request` as `{"id": ..., "action": ...}`; the operator carries
it out once, records its id in `status.lastRequest`, and keeps the outcome (a pause, a stage)
in the status. A `kubectl apply` of the original manifest leaves an annotation it never set
alone, and the status is not the GitOps tool's to write, so neither undoes the request.

Reading a request is here (pure); filing one, which takes the clock and a random id, is the CLI's
(commands/manual.py).
"""

from __future__ import annotations

import json

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
