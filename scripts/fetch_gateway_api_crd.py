"""Fetch the real Gateway API HTTPRoute CRD (standard channel) into .cache/ (never committed).

The CRD comes from the Go module `sigs.k8s.io/gateway-api`, pinned by version, as the Go module
proxy serves it: `https://proxy.golang.org/sigs.k8s.io/gateway-api/@v/<version>.zip`. The zip and
the CRD file in it are both checked against pinned sha256 digests, so a test always runs against
exactly the upstream text named here, not a trimmed copy.

Idempotent: when the CRD is in .cache/ with the right digest, nothing is downloaded.

    python scripts/fetch_gateway_api_crd.py          # prints the path of the CRD file
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import httpx

MODULE = "sigs.k8s.io/gateway-api"
VERSION = "v1.6.3"
ZIP_SHA256 = "7c5d0a931d6ffb3e08ac4d5318969faaa6acf25a40ad13cc5978c22117e9b64b"
CRD_MEMBER = "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
CRD_SHA256 = "a89d17ff5ed060fa0eac015524f9252bb291f616412c13ac8cb952ed9c25c5ad"
PROXY = "https://proxy.golang.org"

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "gateway-api" / VERSION
CRD_PATH = CACHE / Path(CRD_MEMBER).name


class FetchError(RuntimeError):
    """The CRD could not be fetched or did not match its pinned digest."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached() -> Path | None:
    """The cached CRD when it is there with the pinned digest."""
    if CRD_PATH.is_file() and _sha256(CRD_PATH.read_bytes()) == CRD_SHA256:
        return CRD_PATH
    return None


def fetch(timeout: float = 120.0) -> Path:
    """The path of the pinned HTTPRoute CRD, downloading the module zip once if needed."""
    found = cached()
    if found is not None:
        return found
    url = f"{PROXY}/{MODULE}/@v/{VERSION}.zip"
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise FetchError(f"could not download {url}: {error}") from None
    if (digest := _sha256(response.content)) != ZIP_SHA256:
        raise FetchError(f"{url}: sha256 {digest} is not the pinned {ZIP_SHA256}")
    member = f"{MODULE}@{VERSION}/{CRD_MEMBER}"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        try:
            text = archive.read(member)
        except KeyError:
            raise FetchError(f"{url} has no {member}") from None
    if (digest := _sha256(text)) != CRD_SHA256:
        raise FetchError(f"{member}: sha256 {digest} is not the pinned {CRD_SHA256}")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CRD_PATH.with_suffix(".partial")
    partial.write_bytes(text)
    partial.replace(CRD_PATH)  # atomic: a concurrent reader never sees half a file
    return CRD_PATH


def main() -> int:
    try:
        path = fetch()
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
