"""What the Kubernetes API answered when it refused: the status code and the server's own message.

Apart from kube.py so that the targets' write path (targets/optimistic.py, under the per-process
document writer that kube.py's client holds) can read API errors without importing the client.
"""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

CONFLICT = 409
NOT_FOUND = 404


def status_code(error: BaseException) -> int | None:
    """The HTTP status of an API error, None for anything else."""
    return int(error.status) if isinstance(error, ApiException) and error.status else None


def api_message(error: BaseException) -> str:
    """The API server's own message for an error, falling back to the exception text."""
    if isinstance(error, ApiException) and error.body:
        try:
            body = json.loads(error.body)
            return str(body.get("message") or error.reason)
        except (ValueError, AttributeError):
            return str(error.body)[:500]
    return str(error)
