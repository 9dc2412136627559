"""The real Kubernetes control plane for tests: kube-apiserver and etcd, built from Go modules.

`scripts/real-apiserver --kubeconfig FILE [--port N]` runs this module. It builds
`.cache/bin/kube-apiserver-etcd` from `tools/kube-apiserver/` when the binary is missing or
older than its sources, starts it on 127.0.0.1 in a temporary directory, writes an admin
kubeconfig once `/readyz` answers, applies `crds/` (server-side, as a user would) and waits until
the CRDs are established, and then runs until SIGINT/SIGTERM, leaving no process and no
directory behind.

What it is, and what it is not:
- the API server is the real one (k8s.io/kubernetes cmd/kube-apiserver, see tools/kube-apiserver):
  its validation, CEL, admission, RBAC (`--authorization-mode=RBAC`), watch cache, status
  subresource and server-side apply;
- the admin user is a static token in `system:masters`;
- no kube-controller-manager runs: namespaces never finish deleting, nothing garbage-collects
  owned objects, and no ServiceAccount token Secrets are minted. The tests depend on none of
  these: they mint ServiceAccount tokens through the TokenRequest API, which the API server
  serves itself (`kubectl create token`), and they clean up by deleting objects, not namespaces.

It needs only the standard library (and `tools/sandbox/featurerollout_sandbox/children.py`, which needs no more:
the server it starts dies with it), `go` (to build) and `.cache/bin/kubectl` and `helm` (`make tools`),
so the script runs with any Python 3.11.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from featurerollout_sandbox.children import spawn

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "tools" / "kube-apiserver"
BINARY = REPO / ".cache" / "bin" / "kube-apiserver-etcd"
KUBECTL = REPO / ".cache" / "bin" / "kubectl"
HELM = REPO / ".cache" / "bin" / "helm"
CHART = REPO / "charts" / "featurerollout"
CRD_DIR = REPO / "crds"
OPERATOR_NAMESPACE = "featurerollout-system"
CONTEXT = "real-apiserver"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        # The API server's own loopback client and the health probes are not what tests look at.
        {"level": "None", "users": ["system:apiserver"]},
        {"level": "None", "nonResourceURLs": ["/readyz*", "/livez*", "/healthz*"]},
        {"level": "Metadata"},
    ],
}
START_TIMEOUT = 180.0  # a cold start on a loaded 2-core machine takes well under a minute


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or set up; the message says which step."""


def log(message: str) -> None:
    print(f"real-apiserver: {message}", file=sys.stderr, flush=True)


def is_stale() -> bool:
    """Whether the binary is missing or older than any of its Go sources."""
    if not BINARY.exists():
        return True
    built = BINARY.stat().st_mtime
    return any(path.stat().st_mtime > built for path in SOURCE.iterdir() if path.suffix in (".go", ".mod", ".sum"))


