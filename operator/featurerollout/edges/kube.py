"""The Kubernetes API, as the operator and the CLI use it: one client, called off the event loop.

The official client is synchronous; every call runs in a worker thread of one pool, so that a
slow API call never stalls the operator's scheduler. The pool is sized for many rollouts
waiting on I/O at once, not for CPU.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config

from featurerollout import GROUP, PLURAL, VERSION
from featurerollout.api.group import annotation

# The API's errors (re-exported: most callers take them from here with the client).
from featurerollout.edges.api_errors import CONFLICT as CONFLICT
from featurerollout.edges.api_errors import NOT_FOUND as NOT_FOUND
from featurerollout.edges.api_errors import api_message as api_message
from featurerollout.edges.api_errors import status_code as status_code


def load_config(kubeconfig: str | None = None, context: str | None = None) -> None:
    """Configure the client from a kubeconfig file, the default kubeconfig, or in-cluster."""
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, context=context)
        return
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(context=context)


WORKERS = 32


def _api_client() -> client.ApiClient:
    # One HTTP connection per worker thread: the client's default pool (5 per CPU) would open
    # and throw away a connection for most concurrent calls.
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = WORKERS
    return client.ApiClient(configuration)


@dataclass(eq=False)  # one client is one identity: targets/coalesce.py keeps its document writer by it
class Kube:
    """The API groups the operator touches, plus the pool their calls run in."""

    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(WORKERS, "kube"))
    api: client.ApiClient = field(default_factory=_api_client)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one blocking client call in the pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    async def get_rollout(self, namespace: str, name: str) -> dict[str, Any]:
        """The FeatureRollout as stored now."""
        body: dict[str, Any] = await self.call(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
        return body

    async def patch_rollout_status(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        """Apply a JSON merge patch (mergepatch.diff: explicit nulls remove fields) to the status
        subresource; with a resourceVersion, only if the object is still the one the decision
        was made on (409 Conflict otherwise). The content type is named, not left to the
        client's default, because the nulls only mean "remove" in a merge patch."""
        body_patch: dict[str, Any] = {"status": patch}
        if resource_version:
            body_patch["metadata"] = {"resourceVersion": resource_version}
        body: dict[str, Any] = await self.call(
            self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL, name, body_patch,
            _content_type="application/merge-patch+json",
        )
        return body

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()


class SecretKeyUnreadable(Exception):
    """A Secret key could not be read. The message names the Secret, the key and the field that
    refers to them, never a value. `missing`: the Secret or the key does not exist; `not_text`:
    the value is not UTF-8; `not_usable`: the Secret lacks the consent label (USABLE_LABEL);
    otherwise the API refused or failed."""

    def __init__(self, message: str, *, missing: bool = False, not_text: bool = False,
                 not_usable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing
        self.not_text = not_text
        self.not_usable = not_usable


# Secrets by consent: the operator reads a Secret that a rollout, a metric template or a notification
# names only if it carries this label set to "true" (docs/security.md#secrets-by-consent), so that a
# FeatureRollout cannot send any Secret of its namespace (a ServiceAccount token's, say) to a URL
# its author picks.
USABLE_LABEL = annotation("usable")
USABLE_VALUE = "true"


class SecretNotUsable(Exception):
    """The Secret exists but is not labelled for the operator; the message names it and the label."""

    def __init__(self, namespace: str, name: str, field_path: str | None = None) -> None:
        where = f"Secret {namespace}/{name}" + (f" ({field_path})" if field_path else "")
        self.message = (f"{where} is not labelled {USABLE_LABEL}={USABLE_VALUE}: the operator reads only Secrets "
                        f"labelled for it (kubectl -n {namespace} label secret {name} {USABLE_LABEL}={USABLE_VALUE})")
        super().__init__(self.message)


def usable(secret: Any) -> bool:
    """Whether a Secret (the client's V1Secret) carries the consent label."""
    labels = (getattr(secret, "metadata", None) and secret.metadata.labels) or {}
    return bool(labels.get(USABLE_LABEL) == USABLE_VALUE)


async def read_usable_secret(kube: Kube, namespace: str, name: str, field_path: str | None = None) -> Any:
    """The Secret, if it is labelled for the operator: SecretNotUsable otherwise (its data is
    dropped unread); the API's errors as the client raises them."""
    secret = await kube.call(kube.core.read_namespaced_secret, name, namespace)
    if not usable(secret):
        secret.data = secret.string_data = None
        raise SecretNotUsable(namespace, name, field_path)
    return secret


async def read_secret_key(kube: Kube, namespace: str, name: str, key: str, field_path: str | None = None) -> str:
    """The text of one Secret key (as stored: callers strip a token's trailing newline). One place
    for what every credential reader (webhook target, gates, notifications) says when it fails,
    an unlabelled Secret (SecretNotUsable) included."""
    where = f"Secret {namespace}/{name} key {key}" + (f" ({field_path})" if field_path else "")
    try:
        secret = await read_usable_secret(kube, namespace, name, field_path)
    except SecretNotUsable as refused:
        raise SecretKeyUnreadable(refused.message, not_usable=True) from None
    except Exception as error:
        if status_code(error) == NOT_FOUND:
            raise SecretKeyUnreadable(f"{where}: the Secret does not exist", missing=True) from None
        raise SecretKeyUnreadable(f"{where}: {api_message(error)}") from None
    data = secret.data or {}
    if key not in data:
        present = ", ".join(sorted(data)) or "no keys"
        raise SecretKeyUnreadable(f"{where}: the Secret has no such key (it has: {present})", missing=True)
    try:
        return base64.b64decode(data[key]).decode()
    except (ValueError, UnicodeDecodeError):
        raise SecretKeyUnreadable(f"{where}: the value is not UTF-8 text", not_text=True) from None
