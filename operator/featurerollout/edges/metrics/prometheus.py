"""The Prometheus metric provider: PromQL in, a number, NoData or Error out.

It is built on prometheus-api-client's `PrometheusConnect`, which is synchronous (requests). Each
query runs in a worker thread of a bounded pool shared by the whole operator and is bounded twice:
requests' own timeout (connect and read) ends the thread's wait, and `asyncio.wait_for` (the timeout
plus a small grace) ends the caller's, so one slow server holds one worker for about `timeout` and
never blocks the event loop or the other rollouts' evaluations. Prometheus gets the timeout as well
(the query API's `timeout` parameter), so that it stops evaluating a query nobody waits for.

What counts as what (see measurement.py):
  * a scalar, or a vector of exactly one series      -> the number (+Inf and -Inf included)
  * an empty vector, or NaN                         -> NoData
  * several series, a range vector, a string,
    invalid PromQL (Prometheus's message kept),
    an HTTP error, an unreachable or timed-out server,
    an answer larger than the cap (10 MiB by default) -> Error

Answers are read through http_bodies.CappedSession: streamed, and dropped past the cap, so that one
huge answer costs at most the cap in memory.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from featurerollout.api import PrometheusProvider, parse_duration
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.core.redact import scrub_url, shown_url
from featurerollout.edges import egress, telemetry
from featurerollout.edges.http_bodies import MAX_ANSWER_BYTES, AnswerTooLarge, CappedSession

# How much longer than the query timeout the caller waits for the worker thread before giving up
# on it: requests' timeout normally fires first and yields a clearer message.
TIMEOUT_GRACE_SECONDS = 0.5
# Workers shared by all providers: one slow query holds one worker for at most about its timeout.
QUERY_WORKERS = 32

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def query_executor() -> ThreadPoolExecutor:
    """The bounded thread pool that runs every provider's queries (created on first use)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=QUERY_WORKERS, thread_name_prefix="prometheus-query")
        return _executor


# --- credentials -------------------------------------------------------------------------------


class InvalidCredentials(ValueError):
    """A Secret whose keys do not make one consistent set of credentials."""


@dataclass(frozen=True)
class PrometheusCredentials:
    """What `spec.analysis.prometheus.auth.secretName` resolved to. All None: no credentials."""

    token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_bundle: str | None = None  # PEM text of the CA(s) that sign Prometheus's certificate

    def __repr__(self) -> str:  # never print secrets in logs or tracebacks
        shown = ", ".join(
            f"{field}={'***' if getattr(self, field) else None}"
            for field in ("token", "username", "password", "ca_bundle")
        )
        return f"PrometheusCredentials({shown})"


SECRET_KEYS: tuple[str, ...] = ("token", "username", "password", "ca.crt")


def credentials_from_secret(data: dict[str, str]) -> PrometheusCredentials:
    """Read credentials from a Secret's data, already base64-decoded.

    Keys: `token` (bearer), or `username` and `password` (basic), and optionally `ca.crt`.
    Raises InvalidCredentials when both kinds are given, when one half of basic auth is missing, or
    when the Secret holds none of these keys.
    """
    # A token pasted with `echo` ends with a newline; a header value must not.
    token = (data.get("token") or "").strip() or None
    username = data.get("username") or None
    password = data.get("password") or None
    ca_bundle = data.get("ca.crt") or None
    if token is None and username is None and password is None and ca_bundle is None:
        present = ", ".join(sorted(data)) or "no keys"
        raise InvalidCredentials(
            f"the Secret holds none of the keys token, username, password or ca.crt (it has: {present})"
        )
    if token is not None and (username is not None or password is not None):
        raise InvalidCredentials(
            "the Secret holds both a token and a username/password: keep `token` for bearer auth "
            "or `username` and `password` for basic auth, not both"
        )
    if (username is None) != (password is None):
        missing, given = ("password", "username") if password is None else ("username", "password")
        raise InvalidCredentials(f"the Secret holds a {given} but no {missing}: basic auth needs both")
    if ca_bundle is not None and "-----BEGIN CERTIFICATE-----" not in ca_bundle:
        raise InvalidCredentials("the Secret's ca.crt is not a PEM certificate (no BEGIN CERTIFICATE line)")
    return PrometheusCredentials(token=token, username=username, password=password, ca_bundle=ca_bundle)


