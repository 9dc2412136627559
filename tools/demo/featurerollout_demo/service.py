"""A demo HTTP service behind a feature flag, with its own load generator.

    python -m featurerollout_demo.service --weight new-checkout=25 --on-error-rate 0.3 --rps 50

`GET /serve?flag=F&user=U` asks the official flagd evaluator (`openfeature-flagd-core`) for the
flag's boolean value with U as the targeting key, so the variant is the one real flagd would
serve; it answers 500 with the variant's error probability, after the variant's latency, and
counts the request in `http_requests_total{flag, variant="on"|"off", code}` and its latency in the
histogram `http_request_duration_seconds{flag, variant}`, exposed on `/metrics`. Like an app
instrumented with a client library, it creates each series at its first increment: until a variant
has failed once, it has no `code="500"` series.
`POST /control` with `{"new-checkout": {"on_error_rate": 0.3, "on_latency": 0.2}}` changes error
rates and latencies live; `GET /control` shows them and the current weights.

The flagd document comes from a source (flags.py): flags at fixed weights (`--weight`), a flagd
document file (`--flagd-file`), or the ConfigMap the operator writes, read through the Kubernetes
API every 0.5 s (`--kubeconfig --namespace --configmap --key`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from featurerollout_demo.flags import (
    CONTROLS as CONTROLS,
)
from featurerollout_demo.flags import (
    DEFAULT_FLAG as DEFAULT_FLAG,
)
from featurerollout_demo.flags import (
    DEFAULT_KEY as DEFAULT_KEY,
)
from featurerollout_demo.flags import (
    EMPTY as EMPTY,
)
from featurerollout_demo.flags import (
    OFF as OFF,
)
from featurerollout_demo.flags import (
    ON as ON,
)
from featurerollout_demo.flags import (
    VARIANTS as VARIANTS,
)
from featurerollout_demo.flags import (
    ConfigMapFlags as ConfigMapFlags,
)
from featurerollout_demo.flags import (
    FixedWeights as FixedWeights,
)
from featurerollout_demo.flags import (
    FlagdEvaluator as FlagdEvaluator,
)
from featurerollout_demo.flags import (
    FlagdFile as FlagdFile,
)
from featurerollout_demo.flags import (
    FlagDocument as FlagDocument,
)
from featurerollout_demo.flags import (
    FlagSource as FlagSource,
)
from featurerollout_demo.flags import (
    weight_in as weight_in,
)

log = logging.getLogger("featurerollout_demo")


# --- the service --------------------------------------------------------------------------------


DEFAULT_LATENCY = 0.03  # seconds: the typical latency of either variant, "45 ms" at the 95th percentile
# Buckets around a 100 ms budget, so that histogram_quantile(0.95, ...) reads p95 to within a bucket.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)


@dataclass
class Latencies:
    """The typical latency of each variant, in seconds: a request takes between half and one and a
    half times it (uniformly), so the 95th percentile is about 1.45 times it."""

    on: float = DEFAULT_LATENCY
    off: float = DEFAULT_LATENCY

    def of(self, variant: str) -> float:
        return self.on if variant == "on" else self.off


@dataclass
class ErrorRates:
    """The probability that a request fails, per variant."""

    on: float = 0.0
    off: float = 0.0

    def of(self, variant: str) -> float:
        return self.on if variant == "on" else self.off


class DemoService:
    """The demo app: `/serve`, `/metrics`, `/control`, and a load generator against itself."""

    def __init__(
        self,
        source: FlagSource,
        *,
        flags: Sequence[str] = (DEFAULT_FLAG,),
        on_error_rate: float = 0.0,
        off_error_rate: float = 0.0,
        error_rates: Mapping[str, ErrorRates] | None = None,
        rps: float = 0.0,
        seed: int | None = None,
        latencies: Mapping[str, Latencies] | None = None,
        on_latency: float = DEFAULT_LATENCY,
        off_latency: float = DEFAULT_LATENCY,
    ) -> None:
        self.source = source
        self.evaluator = FlagdEvaluator()
        self.flags = list(flags)
        self.default_rates = ErrorRates(on_error_rate, off_error_rate)
        self.error_rates: dict[str, ErrorRates] = {
            flag: ErrorRates(self.default_rates.on, self.default_rates.off) for flag in self.flags
        }
        self.error_rates.update({flag: ErrorRates(r.on, r.off) for flag, r in (error_rates or {}).items()})
        self.default_latencies = Latencies(on_latency, off_latency)
        self.latencies: dict[str, Latencies] = {flag: Latencies(on_latency, off_latency) for flag in self.flags}
        self.latencies.update({flag: Latencies(lat.on, lat.off) for flag, lat in (latencies or {}).items()})
        self.rps = rps
        self.random = random.Random(seed)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "Requests served, by flag, variant and status code.",
            ["flag", "variant", "code"], registry=self.registry,
        )
        self.durations = Histogram(
            "http_request_duration_seconds", "Request latency, by flag and variant.",
            ["flag", "variant"], registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        # No series is touched here: as client libraries do, a labelled series comes into being at its
        # first increment, so that a variant that never failed has no code="500" series at all and the
        # queries must count that as zero errors (docs/metric-templates.md).
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def weight(self, flag: str) -> float:
        """The percentage of users the current document exposes `flag` to (for display)."""
        return weight_in(self.source.document(), flag)

    def rates(self, flag: str) -> ErrorRates:
        """The error rates of a flag (the defaults for a flag not seen before)."""
        if flag not in self.error_rates:
            self.error_rates[flag] = ErrorRates(self.default_rates.on, self.default_rates.off)
        return self.error_rates[flag]

    def latency_of(self, flag: str) -> Latencies:
        """The latencies of a flag (the defaults for a flag not seen before)."""
        if flag not in self.latencies:
            self.latencies[flag] = Latencies(self.default_latencies.on, self.default_latencies.off)
        return self.latencies[flag]

    def serve(self, flag: str, user: str) -> tuple[str, int, float]:
        """Serve one request: its variant, status code and latency (seconds), counted and observed.

        The latency is drawn, not measured, so that a loaded machine does not make the healthy
        variant look slow; the HTTP handler then really takes that long."""
        self.evaluator.load(self.source.document())
        variant = self.evaluator.variant(flag, user)
        code = 500 if self.random.random() < self.rates(flag).of(variant) else 200
        latency = self.latency_of(flag).of(variant) * self.random.uniform(0.5, 1.5)
        self.requests.labels(flag=flag, variant=variant, code=str(code)).inc()
        self.durations.labels(flag=flag, variant=variant).observe(latency)
        return variant, code, latency

    # --- HTTP ---

    async def _serve(self, request: web.Request) -> web.Response:
        flag = request.query.get("flag", self.flags[0] if self.flags else DEFAULT_FLAG)
        user = request.query.get("user") or f"anonymous-{self.random.randrange(1 << 30)}"
        variant, code, latency = self.serve(flag, user)
        await asyncio.sleep(latency)
        return web.json_response({"flag": flag, "user": user, "variant": variant, "code": code}, status=code)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def _show_control(self, request: web.Request) -> web.Response:
        return web.json_response(self._state())

    def _state(self) -> dict[str, Any]:
        return {
            flag: {"on_error_rate": r.on, "off_error_rate": r.off, "on_latency": self.latency_of(flag).on,
                   "off_latency": self.latency_of(flag).off, "weight": self.weight(flag)}
            for flag, r in self.error_rates.items()
        }

    async def _control(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object: {flag: {on_error_rate: 0.3}}")
            for flag, change in body.items():
                if not isinstance(change, dict) or not set(change) <= CONTROLS:
                    raise ValueError(
                        f'{flag}: set on_error_rate, off_error_rate, on_latency or off_latency, e.g. '
                        '{"on_error_rate": 0.3}'
                    )
                rates = self.rates(str(flag))
                for field, value in change.items():
                    if field.endswith("_latency"):
                        seconds = float(value)
                        if not 0 <= seconds <= 10:
                            raise ValueError(f"{flag}.{field}: {value} is not a latency in [0, 10] seconds")
                        setattr(self.latency_of(str(flag)), field.removesuffix("_latency"), seconds)
                        continue
                    rate = float(value)
                    if not 0 <= rate <= 1:
                        raise ValueError(f"{flag}.{field}: {value} is not a probability in [0, 1]")
                    setattr(rates, field.removesuffix("_error_rate"), rate)
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        log.info("error rates now %s", self._state())
        return web.json_response(self._state())

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_get("/serve", self._serve)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/control", self._show_control)
        app.router.add_post("/control", self._control)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    # --- lifecycle ---

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen (port 0: any free port), start the load generator; returns the base URL."""
        self._runner = web.AppRunner(self.app(), shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{host}:{bound[1]}"
        if self.rps > 0 and self.flags:
            self._tasks.append(asyncio.create_task(self._generate_load(), name="demo-load"))
        return self.url

    def add_task(self, task: asyncio.Task[None]) -> None:
        """A background task (e.g. ConfigMapFlags.poll) to cancel on stop."""
        self._tasks.append(task)

    async def stop(self) -> None:
        """Stop the load generator and the server."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _generate_load(self) -> None:
        """`rps` requests per second against /serve, users drawn at random, flags in turn."""
        period = 1.0 / self.rps
        loop = asyncio.get_running_loop()
        in_flight: set[asyncio.Task[None]] = set()
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(flag: str, user: str) -> None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/serve", params={"flag": flag, "user": user}) as r:
                        await r.read()

            next_at = loop.time()
            sent = 0
            while True:
                flag = self.flags[sent % len(self.flags)]
                user = f"user-{self.random.randrange(1_000_000)}"
                if len(in_flight) < 256:  # a stalled server must not pile up tasks without bound
                    task = asyncio.create_task(one(flag, user))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                sent += 1
                next_at += period
                await asyncio.sleep(max(0.0, next_at - loop.time()))


# --- command line -------------------------------------------------------------------------------


def _weight_pair(text: str) -> tuple[str, float]:
    flag, sep, weight = text.partition("=")
    try:
        value = float(weight)
    except ValueError:
        value = -1.0
    if not sep or not flag or not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: write FLAG=PERCENT, e.g. new-checkout=25")
    return flag, value


def _flag_variant_value(text: str, *, highest: float, unit: str, example: str) -> tuple[str, str, float]:
    """`FLAG:VARIANT=VALUE` with VALUE in [0, highest]; anything else is refused with the form to write."""
    target, sep, number = text.partition("=")
    flag, colon, variant = target.rpartition(":")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not sep or not colon or not flag or variant not in VARIANTS or not 0 <= value <= highest:
        raise argparse.ArgumentTypeError(f"{text!r}: write FLAG:on={unit} or FLAG:off={unit}, e.g. {example}")
    return flag, variant, value


def _flag_rate(text: str) -> tuple[str, str, float]:
    return _flag_variant_value(text, highest=1, unit="RATE", example="new-checkout:on=0.3")


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"{text}: a latency is a number of seconds in [0, 10]")
    return value


def _flag_latency(text: str) -> tuple[str, str, float]:
    return _flag_variant_value(text, highest=10, unit="SECONDS", example="new-pricing:on=0.2")


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: an error rate is a probability in [0, 1]")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m featurerollout_demo.service`."""
    p = argparse.ArgumentParser(
        prog="python -m featurerollout_demo.service",
        description="A demo service behind a feature flag: serves /serve, /metrics and /control, and "
        "generates its own load. Requests with the flag on fail at --on-error-rate.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks a free one (default 8080)")
    p.add_argument("--flag", dest="flags", action="append", metavar="FLAG",
                   help=f"a flag to generate load for (repeatable; default {DEFAULT_FLAG})")
    p.add_argument("--on-error-rate", type=_probability, default=0.0, metavar="P",
                   help="probability that a request with the flag on fails (default 0)")
    p.add_argument("--off-error-rate", type=_probability, default=0.0, metavar="P",
                   help="probability that a request with the flag off fails (default 0)")
    p.add_argument("--flag-error-rate", type=_flag_rate, action="append", default=[], metavar="FLAG:VARIANT=P",
                   help="an error rate for one flag's variant, e.g. new-checkout:on=0.3 (repeatable)")
    p.add_argument("--on-latency", type=_seconds, default=DEFAULT_LATENCY, metavar="SECONDS",
                   help=f"typical latency of a request with the flag on (default {DEFAULT_LATENCY})")
    p.add_argument("--off-latency", type=_seconds, default=DEFAULT_LATENCY, metavar="SECONDS",
                   help=f"typical latency of a request with the flag off (default {DEFAULT_LATENCY})")
    p.add_argument("--flag-latency", type=_flag_latency, action="append", default=[], metavar="FLAG:VARIANT=S",
                   help="a typical latency for one flag's variant, e.g. new-pricing:on=0.2 (repeatable)")
    p.add_argument("--rps", type=float, default=20.0, help="requests per second the load generator sends "
                   "to this service (0: none; default 20)")
    p.add_argument("--seed", type=int, default=None, help="seed for users and failures (reproducible runs)")
    source = p.add_argument_group("where the weight comes from (one of)")
    source.add_argument("--weight", type=_weight_pair, action="append", default=[], metavar="FLAG=PERCENT",
                        help="a fixed weight, e.g. new-checkout=25 (repeatable)")
    source.add_argument("--flagd-file", metavar="PATH", help="a flagd flag-definition document, re-read on change")
    source.add_argument("--kubeconfig", metavar="FILE",
                        help="read the flagd document from a ConfigMap through this kubeconfig, every 0.5 s")
    source.add_argument("--namespace", default="default", help="the ConfigMap's namespace (default: default)")
    source.add_argument("--configmap", default="feature-flags", help="the ConfigMap's name (default feature-flags)")
    source.add_argument("--key", default=DEFAULT_KEY, help=f"the ConfigMap key (default {DEFAULT_KEY})")
    return p


def service_from_args(args: argparse.Namespace) -> tuple[DemoService, ConfigMapFlags | None]:
    """Build the service (and the ConfigMap poller, if the weight comes from one) from parsed args."""
    chosen = [bool(args.weight), args.flagd_file is not None, args.kubeconfig is not None]
    if sum(chosen) > 1:
        raise SystemExit("choose one weight source: --weight, --flagd-file or --kubeconfig")
    poller: ConfigMapFlags | None = None
    source: FlagSource
    if args.kubeconfig is not None:
        poller = ConfigMapFlags(args.kubeconfig, args.namespace, args.configmap, args.key)
        source = poller
    elif args.flagd_file is not None:
        source = FlagdFile(args.flagd_file)
    else:
        source = FixedWeights(dict(args.weight))
    flags = args.flags or sorted({flag for flag, _ in args.weight}) or [DEFAULT_FLAG]
    rates: dict[str, ErrorRates] = {}
    for flag, variant, value in args.flag_error_rate:
        entry = rates.setdefault(flag, ErrorRates(args.on_error_rate, args.off_error_rate))
        setattr(entry, variant, value)
    latencies: dict[str, Latencies] = {}
    for flag, variant, value in args.flag_latency:
        latency = latencies.setdefault(flag, Latencies(args.on_latency, args.off_latency))
        setattr(latency, variant, value)
    service = DemoService(
        source, flags=flags, on_error_rate=args.on_error_rate, off_error_rate=args.off_error_rate,
        error_rates=rates, rps=args.rps, seed=args.seed, latencies=latencies, on_latency=args.on_latency,
        off_latency=args.off_latency,
    )
    return service, poller


async def run(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM."""
    service, poller = service_from_args(args)
    url = await service.start(args.host, args.port)
    if poller is not None:
        service.add_task(asyncio.create_task(poller.poll(), name="configmap-poll"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"demo service on {url} (flags: {', '.join(service.flags)}; /serve /metrics /control)", flush=True)
    try:
        await stop.wait()
    finally:
        await service.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m featurerollout_demo.service`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per generated request is noise
    asyncio.run(run(parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
