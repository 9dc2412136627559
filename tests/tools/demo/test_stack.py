"""The demo's process supervisor: every child is stopped, whatever ends the block (tiny `sh` children)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from featurerollout_demo.stack import Stack, Terminated, group_alive, group_members, wait_until

IGNORES_TERM = ["sh", "-c", "trap '' TERM; echo trapped; while :; do sleep 0.1; done"]
HAS_A_GRANDCHILD = ["sh", "-c", "sleep 300 & wait"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def test_children_are_stopped_last_first_on_success(tmp_path: Path) -> None:
    with Stack(tmp_path) as stack:
        first = stack.start("first", ["sleep", "300"])
        second = stack.start("second", ["sleep", "300"])
        assert first.running and second.running
    assert [child.name for child, _ in stack.stopped] == ["second", "first"]
    assert [code for _, code in stack.stopped] == [-signal.SIGTERM, -signal.SIGTERM]
    assert stack.leftovers() == []


def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    with Stack(tmp_path, grace=0.5) as stack:
        child = stack.start("stubborn", IGNORES_TERM)
        wait_until(lambda: child.tail() == ["trapped"], 10, "the shell to install its trap")
        started = time.monotonic()
    assert stack.stopped == [(child, -signal.SIGKILL)]
    assert 0.5 <= time.monotonic() - started < 5
    assert not group_alive(child.pid)


def test_grandchildren_go_with_their_parent(tmp_path: Path) -> None:
    with Stack(tmp_path) as stack:
        child = stack.start("parent", HAS_A_GRANDCHILD)
        wait_until(lambda: len(group_members(child.pid)) == 2, 5, "the grandchild")
        grandchild = next(pid for pid in group_members(child.pid) if pid != child.pid)
    assert not group_alive(child.pid)
    assert not alive(grandchild)
    assert stack.leftovers() == []


def test_children_are_stopped_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), Stack(tmp_path) as stack:
        child = stack.start("child", ["sleep", "300"])
        raise RuntimeError("boom")
    assert not alive(child.pid)


def test_sigint_becomes_keyboardinterrupt_and_sigterm_terminated(tmp_path: Path) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), Stack(tmp_path) as stack:
        child = stack.start("child", ["sleep", "300"])
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    assert not alive(child.pid)
    with pytest.raises(Terminated) as raised, Stack(tmp_path) as stack:
        child = stack.start("child", ["sleep", "300"])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert raised.value.signum == signal.SIGTERM
    assert not alive(child.pid)
    assert signal.getsignal(signal.SIGTERM) is previous  # the handlers are restored


def test_a_signal_while_starting_a_child_waits_until_it_is_registered(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), Stack(tmp_path) as stack:
        with stack.holding_signals():
            os.kill(os.getpid(), signal.SIGINT)
            child = stack.start("child", ["sleep", "300"])
        time.sleep(5)
    assert stack.children == [] and [c for c, _ in stack.stopped] == [child]
    assert not alive(child.pid)


def test_output_goes_to_the_childs_log(tmp_path: Path) -> None:
    with Stack(tmp_path) as stack:
        child = stack.start("echo", ["sh", "-c", "echo hello; echo there >&2"])
        child.popen.wait(5)
    assert child.tail() == ["hello", "there"]
    assert (tmp_path / "echo.log").exists()