# --- classifying answers -----------------------------------------------------------------------


def classify_result(result: Any) -> Measurement:
    """Turn the `data.result` of an instant query into a Measurement.

    prometheus-api-client hands back `data.result` without `resultType`, so the type is read from
    its shape: `[time, "v"]` is a scalar (or a string), a list of `{metric, value}` is a vector,
    a list of `{metric, values}` is a matrix.
    """
    if isinstance(result, list) and len(result) == 2 and isinstance(result[0], int | float):
        text = result[1]
        try:
            return Measurement.of(float(text))
        except (TypeError, ValueError):
            return Measurement.error(f"the query returned the string {text!r}; it must yield one number")
    if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
        return Measurement.error(f"Prometheus answered with an unexpected result: {str(result)[:200]}")
    if not result:
        return Measurement.no_data("the query returned no series")
    if any("values" in item for item in result):
        return Measurement.error(
            "the query returned a range vector; it must yield one number: "
            "wrap the range in a function and aggregate it, e.g. sum(rate(x[1m]))"
        )
    if len(result) > 1:
        return Measurement.error(
            f"the query returned {len(result)} series; it must yield one number: "
            "aggregate it, e.g. sum(...)"
        )
    try:
        return Measurement.of(float(result[0]["value"][1]))
    except (KeyError, IndexError, TypeError, ValueError):
        return Measurement.error(f"Prometheus answered with an unexpected sample: {str(result[0])[:200]}")


def split_grouped(result: Any, label: str, values: tuple[str, ...]) -> dict[str, Measurement] | None:
    """Pure: a grouped instant vector's series by the value of `label`, as the Measurement each value's
    own (ungrouped) query gives: its series' number, or NoData as classify_result says it for an
    empty vector. None for anything but an instant vector with one series per value at most."""
    if isinstance(result, Measurement) or not isinstance(result, list):
        return None
    found: dict[str, Measurement] = {}
    for item in result:
        if not isinstance(item, dict) or "value" not in item:
            return None
        value = (item.get("metric") or {}).get(label)
        if not isinstance(value, str) or value in found:
            return None
        try:
            found[value] = Measurement.of(float(item["value"][1]))
        except (IndexError, TypeError, ValueError):
            return None
    empty = classify_result([])
    return {value: found.get(value, empty) for value in values}


def evaluation_time(at: datetime) -> str:
    """An instant as the query API's `time` parameter: Unix seconds to the millisecond, which is
    Prometheus's own resolution (a look and its replay send the same text)."""
    return f"{at.timestamp():.3f}"


_STATUS_RE = re.compile(r"^HTTP Status Code (\d+) \((b(?:'.*'|\".*\"))\)$", re.DOTALL)


def _api_error(error: PrometheusApiClientException, address: str, timeout: str) -> Measurement:
    """An HTTP error status, with Prometheus's own `error` text kept verbatim."""
    # prometheus-api-client raises with "HTTP Status Code 400 (b'...body...')": recover the body.
    match = _STATUS_RE.match(str(error))
    if not match:
        return Measurement.error(f"Prometheus at {address} failed: {error}")
    status = int(match.group(1))
    try:
        raw = ast.literal_eval(match.group(2))
        body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except (ValueError, SyntaxError):
        body = match.group(2)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        text, kind = answer["error"], answer.get("errorType")
        if kind == "bad_data":
            return Measurement.error(f"Prometheus rejected the query: {text}")
        if kind in ("timeout", "canceled"):
            return Measurement.error(f"query timed out after {timeout}: Prometheus says: {text}")
        return Measurement.error(f"Prometheus failed to run the query ({kind}, HTTP {status}): {text}")
    if status in (401, 403):
        return Measurement.error(
            f"Prometheus at {address} refused the credentials (HTTP {status}): "
            "check the Secret named in spec.analysis.prometheus.auth"
        )
    return Measurement.error(f"Prometheus at {address} answered HTTP {status}: {body.strip()[:200]}")


