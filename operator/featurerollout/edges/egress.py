"""Where the operator may connect: an operator-wide deny list of destination networks.

Every URL a user gives the operator (a Prometheus address, a webhook gate or target, a
notification receiver) is reached through a client of this module. It resolves the host name
itself, checks EVERY address the name resolves to against the policy, and then connects to the
checked address: the connection cannot go anywhere the check did not see, so a name that resolves
to a public address at the check and to 169.254.169.254 at the connect (DNS rebinding) gains
nothing. TLS still verifies the URL's host name (SNI and the certificate's name are the URL's, not
the address's), and the Host header is the URL's.

Denied by default: link-local networks (169.254.0.0/16, fe80::/10) and the cloud metadata
addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200). `featurerollout run --deny-loopback`
(the chart sets it) denies loopback too (127.0.0.0/8, ::1, and the unspecified 0.0.0.0/8 and ::,
which reach the host itself); `--deny-network CIDR` adds networks. A refusal names its rule:

    refused: 169.254.169.254 is in 169.254.169.254/32 (cloud metadata; the operator's egress policy)

The clients ignore HTTP(S)_PROXY: a proxy would make the connection, and the check, elsewhere.

`refusal()` is the pure check; `install()` sets the process's policy (`featurerollout run` does,
once); `async_transport()` (httpx) and `guard_session()` (requests) enforce it.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpcore
import httpx
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Rule:
    """One denied network and why: `name` says what it is, `source` what put it in the policy."""

    network: Network
    name: str
    source: str = "the operator's egress policy"

    def words(self) -> str:
        return f"{self.network} ({self.name}; {self.source})"


METADATA = ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")
LINK_LOCAL = ("169.254.0.0/16", "fe80::/10")
LOOPBACK = ("127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128")


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _rules(cidrs: Iterable[str], name: str, source: str = "the operator's egress policy") -> list[Rule]:
    return [Rule(ipaddress.ip_network(cidr), name, source) for cidr in cidrs]


@dataclass(frozen=True)
class EgressPolicy:
    """The networks the operator never connects to, most specific first (the first match is named)."""

    rules: tuple[Rule, ...] = field(default_factory=tuple)

    @classmethod
    def default(cls, *, deny_loopback: bool = False, deny: Sequence[str] = ()) -> EgressPolicy:
        """The built-in rules (metadata, link-local), loopback with `deny_loopback`
        (--deny-loopback), and each of `deny` (--deny-network CIDR; ValueError if not a network)."""
        rules = _rules(METADATA, "cloud metadata") + _rules(LINK_LOCAL, "link-local")
        if deny_loopback:
            rules += _rules(LOOPBACK, "loopback or this host", "--deny-loopback")
        for cidr in deny:
            rules += _rules([cidr.strip()], "denied network", f"--deny-network {cidr.strip()}")
        return cls(tuple(rules))

    def rule_for(self, address: str | Address) -> tuple[Address, Rule] | None:
        """Pure: the first rule that denies `address` (an IP address), with the address as checked
        (an IPv4-mapped IPv6 address, ::ffff:a.b.c.d, and a NAT64 one, 64:ff9b::a.b.c.d, are checked as
        their IPv4 one); None if none does."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:  # 64:ff9b::a.b.c.d reaches a.b.c.d
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        for rule in self.rules:
            if ip.version == rule.network.version and ip in rule.network:
                return ip, rule
        return None

    def refusal(self, address: str | Address) -> str | None:
        """Pure: why the operator must not connect to `address`, naming the rule; None if it may."""
        found = self.rule_for(address)
        return None if found is None else f"refused: {found[0]} is in {found[1].words()}"


_policy = EgressPolicy.default()


def install(policy: EgressPolicy) -> None:
    """Make `policy` the process's (featurerollout run, once at start)."""
    global _policy
    _policy = policy


def current() -> EgressPolicy:
    """The process's policy: what `install` set, else the default (loopback allowed)."""
    return _policy


