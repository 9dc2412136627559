"""`scripts/ensure-prometheus` leaves every Prometheus it did not install alone.

The scenario: Prometheus is not on PATH, so the script installs it (apt-get is a stub that puts
the real binaries on PATH, as the package would) and then stops the packaged service. Meanwhile
a developer's own Prometheus is running. It must survive; the packaged service must be stopped
through the package's own means (`service prometheus stop` or the systemd unit).

Safety: the whole scenario runs in a PID namespace of its own (`unshare --pid --mount-proc`), so
that even a script with a broad kill (the old `pkill -x prometheus`) can only reach the processes
of this test, never anyone else's on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.cluster import REPO
from tests.support.fixtures import require_prometheus

pytestmark = pytest.mark.integration

SCRIPT = REPO / "scripts" / "ensure-prometheus"

# Runs inside the PID namespace: start our own Prometheus, run the script, watch ours for a while.
DRIVER = textwrap.dedent(
    """
    import json, subprocess, sys, time, urllib.request
    from pathlib import Path
    from tests.support.prometheus import start_prometheus

    workdir, path = Path(sys.argv[1]), sys.argv[2]
    with start_prometheus(workdir / "own", []) as own:
        script = subprocess.run([sys.argv[3]], env={"PATH": path, "LC_ALL": "C"},
                                capture_output=True, text=True, timeout=60)
        # Alive over a window, not at one instant: a signalled Prometheus shuts down within ms.
        answered, deadline = 0, time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(own.url + "/-/ready", timeout=2) as response:
                    answered += response.status == 200
            except OSError:
                break
            time.sleep(0.05)
        alive = own.process.poll() is None
        print(json.dumps({"rc": script.returncode, "stdout": script.stdout, "stderr": script.stderr,
                          "alive": alive, "answered": answered}))
    """
)

RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "{log}"\n'
FAKE_APT_GET = textwrap.dedent(
    """\
    #!/bin/sh
    # apt-get as the package would act: `install` puts prometheus and promtool on PATH.
    echo "apt-get $*" >> "{log}"
    case " $* " in *" install "*) ln -sf "{prometheus}" "{bin}/prometheus"; ln -sf "{promtool}" "{bin}/promtool";; esac
    """
)


def fake_bin(tmp_path: Path, prometheus: str) -> tuple[Path, Path]:
    """A PATH directory with stubbed apt-get/service/systemctl and the few real tools the script uses."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    promtool = shutil.which("promtool") or str(Path(prometheus).with_name("promtool"))
    (bin_dir / "apt-get").write_text(FAKE_APT_GET.format(log=log, bin=bin_dir, prometheus=prometheus,
                                                         promtool=promtool))
    for name in ("service", "systemctl", "invoke-rc.d"):
        (bin_dir / name).write_text(RECORDER.format(log=log))
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    # Real tools: the shell, and what the old and new scripts call (pkill included, so that the
    # old script really does what it did: inside the namespace, that is harmless to others).
    for name in ("bash", "sh", "env", "id", "head", "pkill", "basename", "ln", "dirname", "cat"):
        real = shutil.which(name)
        if real is not None:
            (bin_dir / name).symlink_to(real)
    return bin_dir, log


def test_the_script_stops_the_packaged_service_and_no_other_prometheus(tmp_path: Path) -> None:
    prometheus = require_prometheus()
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare: the install path runs as root, in a PID namespace of its own")
    bin_dir, log = fake_bin(tmp_path, str(Path(prometheus).resolve()))
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", DRIVER,
         str(tmp_path), str(bin_dir), str(SCRIPT)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["rc"] == 0, outcome
    assert "Prometheus" in outcome["stdout"]
    assert outcome["alive"] and outcome["answered"] >= 5, f"our own Prometheus did not survive: {outcome}"
    calls = log.read_text().splitlines()
    assert any(call.startswith("apt-get install") for call in calls), calls
    # The packaged service is stopped by the package's own means (here no systemd: its init script).
    assert "service prometheus stop" in calls or "systemctl stop prometheus.service" in calls, calls


def test_the_script_has_no_broad_kill() -> None:
    text = SCRIPT.read_text()
    for broad in ("pkill", "killall", "kill "):
        assert broad not in text, broad