_ERRNO_RE = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def _unreachable(error: requests.RequestException, address: str) -> Measurement:
    """A connection that failed: keep the OS's words, not urllib3's nesting of them."""
    text = str(error)
    found = _ERRNO_RE.search(text)
    reason = found.group(0).strip() if found else text
    return Measurement.error(f"Prometheus at {address} is unreachable: {reason}")


# --- the provider ------------------------------------------------------------------------------


class PrometheusMetricProvider:
    """A MetricProvider for one Prometheus server, as one rollout's `spec.analysis.prometheus` names it."""

    def __init__(
        self,
        spec: PrometheusProvider,
        credentials: PrometheusCredentials | None = None,
        *,
        executor: Executor | None = None,
        at: datetime | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.address = spec.address.rstrip("/")
        self.shown = shown_url(self.address)  # what messages and logs say: no user:password@, no token=
        # The instant every query is evaluated at (Prometheus's `time`): a look's own instant, so that
        # `featurerollout simulate` can ask the very same question later. None: Prometheus's now.
        self.at = at
        self.timeout_text = spec.timeout
        self.timeout = parse_duration(spec.timeout).total_seconds()
        self._executor = executor
        credentials = credentials or PrometheusCredentials()

        headers = dict(spec.headers or {})
        auth: tuple[str, str] | None = None
        if credentials.token is not None:
            headers["Authorization"] = f"Bearer {credentials.token}"
        elif credentials.username is not None and credentials.password is not None:
            auth = (credentials.username, credentials.password)

        self._ca_file: str | None = None
        # Every answer is streamed and read up to the cap (http_bodies.py): a huge one is an Error.
        session = CappedSession(max_answer_bytes)
        if spec.insecure_skip_verify:
            session.verify = False
        elif credentials.ca_bundle is not None:
            # requests wants a path; the bundle lives in the Secret.
            handle, self._ca_file = tempfile.mkstemp(prefix="prometheus-ca-", suffix=".crt")
            with os.fdopen(handle, "w") as file:
                file.write(credentials.ca_bundle)
            session.verify = self._ca_file

        # prometheus-api-client 0.7 annotates these as `dict`, `tuple` and `int` without Optional;
        # it passes them straight to requests, which takes None and float seconds.
        options: dict[str, Any] = {
            "url": self.address,
            "headers": headers or None,
            "auth": auth,
            "session": session,
            "timeout": self.timeout,
            # No retries: the next evaluation is the retry, and a retry with backoff would outlast
            # the timeout that the caller relies on.
            # read=False re-raises a read timeout as itself (requests' ReadTimeout) instead of
            # wrapping it in a MaxRetryError that requests reports as a ConnectionError.
            "retry": Retry(total=0, connect=0, read=False, status=0, redirect=0, raise_on_status=False),
        }
        self._connect = PrometheusConnect(**options)
        # After PrometheusConnect mounted its adapter: connections only where the egress policy
        # allows (edges/egress.py).
        egress.guard_session(session)

    def __repr__(self) -> str:
        return f"PrometheusMetricProvider({self.shown!r}, timeout={self.timeout_text})"

    def _timed_out(self) -> Measurement:
        return Measurement.error(f"query timed out after {self.timeout_text} (Prometheus at {self.shown})")

    def _query(self, query: str, at: datetime | None = None) -> Any:
        # The server-side timeout, in float seconds (PromQL durations take no fractions).
        params = {"timeout": f"{self.timeout:g}"}
        if at is not None:
            params["time"] = evaluation_time(at)
        options: dict[str, Any] = {"params": params, "timeout": self.timeout}
        return self._connect.custom_query(query, **options)

    def _run(self, query: str, at: datetime | None = None) -> Measurement:
        """Blocking: one query, classified. Runs in a worker thread."""
        result = self._fetch(query, at)
        return result if isinstance(result, Measurement) else classify_result(result)

    def _fetch(self, query: str, at: datetime | None = None) -> Any:
        """Blocking: one query's `data.result`, or the Error measurement it came to, whose words
        show the address without its credentials (core/redact.py)."""
        result = self._ask(query, at)
        if isinstance(result, Measurement) and result.detail:
            return dataclasses.replace(result, detail=scrub_url(result.detail, self.address))
        return result

    def _ask(self, query: str, at: datetime | None = None) -> Any:
        try:
            return self._query(query, at or self.at)
        except AnswerTooLarge as error:
            return Measurement.error(
                f"Prometheus at {self.address} sent an {error} (the operator reads no more of one answer, "
                "--max-response-bytes): ask for less, e.g. aggregate with sum(...)"
            )
        except PrometheusApiClientException as error:
            return _api_error(error, self.address, self.timeout_text)
        except egress.Refused as refused:
            return Measurement.error(f"Prometheus at {self.address} not asked: {refused}")
        except requests.exceptions.ConnectTimeout as error:
            return _unreachable(error, self.address)
        except requests.Timeout:
            return self._timed_out()
        except requests.exceptions.SSLError as error:
            return Measurement.error(f"TLS to Prometheus at {self.address} failed: {error}")
        except requests.ConnectionError as error:
            if "Read timed out" in str(error):  # a read timeout that urllib3 wrapped after all
                return self._timed_out()
            return _unreachable(error, self.address)
        except requests.RequestException as error:
            return Measurement.error(f"querying Prometheus at {self.address} failed: {error}")
        except (ValueError, KeyError, TypeError) as error:  # a 200 that is not the Prometheus API
            return Measurement.error(
                f"{self.address} did not answer as the Prometheus HTTP API does: "
                f"{type(error).__name__}: {error}"
            )

    async def measure(self, query: str, at: datetime | None = None) -> Measurement:
        """Run one instant query in a worker thread, evaluated at `at` (else the provider's instant,
        else Prometheus's now); a query that outlasts the timeout is an Error."""
        measured: Measurement = await self._in_worker(self._run, query, at)
        return measured

    async def query_at(self, query: str, at: datetime | None) -> Any:
        """One instant query evaluated at the time `at` (the server's now if None): its `data.result`
        as Prometheus gave it (a range selector's raw samples, for an exact count), or the Error
        Measurement it came to."""
        return await self._in_worker(self._fetch, query, at)

    async def _in_worker(self, blocking: Callable[[str, datetime | None], Any], query: str, at: datetime | None) -> Any:
        """One unbatched query, counted, run in a worker thread; past the timeout, an Error."""
        telemetry.prometheus_queries.labels("false").inc()
        loop = asyncio.get_running_loop()
        executor = self._executor or query_executor()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(executor, blocking, query, at), self.timeout + TIMEOUT_GRACE_SECONDS
            )
        except TimeoutError:
            return self._timed_out()

    async def measure_grouped(
        self, query: str, label: str, values: tuple[str, ...], at: datetime | None = None
    ) -> dict[str, Measurement] | None:
        """Run one query grouped by `label` (metrics/grouping.py built it); each of `values` gets the
        Measurement its own query would have given: the number of its one series, NoData without
        one. None when the query failed or answered in any other shape: the caller then asks each
        value's own query, so that the error is told in that query's words."""
        telemetry.prometheus_queries.labels("true").inc()
        loop = asyncio.get_running_loop()
        executor = self._executor or query_executor()
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(executor, self._fetch, query, at), self.timeout + TIMEOUT_GRACE_SECONDS
            )
        except TimeoutError:
            return None
        return split_grouped(result, label, values)

    async def is_online(self) -> bool:
        """Whether Prometheus answers a trivial query (`vector(1)`) with the configured credentials."""
        measurement = await self.measure("vector(1)")
        return measurement.kind is MeasurementKind.VALUE and measurement.value == 1

    async def aclose(self) -> None:
        """Close the HTTP session and remove the CA bundle's temporary file."""
        self.close()

    def close(self) -> None:
        """Synchronous aclose, for code outside the event loop."""
        self._connect.close()
        if self._ca_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._ca_file)
            self._ca_file = None
