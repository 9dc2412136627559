"""`python -m featurerollout_demo` end to end, as `make demo` runs it: the real sandbox, demo service,
Prometheus and operator. It must exit 0 with the expected summary, and leave no process behind,
also when it is interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.missing import skip_or_fail
from tests.support.paths import REPO

from featurerollout_demo.stack import find_prometheus
from featurerollout_sandbox.children import spawn

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def prometheus_installed() -> None:
    """The demo runs a real Prometheus: skip without it, fail under CI."""
    if find_prometheus() is None:
        skip_or_fail("prometheus is not installed (make prometheus)")



def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains `text` (every child of the demo names its work dir)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(entry), cmdline))
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


class Demo:
    """The demo as a subprocess, its stdout collected line by line."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        self.lines: list[str] = []
        self.popen = spawn(
            [sys.executable, "-m", "featurerollout_demo", "--workdir", str(workdir), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )
        self.children_seen: set[int] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, start: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.children_seen.update(children_of(self.popen.pid))
            found = next((line for line in self.lines if line.startswith(start)), None)
            if found is not None:
                return found
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line starting with {start!r} within {timeout}s:\n{self.output}")

    def wait(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"the demo did not end within {timeout}s:\n{self.output}") from None
        self._reader.join(5)
        return code

    def assert_nothing_left(self) -> None:
        left = processes_mentioning(str(self.workdir))
        assert left == [], f"processes left behind: {left}\n{self.output}"
        still = [pid for pid in self.children_seen if Path(f"/proc/{pid}").exists()
                 and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        assert still == [], f"children of the demo left behind: {still}"


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    workdir = tmp_path / "demo"
    yield workdir
    for pid, _ in processes_mentioning(str(workdir)):  # never leave a stray process to later tests
        os.kill(pid, signal.SIGKILL)


def test_make_demo_rolls_one_out_rolls_one_back_and_stops_everything(demo_dir: Path) -> None:
    demo = Demo(demo_dir)
    demo.wait_for_line("[5/8] starting the operator", timeout=90)
    code = demo.wait(timeout=240)
    output = demo.output
    assert code == 0, output
    for step in range(1, 9):
        assert f"[{step}/8] " in output
    assert "[8/8] stopping operator, prometheus, service, sandbox ... ok (all 4 stopped)" in demo.lines
    summary = demo.lines[demo.lines.index("summary:"):]
    assert summary[1].split()[:4] == ["new-checkout", "Succeeded", "weight", "100%"]
    assert summary[1].endswith("as expected")
    search = next(line for line in summary if line.startswith("  new-search"))
    assert search.split()[:4] == ["new-search", "RolledBack", "weight", "0%"]
    assert search.endswith("as expected")
    assert "    flag in the ConfigMap: 100%" in summary
    assert "    flag in the ConfigMap: 0%" in summary
    assert any(line.startswith("    reason: BudgetExceeded: error-rate") for line in summary), output
    assert any(line.startswith("    Warning RolledBack: error-rate") for line in summary), output
    assert "  other flags in the ConfigMap (dark-mode): unchanged" in summary
    pricing = next(line for line in summary if line.startswith("  new-pricing"))
    assert pricing.split()[:4] == ["new-pricing", "RolledBack", "weight", "0%"]
    assert pricing.endswith("as expected")  # on latency-p95's budget, error-rate within its own
    assert any(line.startswith("    reason: BudgetExceeded: latency-p95") for line in summary), output
    assert any(line.startswith("    Warning RolledBack: latency-p95") for line in summary), output
    assert ("result: ok: new-checkout reached 100%, new-search was rolled back to 0% automatically, and "
            "new-pricing too, on its latency alone") in summary
    assert demo.lines[-1].startswith("demo done in ")
    # the compact progress lines (stdout is not a terminal): every stage of new-checkout was shown
    progress = [line for line in demo.lines if line.startswith("  ") and "new-checkout" in line and "stage" in line]
    assert {w for line in progress for w in ("10%", "25%", "50%", "100%") if f" {w}" in line} == {
        "10%", "25%", "50%", "100%"}
    demo.assert_nothing_left()
    assert (demo_dir / "operator.log").exists() and not (demo_dir / "prometheus-data").exists()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_stops_every_child(demo_dir: Path, signum: int, code: int) -> None:
    demo = Demo(demo_dir)
    demo.wait_for_line("[5/8] starting the operator (featurerollout run --prometheus-address) ... ok", timeout=90)
    assert len(processes_mentioning(str(demo_dir))) >= 4
    demo.popen.send_signal(signum)
    assert demo.wait(timeout=60) == code, demo.output
    assert "[8/8] stopping operator, prometheus, service, sandbox ... ok (all 4 stopped)" in demo.lines
    demo.assert_nothing_left()