class Refused(Exception):
    """A connection the policy refused before it was made; the message names the rule."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RefusedConnect(httpcore.ConnectError):
    """Refused, as httpcore raises a connection failure (httpx makes it an httpx.ConnectError
    whose cause is this)."""


def refusal_in(error: BaseException) -> str | None:
    """The refusal's message if `error` is, or was caused by, a policy refusal; else None."""
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, Refused | RefusedConnect):
            return str(found)
        found = found.__cause__ or found.__context__
    return None


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check(policy: EgressPolicy, host: str, addresses: Sequence[str]) -> list[str]:
    """The addresses to connect to, in order, if none of them is denied; else raise Refused
    naming the first denied one (a name that resolves to one denied address is refused whole)."""
    for address in addresses:
        found = policy.rule_for(address.split("%", 1)[0])
        if found is None:
            continue
        ip, rule = found
        if _literal(host) is not None:
            raise Refused(f"refused: {ip} is in {rule.words()}")
        raise Refused(f"refused: {host} resolves to {ip}, which is in {rule.words()}")
    return list(addresses)


def _unique(addresses: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(addresses))


# --- httpx (webhook gates and targets, notifications) ---------------------------------------------


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking before it connects to the checked address."""

    def __init__(self, policy: EgressPolicy | None) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        literal = _literal(host)
        if literal is not None:
            return [str(literal)]
        try:
            with anyio.fail_after(timeout):
                found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout}s") from None
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from None
        return _unique(str(info[4][0]) for info in found)

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        try:
            checked = check(self._policy or current(), host, addresses)
        except Refused as refused:
            raise RefusedConnect(refused.message) from None
        last: Exception | None = None
        for address in checked:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedConnect("refused: the operator connects to no Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def async_transport(
    *, verify: ssl.SSLContext | bool = True, limits: httpx.Limits | None = None, policy: EgressPolicy | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport that connects only where the policy (`policy`, else the process's at
    connect time) allows. Give it to `httpx.AsyncClient(transport=...)`: the client then also
    ignores HTTP(S)_PROXY."""
    limits = limits or httpx.Limits()
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=False)
    # httpx takes no network backend of its own: the pool it built is replaced by the same pool
    # with ours (tests/edges/test_egress.py fails should an httpx upgrade bypass it).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_CheckedBackend(policy),
    )
    return transport


# --- requests (Prometheus, through prometheus-api-client) ------------------------------------------


def _checked_conn(connection: HTTPConnection, policy: EgressPolicy | None) -> socket.socket:
    """urllib3's `_new_conn`, resolving and checking first, then connecting to the checked address."""
    host = connection._dns_host
    literal = _literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            found = socket.getaddrinfo(host, connection.port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise NameResolutionError(connection.host, connection, error) from error
        addresses = _unique(str(info[4][0]) for info in found)
    checked = check(policy or current(), host, addresses)
    last: BaseException | None = None
    for address in checked:
        patched = _Pinned(connection, address)
        try:
            return patched.connect()
        except Exception as error:  # urllib3's own errors: try the next address, then raise the last
            last = error
    assert last is not None
    raise last


@dataclass
class _Pinned:
    connection: HTTPConnection
    address: str

    def connect(self) -> socket.socket:
        c = self.connection
        saved = c._dns_host
        c._dns_host = self.address
        try:
            # urllib3's own connect, with its errors (timeouts, refusals) as it words them.
            sock: socket.socket = HTTPConnection._new_conn(c)
            return sock
        finally:
            c._dns_host = saved


class _CheckedHTTPConnection(HTTPConnection):
    egress_policy: EgressPolicy | None = None

    def _new_conn(self) -> socket.socket:
        return _checked_conn(self, self.egress_policy)


class _CheckedHTTPSConnection(HTTPSConnection):
    egress_policy: EgressPolicy | None = None

    def _new_conn(self) -> socket.socket:
        return _checked_conn(self, self.egress_policy)


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class CheckedAdapter(HTTPAdapter):
    """A requests adapter whose connections go only where the process's policy allows."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise Refused("refused: the operator connects through no proxy")


def guard_session(session: requests.Session) -> None:
    """Replace every adapter of `session` by a CheckedAdapter with the same retries, and ignore
    HTTP(S)_PROXY (call it after whatever mounts adapters, e.g. PrometheusConnect)."""
    session.trust_env = False
    session.proxies = {}
    for prefix, adapter in list(session.adapters.items()):
        retries = adapter.max_retries if isinstance(adapter, HTTPAdapter) else 0
        session.mount(prefix, CheckedAdapter(max_retries=retries))