def build(force: bool = False) -> Path:
    """Build the binary from tools/kube-apiserver (pinned by its go.mod/go.sum) if needed."""
    if not force and not is_stale():
        return BINARY
    go = shutil.which("go")
    if go is None:
        raise ControlPlaneError(
            "`go` is not on PATH: the real kube-apiserver is built from Go modules (Go 1.26+, "
            "https://go.dev/doc/install); install Go or run the sandbox tier only"
        )
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    log(f"building {BINARY.relative_to(REPO)} from {SOURCE.relative_to(REPO)} (the first build takes minutes)")
    started = time.monotonic()
    version = kubernetes_version()
    minor = version.split(".")[1]
    # What Kubernetes' own build stamps in (hack/lib/version.sh): without it /version says v0.0.0-master.
    ldflags = " ".join(
        f"-X k8s.io/component-base/version.{key}={value}"
        for key, value in {"gitVersion": version, "gitMajor": "1", "gitMinor": minor, "gitTreeState": "clean"}.items()
    )
    done = subprocess.run(
        [go, "build", "-mod=readonly", "-trimpath", "-buildvcs=false", f"-ldflags={ldflags}", "-o", str(BINARY), "."],
        cwd=SOURCE,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    if done.returncode != 0:
        raise ControlPlaneError(f"`go build` in {SOURCE} exited {done.returncode}")
    log(f"built in {time.monotonic() - started:.1f}s")
    return BINARY


def kubernetes_version() -> str:
    """The k8s.io/kubernetes version that tools/kube-apiserver/go.mod pins (v1.37.2)."""
    for line in (SOURCE / "go.mod").read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "k8s.io/kubernetes" and words[1].startswith("v"):
            return words[1]
    raise ControlPlaneError(f"{SOURCE / 'go.mod'} does not require k8s.io/kubernetes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_kubeconfig(path: Path, server: str, ca_data: str, token: str, namespace: str = "default") -> Path:
    """A self-contained kubeconfig (JSON, which every YAML reader reads), written atomically."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        json.dump(config, stream, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    """The real kubectl; raises ControlPlaneError with its output when it fails."""
    if not KUBECTL.exists():
        raise ControlPlaneError(f"{KUBECTL} is missing: run `make tools`")
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True, text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise ControlPlaneError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class ControlPlane:
    """A running kube-apiserver-etcd process and what it needs."""

    process: subprocess.Popen[bytes]
    workdir: Path
    url: str
    ca_file: Path
    admin_token: str
    log_path: Path

    @property
    def audit_log(self) -> Path:
        """One JSON audit event per line (per stage) for every client request."""
        return self.workdir / "audit.log"

    def admin_kubeconfig(self, path: Path) -> Path:
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        return write_kubeconfig(path, self.url, ca_data, self.admin_token)

    def ready(self) -> bool:
        request = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"})
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def stop(self, grace: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start(port: int = 0, workdir: Path | None = None, verbosity: int = 0) -> ControlPlane:
    """Start etcd + kube-apiserver on 127.0.0.1 and wait until /readyz answers."""
    build()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="real-apiserver-"))
    certs = workdir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    admin_token = secrets.token_hex(16)
    tokens = workdir / "tokens.csv"
    tokens.write_text(f'{admin_token},admin,admin-uid,"system:masters"\n', encoding="utf-8")
    port = port or free_port()
    issuer = "https://kubernetes.default.svc.cluster.local"
    args = [
        str(BINARY), f"--etcd-dir={workdir / 'etcd'}", f"--etcd-port={free_port()}", f"--sa-key={workdir / 'sa.key'}",
        "--",
        f"--secure-port={port}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--cert-dir={certs}", f"--token-auth-file={tokens}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer={issuer}", f"--api-audiences={issuer}",
        "--service-cluster-ip-range=10.96.0.0/24",
        # No endpoints to reconcile: there is no kubelet or Service traffic in a test control plane.
        "--endpoint-reconciler-type=none",
        "--profiling=false", f"--v={verbosity}",
    ]
    # The audit log records every client request (verb, resource, namespace, user, user agent and
    # the answer): the real server's request log, which tests read as they read the sandbox's.
    policy = workdir / "audit-policy.json"
    policy.write_text(json.dumps(AUDIT_POLICY), encoding="utf-8")
    args += [f"--audit-policy-file={policy}", f"--audit-log-path={workdir / 'audit.log'}", "--audit-log-format=json",
             "--audit-log-mode=blocking"]
    log_path = workdir / "apiserver.log"
    with log_path.open("wb") as out:
        # Its own session: a Ctrl-C in the terminal reaches only the caller, which stops it. And it
        # dies with the caller whatever ends that (featurerollout_sandbox/children.py).
        process = spawn(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    plane = ControlPlane(process, workdir, f"https://127.0.0.1:{port}", certs / "apiserver.crt", admin_token,
                         log_path)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise ControlPlaneError(f"kube-apiserver exited with {process.returncode}:\n{tail}")
            if plane.ca_file.exists() and plane.ready():
                return plane
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-apiserver did not become ready within {START_TIMEOUT:.0f}s; log: {log_path}"
                )
            time.sleep(0.2)
    except BaseException:  # not ready, or interrupted while starting: never leave it running
        plane.stop()
        raise


def apply_crds(kubeconfig: Path, paths: Sequence[Path]) -> None:
    """Apply CRDs server-side, as `kubectl apply --server-side -f crds/` does, and wait until established."""
    files = [str(p) for p in paths]
    if not files:
        return
    args = ["apply", "--server-side", "--field-manager=real-apiserver"]
    for f in files:
        args += ["-f", f]
    kubectl(kubeconfig, *args)
    wait = ["wait", "--for=condition=Established", "--timeout=60s"]
    for f in files:
        wait += ["-f", f]
    kubectl(kubeconfig, *wait)


def chart_rbac(values: Sequence[str] = (), namespace: str = OPERATOR_NAMESPACE) -> str:
    """The chart's ServiceAccount and RBAC, rendered by the real helm with `--set` values."""
    if not HELM.exists():
        raise ControlPlaneError(f"{HELM} is missing: run `make tools`")
    args = [str(HELM), "template", "featurerollout", str(CHART), "--namespace", namespace,
            "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"]
    for value in values:
        args += ["--set", value]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ControlPlaneError(f"helm template exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def operator_kubeconfig(
    admin: Path, path: Path, values: Sequence[str] = (), namespace: str = OPERATOR_NAMESPACE,
    service_account: str = "featurerollout",
) -> Path:
    """A kubeconfig for the chart's ServiceAccount, bound by exactly the chart's Role/ClusterRole.

    The token comes from the TokenRequest API (`kubectl create token`), as a pod's projected token
    would: no controller is needed."""
    server = _kubeconfig_field(admin, "server")
    ca_data = _kubeconfig_field(admin, "certificate-authority-data")
    manifest = chart_rbac(values, namespace)
    kubectl(admin, "apply", "-f", "-", stdin=_namespace_json(namespace))
    kubectl(admin, "apply", "-f", "-", stdin=manifest)
    token = kubectl(admin, "create", "token", service_account, "-n", namespace, "--duration=24h").strip()
    return write_kubeconfig(path, server, ca_data, token)


def _namespace_json(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _kubeconfig_field(path: Path, key: str) -> str:
    config = json.loads(path.read_text(encoding="utf-8"))
    return str(config["clusters"][0]["cluster"][key])


@contextmanager
def running(port: int = 0, crds: Sequence[Path] = (), default_crds: bool = True) -> Iterator[tuple[ControlPlane, Path]]:
    """A started control plane and its admin kubeconfig; everything is removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="real-apiserver-"))
    plane: ControlPlane | None = None
    try:
        plane = start(port, workdir)
        admin = plane.admin_kubeconfig(workdir / "admin.kubeconfig")
        paths = (sorted(CRD_DIR.glob("*.yaml")) if default_crds else []) + list(crds)
        apply_crds(admin, paths)
        yield plane, admin
    finally:
        if plane is not None:
            plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/real-apiserver",
        description="Run the real kube-apiserver (with an embedded etcd), built from Go modules, on 127.0.0.1 "
                    "for tests: write an admin kubeconfig once it answers, apply crds/, and run until SIGINT/SIGTERM.",
    )
    parser.add_argument("--kubeconfig", type=Path, metavar="FILE",
                        help="where to write the admin (system:masters) kubeconfig once the server is ready")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free port)")
    parser.add_argument("--operator-kubeconfig", type=Path, metavar="FILE",
                        help="also write a kubeconfig for the chart's ServiceAccount, bound by the chart's RBAC")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="values",
                        help="a chart value for the RBAC of --operator-kubeconfig (e.g. watch.namespaces={a,b})")
    parser.add_argument("--crd", action="append", default=[], type=Path, metavar="FILE",
                        help="also apply the CRDs in FILE (repeatable)")
    parser.add_argument("--no-default-crds", action="store_true", help="do not apply the CRDs in crds/")
    parser.add_argument("--build-only", action="store_true", help="build the binary if needed, then exit")
    args = parser.parse_args(argv)

    try:
        if args.build_only:
            build()
            return 0
        if args.kubeconfig is None:
            parser.error("--kubeconfig is required (unless --build-only)")
        stop = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        started = time.monotonic()
        with running(args.port, args.crd, not args.no_default_crds) as (plane, admin):
            if args.operator_kubeconfig:
                operator_kubeconfig(admin, args.operator_kubeconfig, args.values)
            # Written last, atomically: a reader that sees the file may use everything above.
            shutil.copyfile(admin, args.kubeconfig.with_name(args.kubeconfig.name + ".tmp"))
            os.replace(args.kubeconfig.with_name(args.kubeconfig.name + ".tmp"), args.kubeconfig)
            log(f"serving {plane.url} (ready with CRDs in {time.monotonic() - started:.1f}s); "
                f"kubeconfig written to {args.kubeconfig}")
            while not stop and plane.process.poll() is None:
                time.sleep(0.2)
            if plane.process.poll() is not None:
                log(f"kube-apiserver exited with {plane.process.returncode}; log follows")
                sys.stderr.write(plane.log_path.read_text(errors="replace")[-3000:])
                return 1
        log("stopped")
        return 0
    except ControlPlaneError as error:
        log(str(error))
        return 1


if __name__ == "__main__":
    sys.exit(main())
