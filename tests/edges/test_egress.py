"""The egress policy (edges/egress.py): the pure check, and both clients that enforce it (httpx for
gates, targets and notifications; requests for Prometheus) against a listener of the test's own
on loopback, which must see no connection when the policy refuses."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest
import requests

from featurerollout.edges import egress
from featurerollout.edges.egress import EgressPolicy

CLUSTER = EgressPolicy.default(deny_loopback=True)
LOCAL = EgressPolicy.default()


@pytest.mark.parametrize(("address", "rule"), [
    ("169.254.169.254", "169.254.169.254/32 (cloud metadata; the operator's egress policy)"),
    ("fd00:ec2::254", "fd00:ec2::254/128 (cloud metadata"),
    ("100.100.100.200", "100.100.100.200/32 (cloud metadata"),
    ("169.254.1.2", "169.254.0.0/16 (link-local; the operator's egress policy)"),
    ("fe80::1", "fe80::/10 (link-local"),
    ("::ffff:169.254.169.254", "169.254.169.254/32 (cloud metadata"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254/32 (cloud metadata"),
])
def test_metadata_and_link_local_are_denied_by_default_naming_the_rule(address: str, rule: str) -> None:
    for policy in (LOCAL, CLUSTER):
        refusal = policy.refusal(address)
        assert refusal is not None and refusal.startswith("refused: ") and rule in refusal, refusal


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::", "::ffff:127.0.0.1"])
def test_loopback_is_denied_only_with_deny_loopback(address: str) -> None:
    assert LOCAL.refusal(address) is None
    refusal = CLUSTER.refusal(address)
    assert refusal is not None and "(loopback or this host; --deny-loopback)" in refusal


@pytest.mark.parametrize("address", ["10.1.2.3", "8.8.8.8", "2001:db8::1", "100.100.100.201", "169.253.255.255"])
def test_other_addresses_are_allowed(address: str) -> None:
    assert CLUSTER.refusal(address) is None


def test_deny_network_adds_a_rule_named_by_its_flag() -> None:
    policy = EgressPolicy.default(deny=["10.0.0.0/8"])
    assert policy.refusal("10.96.0.1") == (
        "refused: 10.96.0.1 is in 10.0.0.0/8 (denied network; --deny-network 10.0.0.0/8)")
    assert policy.refusal("11.0.0.1") is None
    with pytest.raises(ValueError):
        EgressPolicy.default(deny=["not-a-network"])


def test_a_name_with_one_denied_address_is_refused_whole() -> None:
    with pytest.raises(egress.Refused, match=r"gate\.example resolves to 127\.0\.0\.1, which is in 127\.0\.0\.0/8"):
        egress.check(CLUSTER, "gate.example", ["10.0.0.1", "127.0.0.1"])
    assert egress.check(CLUSTER, "gate.example", ["10.0.0.1"]) == ["10.0.0.1"]


class Listener:
    """A TCP listener on loopback that counts the connections it accepts and answers HTTP 200."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    running = Listener()
    try:
        yield running
    finally:
        running.close()


def _resolving_to(address: str) -> object:
    """getaddrinfo that answers every name with `address` (a name the test controls)."""
    real = socket.getaddrinfo

    def fake(host: str | bytes, port: object, *args: object, **kwargs: object) -> object:
        if host in ("gate.test.invalid", b"gate.test.invalid"):  # anyio asks with the IDNA bytes
            return real(address, port, *args, **kwargs)  # type: ignore[arg-type]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    return fake


async def test_httpx_refuses_a_name_resolving_to_loopback_without_connecting(listener: Listener) -> None:
    url = f"http://gate.test.invalid:{listener.port}/ask"
    with mock.patch("socket.getaddrinfo", _resolving_to("127.0.0.1")):
        async with httpx.AsyncClient(transport=egress.async_transport(policy=CLUSTER)) as client:
            with pytest.raises(httpx.ConnectError) as raised:
                await client.post(url, json={})
        assert egress.refusal_in(raised.value) == (
            "refused: gate.test.invalid resolves to 127.0.0.1, which is in 127.0.0.0/8 "
            "(loopback or this host; --deny-loopback)")
        assert listener.accepted == 0
        # The same name, allowed: it connects to the checked address, with the URL's Host header.
        async with httpx.AsyncClient(transport=egress.async_transport(policy=LOCAL)) as client:
            answer = await client.post(url, json={})
    assert answer.status_code == 200 and listener.accepted == 1


