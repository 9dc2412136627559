"""Where the real kube-apiserver tier runs, every CRD rule test also asks the real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api import crd_helpers
from tests.support.real_server import real_http_client, selected_servers


@pytest.fixture(autouse=True, scope="session")
def real_crd_server(request: pytest.FixtureRequest) -> Iterator[None]:
    if "real" not in selected_servers():
        yield
        return
    admin, _ = request.getfixturevalue("real_apiserver_crds")
    with real_http_client(admin) as client:
        crd_helpers.REAL_SERVER = client
        try:
            yield
        finally:
            crd_helpers.REAL_SERVER = None
