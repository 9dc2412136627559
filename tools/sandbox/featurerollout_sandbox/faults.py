"""Fault injection and the request log, for tests.

Both are thread-safe: the server runs on its own event loop (often in another thread), while a
test adds faults and reads the log from its own thread, or over HTTP from another process
(`/sandbox/faults`, `/sandbox/requests`, see server.py and client.py).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

Json = dict[str, Any]

ACTIONS = ("error", "latency", "cut_watch")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
ERROR_REASONS = {
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
    403: "Forbidden",
    404: "NotFound",
}


@dataclass(frozen=True)
class RequestInfo:
    """What a fault matches on: the request's verb and its target."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


@dataclass
class Fault:
    """One fault rule. Empty matchers match everything.

    - `action="error"`: answer `status` (500/503/429/409/...) with a proper Status body.
    - `action="latency"`: delay the request by `latency` seconds, then serve it.
    - `action="cut_watch"`: a watch stream is cut (connection closed) after `after_events` events.

    Which matching requests fire: every `every`-th one (count-based, deterministic), or with
    `probability` drawn from a `random.Random(seed)` (deterministic with a seed); at most `times`.
    """

    action: str = "error"
    verbs: list[str] = field(default_factory=list)
    resource: str = ""  # plural, e.g. "configmaps"; "" matches every resource
    group: str | None = None  # None: any group
    subresource: str | None = None  # None: any; "": only the main resource; "status"
    namespace: str = ""
    name: str = ""
    status: int = 500
    message: str = ""
    every: int = 1
    probability: float | None = None
    seed: int | None = None
    times: int | None = None
    latency: float = 0.0
    after_events: int = 0
    retry_after: int = 1
    id: str = ""
    matched: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}: use one of {', '.join(ACTIONS)}")
        unknown = [v for v in self.verbs if v not in VERBS]
        if unknown:
            raise ValueError(f"unknown verbs {unknown}: use Kubernetes verbs {', '.join(VERBS)}")
        if self.every < 1:
            raise ValueError("every must be >= 1")
        self._random = random.Random(self.seed)

    def matches(self, info: RequestInfo) -> bool:
        """Whether the rule applies to a request (before counting)."""
        if self.action == "cut_watch" and info.verb != "watch":
            return False
        return (
            (not self.verbs or info.verb in self.verbs)
            and (not self.resource or info.resource == self.resource)
            and (self.group is None or info.group == self.group)
            and (self.subresource is None or info.subresource == self.subresource)
            and (not self.namespace or info.namespace == self.namespace)
            and (not self.name or info.name == self.name)
        )

    def fire(self) -> bool:
        """Count a matching request; whether the fault fires on it."""
        if self.times is not None and self.fired >= self.times:
            return False
        self.matched += 1
        if self.probability is not None:
            hit = self._random.random() < self.probability
        else:
            hit = self.matched % self.every == 0
        if hit:
            self.fired += 1
        return hit

    def to_json(self) -> Json:
        """The rule as the HTTP API shows it."""
        data = asdict(self)
        data.pop("_random", None)
        return data


@dataclass
class Decision:
    """What the faults that fired ask of one request."""

    latency: float = 0.0
    error: Fault | None = None
    cut_after: int | None = None
    fault_ids: list[str] = field(default_factory=list)


class FaultInjector:
    """The active fault rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)

    def add(self, **rule: Any) -> Fault:
        """Add a rule (keyword arguments of `Fault`); returns it, with its id."""
        fault = Fault(**{k: v for k, v in rule.items() if k not in ("id", "matched", "fired")})
        with self._lock:
            fault.id = f"fault-{next(self._ids)}"
            self._faults[fault.id] = fault
        return fault

    def remove(self, fault_id: str) -> bool:
        """Remove one rule; whether it existed."""
        with self._lock:
            return self._faults.pop(fault_id, None) is not None

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Json]:
        """The rules with their counters."""
        with self._lock:
            return [f.to_json() for f in self._faults.values()]

    def decide(self, info: RequestInfo) -> Decision:
        """Count the request against every matching rule and combine those that fire."""
        decision = Decision()
        with self._lock:
            for fault in self._faults.values():
                if not fault.matches(info) or not fault.fire():
                    continue
                decision.fault_ids.append(fault.id)
                if fault.action == "latency":
                    decision.latency += fault.latency
                elif fault.action == "cut_watch":
                    decision.cut_after = fault.after_events
                elif decision.error is None:
                    decision.error = fault
        return decision


@dataclass
class RequestRecord:
    """One request the sandbox served."""

    time: float
    method: str
    verb: str
    path: str
    query: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    user_agent: str
    status: int
    duration: float
    faults: list[str] = field(default_factory=list)


class RequestLog:
    """Every API request, in order (the /sandbox/ control paths are not recorded)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._limit = limit

    def append(self, record: RequestRecord) -> None:
        """Record one request (the oldest records go beyond the limit)."""
        with self._lock:
            self._records.append(record)
            if len(self._records) > self._limit:
                del self._records[: len(self._records) - self._limit]

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()

    def records(self, **match: Any) -> list[Json]:
        """Records whose fields equal the given values (e.g. verb="patch", resource="configmaps")."""
        with self._lock:
            records = list(self._records)
        result = []
        for record in records:
            data = asdict(record)
            if all(data.get(k) == v for k, v in match.items() if v is not None):
                result.append(data)
        return result

    def count(self, **match: Any) -> int:
        """How many records match."""
        return len(self.records(**match))


def now() -> float:
    """Wall-clock time of a record."""
    return time.time()