async def test_httpx_refuses_the_metadata_address_before_any_network_access() -> None:
    with mock.patch("socket.getaddrinfo", side_effect=AssertionError("resolved")), \
            mock.patch("socket.socket.connect", side_effect=AssertionError("connected")):
        async with httpx.AsyncClient(transport=egress.async_transport(policy=LOCAL)) as client:
            with pytest.raises(httpx.ConnectError) as raised:
                await client.get("http://169.254.169.254/latest/meta-data/")
    assert egress.refusal_in(raised.value) == (
        "refused: 169.254.169.254 is in 169.254.169.254/32 (cloud metadata; the operator's egress policy)")


async def test_httpx_uses_the_process_policy_at_connect_time(listener: Listener) -> None:
    async with httpx.AsyncClient(transport=egress.async_transport()) as client:
        try:
            egress.install(CLUSTER)
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{listener.port}/")
        finally:
            egress.install(LOCAL)
        assert listener.accepted == 0
        assert (await client.get(f"http://127.0.0.1:{listener.port}/")).status_code == 200


def test_requests_refuses_a_name_resolving_to_loopback_without_connecting(listener: Listener) -> None:
    session = requests.Session()
    egress.guard_session(session)
    url = f"http://gate.test.invalid:{listener.port}/api/v1/query"
    try:
        egress.install(CLUSTER)
        with mock.patch("socket.getaddrinfo", _resolving_to("127.0.0.1")), pytest.raises(egress.Refused) as raised:
            session.get(url, timeout=5)
        assert "gate.test.invalid resolves to 127.0.0.1, which is in 127.0.0.0/8" in str(raised.value)
        with pytest.raises(egress.Refused, match=r"169\.254\.169\.254/32 \(cloud metadata"):
            session.get("http://169.254.169.254/", timeout=5)
        assert listener.accepted == 0
    finally:
        egress.install(LOCAL)
    with mock.patch("socket.getaddrinfo", _resolving_to("127.0.0.1")):
        assert session.get(url, timeout=5).status_code == 200
    assert listener.accepted == 1


def test_guard_session_keeps_the_retries_of_the_adapters_it_replaces() -> None:
    session = requests.Session()
    session.mount("http://prometheus:9090", requests.adapters.HTTPAdapter(max_retries=0))
    egress.guard_session(session)
    adapter = session.get_adapter("http://prometheus:9090/api")
    assert isinstance(adapter, egress.CheckedAdapter) and adapter.max_retries.total == 0
    assert session.trust_env is False


# --- TLS through the checked address: the URL's name is still the one verified and sent -----------


def _named_certificates(workdir: Path, name: str) -> tuple[str, ssl.SSLContext]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=workdir, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=egress test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={name}")
    (workdir / "san.ext").write_text(f"subjectAltName=DNS:{name}\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(workdir / "server.crt", workdir / "server.key")
    return (workdir / "ca.crt").read_text(), context


class TLSListener:
    """HTTPS on 127.0.0.1 with a certificate for gate.test.invalid only; records the SNI and the Host."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.names: list[str | None] = []
        self.hosts: list[str] = []
        context.sni_callback = lambda sock, name, ctx: self.names.append(name)  # type: ignore[assignment,func-returns-value]
        self.context = context
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    request = conn.recv(65536).decode()
                    self.hosts += [line.split(":", 1)[1].strip() for line in request.split("\r\n")
                                   if line.lower().startswith("host:")]
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except (OSError, ssl.SSLError):
                raw.close()


async def test_tls_verifies_and_sends_the_urls_name_while_connecting_to_the_checked_address(tmp_path: Path) -> None:
    ca, context = _named_certificates(tmp_path, "gate.test.invalid")
    server = TLSListener(context)
    url = f"https://gate.test.invalid:{server.port}/ask"
    try:
        with mock.patch("socket.getaddrinfo", _resolving_to("127.0.0.1")):
            verify = ssl.create_default_context(cadata=ca)
            async with httpx.AsyncClient(transport=egress.async_transport(verify=verify, policy=LOCAL)) as client:
                assert (await client.get(url)).status_code == 200
            session = requests.Session()
            (tmp_path / "bundle.crt").write_text(ca)
            session.verify = str(tmp_path / "bundle.crt")
            egress.guard_session(session)
            assert session.get(url, timeout=5).status_code == 200
    finally:
        server.sock.close()
    assert server.names == ["gate.test.invalid", "gate.test.invalid"]
    assert server.hosts == [f"gate.test.invalid:{server.port}"] * 2
