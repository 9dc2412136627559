"""A pytest plugin: a test run stopped by SIGTERM or SIGHUP (a CI time limit, `timeout`, a closed
terminal) tears its fixtures down, as after Ctrl-C, instead of dying with every server it
started left running.

Python's default for SIGTERM is to end at once, with no `finally` and no fixture teardown. Here the
first SIGTERM/SIGHUP raises `Terminated`, a KeyboardInterrupt, wherever the run is: pytest then
stops as on Ctrl-C and tears down every fixture still set up (its `pytest_sessionfinish`), which
stops the operators, Prometheus servers, sandboxes and the real kube-apiserver. Further signals
while that runs are ignored, so that the teardown is not cut short. If the run is killed anyway
(SIGKILL), its children still end with it: every server is started with
`featurerollout_sandbox.children.spawn` (the kernel's parent-death signal).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

import pytest

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the test run."""


_previous: dict[int, Any] = {}
_received: list[int] = []


def _on_signal(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _received:
        print(f"\n{name} again: still tearing down after {signal.Signals(_received[0]).name}", file=sys.stderr,
              flush=True)
        return
    _received.append(signum)
    raise Terminated(f"{name}: the test run stops; every fixture is torn down (the servers it started too)")


def pytest_configure(config: pytest.Config) -> None:
    if threading.current_thread() is not threading.main_thread():  # pytest run from a thread: no signals
        return
    for signum in SIGNALS:
        _previous[signum] = signal.signal(signum, _on_signal)


def pytest_unconfigure(config: pytest.Config) -> None:
    for signum, handler in _previous.items():
        signal.signal(signum, handler)
    _previous.clear()
