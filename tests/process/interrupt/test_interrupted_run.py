"""A test run that is stopped leaves no server running (issue 19).

Each test runs `servers_until_stopped.py` in a pytest of its own, which starts the real
kube-apiserver, Prometheus, the sandbox and an operator, as tests do; then stops that run the
way runs get stopped, and checks by pid that nothing it started is left:

- SIGTERM (a CI time limit, `kill`): the fixtures are torn down, as on Ctrl-C
  (tests/support/termination.py): the servers are stopped and the real server's directory removed;
- the real `timeout` command, its time limit expiring;
- SIGKILL, which no teardown survives: the servers die with it all the same, by the kernel's
  parent-death signal (tools/sandbox/featurerollout_sandbox/children.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from featurerollout_sandbox.children import spawn
from tests.process.interrupt.servers_until_stopped import READY_FILE
from tests.support.cluster import REPO, wait_until
from tests.support.fixtures import require_prometheus
from tests.support.real_server import require_real

pytestmark = pytest.mark.integration

INNER = Path(__file__).with_name("servers_until_stopped.py")
# What the inner run starts, by a word of each one's command line.
SERVERS = ("kube-apiserver-etcd", "prometheus", "featurerollout_sandbox", "featurerollout run")
READY_TIMEOUT = 240.0  # the real kube-apiserver's start on a loaded 2-core machine, and the rest
TEARDOWN_TIMEOUT = 90.0  # stopping every server gracefully (kube-apiserver's own grace is 30 s)
GONE_TIMEOUT = 15.0  # after the parent is killed, for the kernel to kill and the reaper to reap


@dataclass(frozen=True)
class Proc:
    pid: int
    start_time: str  # /proc/PID/stat field 22: tells a pid's process from a later one with its pid
    command: str


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the state on (the command may hold spaces)


def descendants(root: int) -> list[Proc]:
    """Every live process under `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[Proc] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        fields = _stat(pid)
        if fields is None or fields[0] == "Z":
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(Proc(pid, fields[19], command))
        todo += children.get(pid, [])
    return found


def alive(proc: Proc) -> bool:
    fields = _stat(proc.pid)
    return fields is not None and fields[0] != "Z" and fields[19] == proc.start_time


@dataclass
class InnerRun:
    popen: subprocess.Popen[bytes]
    log_path: Path
    started: list[Proc]
    real_apiserver_workdir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def survivors(self) -> list[Proc]:
        return [proc for proc in self.started if alive(proc)]


@contextmanager
def inner_run(tmp_path: Path, wrapper: Sequence[str] = ()) -> Iterator[InnerRun]:
    """The inner pytest, once its servers all run; whatever the test does, nothing is left after."""
    require_real()
    require_prometheus()
    ready_file = tmp_path / "ready.json"
    log_path = tmp_path / "inner.log"
    env = {**os.environ, READY_FILE: str(ready_file), "FEATUREROLLOUT_TEST_APISERVER": "real"}
    args = [*wrapper, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
            str(tmp_path / "inner"), str(INNER)]
    with log_path.open("wb") as log:
        popen = spawn(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    run: InnerRun | None = None
    try:
        wait_until(lambda: ready_file.exists() or popen.poll() is not None, READY_TIMEOUT, "the servers to run")
        assert popen.poll() is None, f"the inner run ended early:\n{log_path.read_text()[-4000:]}"
        ready = json.loads(ready_file.read_text())
        started = descendants(popen.pid)
        run = InnerRun(popen, log_path, started, Path(ready["real_apiserver_workdir"]))
        commands = [proc.command for proc in started]
        for server in SERVERS:  # the test would prove nothing about a server that is not there
            assert any(server in command for command in commands), f"{server} is not running: {commands}"
        yield run
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(30)
        for proc in run.survivors() if run else []:  # never leave one behind, even when failing
            os.kill(proc.pid, signal.SIGKILL)
        if run is not None:
            shutil.rmtree(run.real_apiserver_workdir, ignore_errors=True)


def assert_nothing_survives(run: InnerRun, timeout: float) -> None:
    try:
        wait_until(lambda: not run.survivors(), timeout, "every server the run started to end")
    except AssertionError:
        left = "\n".join(f"  {proc.pid}: {proc.command}" for proc in run.survivors())
        raise AssertionError(f"still running {timeout:g} s after the run ended:\n{left}\n{run.log()[-3000:]}") \
            from None


def test_sigterm_to_a_test_run_tears_down_every_server_it_started(tmp_path: Path) -> None:
    with inner_run(tmp_path) as run:
        sent = time.monotonic()
        run.popen.send_signal(signal.SIGTERM)
        code = run.popen.wait(TEARDOWN_TIMEOUT)
        took = time.monotonic() - sent
        print(f"the run ended {took:.1f} s after SIGTERM, exit code {code}; {len(run.started)} processes")
        assert code == pytest.ExitCode.INTERRUPTED, run.log()[-3000:]
        assert "Terminated: SIGTERM" in run.log()
        # Torn down by its fixtures before the run ended, not by the kernel after: all gone already,
        # and the real server's directory, which only the teardown removes, too.
        assert run.survivors() == [], run.survivors()
        assert not run.real_apiserver_workdir.exists()


def test_a_test_run_under_timeout_leaves_no_server_when_the_time_is_up(tmp_path: Path) -> None:
    timeout = shutil.which("timeout")
    if timeout is None:
        pytest.skip("coreutils `timeout` is not installed")
    with inner_run(tmp_path, [timeout, "3600"]) as run:
        # The limit's expiry, now: `timeout` arms SIGALRM for its duration, and on SIGALRM sends its
        # --signal (TERM) to the command and its process group, then exits 124.
        run.popen.send_signal(signal.SIGALRM)
        code = run.popen.wait(TEARDOWN_TIMEOUT)
        assert code == 124, f"timeout exited {code}:\n{run.log()[-3000:]}"
        assert "Terminated: SIGTERM" in run.log()
        assert_nothing_survives(run, GONE_TIMEOUT)
        assert not run.real_apiserver_workdir.exists()


def test_sigkill_to_a_test_run_still_ends_every_server_it_started(tmp_path: Path) -> None:
    with inner_run(tmp_path) as run:
        run.popen.kill()
        run.popen.wait(10)
        sent = time.monotonic()
        assert_nothing_survives(run, GONE_TIMEOUT)
        print(f"{len(run.started)} processes gone {time.monotonic() - sent:.1f} s after the run was killed")
