"""Where the demo service's flags come from, and how a user gets a variant.

The variant is the official flagd evaluator's (`openfeature-flagd-core`), with the user as the
targeting key, so it is the one real flagd would serve. The flagd document comes from a source:
flags at fixed weights (`--weight`, with the entry the operator writes), a flagd document file
(`--flagd-file`), or the ConfigMap read through the Kubernetes API every 0.5 s (what the operator
writes).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import OpenFeatureError

from featurerollout.edges.targets import flagd

log = logging.getLogger("featurerollout_demo")

FlagDocument = Mapping[str, Any]
"""A flagd flag-definition document (`{"flags": {...}}`), parsed."""

VARIANTS: tuple[str, str] = ("on", "off")
CONTROLS = frozenset({"on_error_rate", "off_error_rate", "on_latency", "off_latency"})
ON, OFF = VARIANTS
DEFAULT_FLAG = "new-checkout"
DEFAULT_KEY = "flags.flagd.json"
EMPTY: FlagDocument = {"flags": {}}

# --- the official flagd evaluator ---------------------------------------------------------------


class FlagdEvaluator:
    """Each user's variant, decided by the official flagd evaluator (`openfeature-flagd-core`, the
    library behind the OpenFeature flagd provider's in-process mode), over the whole document.

    The demo does not bucket users itself: whatever real flagd does with the document the
    operator wrote (its `fractional` hashing, integer weights, DISABLED flags, unknown flags) is
    what the demo's users get, so the demo's metrics measure the exposure flagd really gives.
    """

    def __init__(self) -> None:
        self._core = FlagdCore()
        self._loaded: object = None
        self.error: str | None = None

    def load(self, document: FlagDocument) -> None:
        """Evaluate against `document` from now on (nothing to do when it is the one loaded).

        A document flagd refuses keeps the previous flags, as flagd itself does, and is logged."""
        if document is self._loaded:
            return
        self._loaded = document
        try:
            self._core.set_flags(copy.deepcopy(dict(document)))  # it rewrites the dict it is given
            self.error = None
        except Exception as error:  # flagd refuses it: keep serving with the last good flags
            self.error = f"{type(error).__name__}: {error}"
            log.warning("flagd refused the flag document (%s); keeping the previous flags", self.error)

    def variant(self, flag: str, user: str) -> str:
        """`on` or `off`: what an application asking flagd for the flag's boolean value, with the
        user as targeting key and `false` as its default, is given."""
        try:
            details = self._core.resolve_boolean_value(flag, False, EvaluationContext(targeting_key=user))
        except OpenFeatureError:  # unknown flag, wrong type, bad targeting: the SDK returns the default
            return OFF
        return ON if details.value is True else OFF


def weight_in(document: FlagDocument, flag: str) -> float:
    """The percentage a document's entry for `flag` exposes, for display (0 when not ours)."""
    flags = document.get("flags")
    entry = flags.get(flag) if isinstance(flags, Mapping) else None
    return flagd.weight_of(entry) or 0.0


# --- flag sources: where the flagd document comes from ------------------------------------------


class FlagSource(Protocol):
    """The flagd document the service evaluates, now. It returns the same object for as long as
    the document has not changed (the evaluator reloads only on a new one)."""

    def document(self) -> FlagDocument: ...


class FixedWeights:
    """Flags at weights set by hand (`--weight`, or a test), each with the entry the operator
    writes at that weight (featurerollout.edges.targets.flagd.flag_entry); unknown flags are not in it."""

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.weights = dict(weights or {})
        self._built: tuple[tuple[str, float], ...] | None = None
        self._document: FlagDocument = EMPTY

    def document(self) -> FlagDocument:
        key = tuple(sorted(self.weights.items()))
        if key != self._built:
            self._document = {"flags": {flag: flagd.flag_entry(weight) for flag, weight in key}}
            self._built = key
        return self._document


class FlagdFile:
    """A flagd document file, re-read whenever it changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._document: FlagDocument = EMPTY

    def document(self) -> FlagDocument:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                loaded = json.loads(self.path.read_text())
                self._document = loaded if isinstance(loaded, dict) else EMPTY
                self._stamp = stamp
        except (OSError, ValueError) as error:
            log.warning("cannot read %s (%s); keeping the last flags", self.path, error)
        return self._document


class ConfigMapFlags:
    """The flagd document in a ConfigMap key, polled through the Kubernetes API.

    Run `poll()` as a task; until the first read there are no flags. A missing ConfigMap or key
    counts as an empty document; any other error keeps the last document and is logged.
    """

    def __init__(self, kubeconfig: str, namespace: str, name: str, key: str = DEFAULT_KEY) -> None:
        from kubernetes import client, config  # imported here: only this source needs it

        self.namespace, self.name, self.key = namespace, name, key
        self._api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
        self._document: FlagDocument = EMPTY
        self._text: str | None = None
        self.reads = 0
        self.last_error: str | None = None

    def document(self) -> FlagDocument:
        return self._document

    def read(self) -> None:
        """Read the ConfigMap once (blocking)."""
        from kubernetes.client.exceptions import ApiException

        try:
            configmap = self._api.read_namespaced_config_map(self.name, self.namespace, _request_timeout=5)
            text = (configmap.data or {}).get(self.key)
            if text != self._text:  # a new object only for a new document: the evaluator reloads on it
                loaded = json.loads(text) if text else EMPTY
                self._document = loaded if isinstance(loaded, dict) else EMPTY
                self._text = text
            self.last_error = None
        except ApiException as error:
            if error.status == 404:
                self._document, self._text = EMPTY, None
            self.last_error = f"HTTP {error.status}: {error.reason}"
        except Exception as error:  # keep serving with the last document whatever went wrong
            self.last_error = f"{type(error).__name__}: {error}"
        if self.last_error:
            log.warning("reading ConfigMap %s/%s: %s", self.namespace, self.name, self.last_error)
        self.reads += 1

    async def poll(self, every: float = 0.5) -> None:
        """Read the ConfigMap every `every` seconds, forever."""
        while True:
            await asyncio.to_thread(self.read)
            await asyncio.sleep(every)


