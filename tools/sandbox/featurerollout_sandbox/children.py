"""Child processes that end with the process that started them.

`spawn()` is `subprocess.Popen` for a server that must never outlive its parent: the test suite's
kube-apiserver, Prometheus, sandboxes and operators, and the demo's processes. On Linux the
kernel sends the child SIGKILL when its parent ends, however it ends (`PR_SET_PDEATHSIG`): a test
run or a demo killed by SIGKILL, the OOM killer or a CI time limit's last resort leaves no
orphaned server behind. It is the backstop; the parent still stops its children itself on a
normal exit or a SIGTERM, gracefully.

Standard library only: `tools/real_apiserver.py` runs under any Python 3.11 without the
package's dependencies.

The kernel counts the parent as the *thread* that forked: start children from a thread that
lives as long as they should (the main thread, as every caller here does). Elsewhere than Linux
`spawn()` is plain `Popen`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once, here, in the parent: between fork and exec the child only calls it.
_PRCTL = _load_prctl()


def _die_with(parent: int) -> None:
    """In the child, before exec: SIGKILL when the parent ends; if it already has, end now."""
    assert _PRCTL is not None
    _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died between fork and prctl: nobody would tell us
        os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` that ties the child's life to this process (None
    where the platform cannot)."""
    if _PRCTL is None:
        return None
    return functools.partial(_die_with, os.getpid())


def spawn(args: Any, **popen: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(args, **popen)`, and the child is killed when this process ends."""
    if "preexec_fn" in popen:
        raise TypeError("spawn() sets preexec_fn itself")
    return subprocess.Popen(args, preexec_fn=die_with_parent(), **popen)
