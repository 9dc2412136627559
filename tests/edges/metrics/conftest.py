"""Fixtures for the metric provider tests.

`tests.support.fixtures` is a plugin; a top-level `tests/conftest.py` may list it in
`pytest_plugins`. Until one does, it is imported here (with the repository root on sys.path, since
`tests/` is not a package).
"""

from __future__ import annotations

import sys

from tests.support.paths import REPO

_ROOT = str(REPO)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.fixtures import prometheus_server  # noqa: E402

__all__ = ["prometheus_server"]
