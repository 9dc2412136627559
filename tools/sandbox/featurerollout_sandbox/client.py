"""Drive a sandbox running in another process: fault injection and the request log over HTTP.

    control = SandboxControl("http://127.0.0.1:PORT")      # or SandboxControl.from_kubeconfig(path)
    control.add_fault(verbs=["update", "patch"], resource="configmaps", every=3, status=409)
    control.count(verb="patch", resource="configmaps")
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

Json = dict[str, Any]


class SandboxControl:
    """The /sandbox/ control API of a running sandbox (standard library only)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_kubeconfig(cls, path: Path | str) -> SandboxControl:
        """The sandbox the kubeconfig's current context points at."""
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        context_name = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        return cls(cluster["server"])

    def _call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/sandbox/{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"sandbox control {method} {path} failed: {exc.code} {detail}") from exc

    def healthy(self) -> bool:
        """Whether the sandbox answers."""
        try:
            return bool(self._call("GET", "healthz").get("ok"))
        except (OSError, RuntimeError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the sandbox answers, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"sandbox at {self.base_url} did not answer within {timeout} s")
            time.sleep(0.05)

    def add_fault(self, **rule: Any) -> Json:
        """Add a fault rule (see featurerollout_sandbox.faults.Fault); returns it with its `id`."""
        result: Json = self._call("POST", "faults", rule)
        return result

    def faults(self) -> list[Json]:
        """Active rules with their `matched`/`fired` counters."""
        result: list[Json] = self._call("GET", "faults")["faults"]
        return result

    def remove_fault(self, fault_id: str) -> None:
        """Remove one rule."""
        self._call("DELETE", f"faults/{fault_id}")

    def clear_faults(self) -> None:
        """Remove every rule."""
        self._call("DELETE", "faults")

    def requests(self, **match: Any) -> list[Json]:
        """Recorded requests whose fields equal the given ones (verb, resource, status, user_agent...)."""
        result: list[Json] = self._call("GET", "requests", query=match)["requests"]
        return result

    def count(self, **match: Any) -> int:
        """How many recorded requests match."""
        return len(self.requests(**match))

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self._call("DELETE", "requests")

    def configure(self, watch_history_limit: int | None = None, bookmark_interval: float | None = None) -> Json:
        """Change the watch history bound (per resource) or the idle BOOKMARK interval."""
        body: Json = {}
        if watch_history_limit is not None:
            body["watchHistoryLimit"] = watch_history_limit
        if bookmark_interval is not None:
            body["bookmarkInterval"] = bookmark_interval
        result: Json = self._call("PUT", "config", body)
        return result
