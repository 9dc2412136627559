"""`featurerollout simulate`'s command line: its help, and a clear error for each kind of bad input
(a field of the rollout, a time, no analysis, an unreachable Prometheus, no matplotlib for --png)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from featurerollout.commands.cli import build_parser, main
from tests.support.history import ROLLOUT
from tests.support.prometheus import free_port


@pytest.fixture
def rollout(tmp_path: Path) -> Path:
    path = tmp_path / "rollout.yaml"
    path.write_text(ROLLOUT)
    return path


def test_help_names_every_option() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["simulate"].format_help()  # type: ignore[union-attr]
    for option in ("-f", "--prometheus", "--from", "--to", "--step", "--png", "-7d", "simulate"):
        assert option in text


def test_a_bad_field_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(ROLLOUT.replace("weight: 25,", "weight: 5,"))
    assert main(["simulate", "-f", str(path), "--from", "-7d"]) == 2
    assert "spec.stages[1].weight" in capsys.readouterr().err


@pytest.mark.parametrize(("start", "end", "words"), [
    ("yesterday", "now", "is not a time"),
    ("-1d", "-2d", "must be after --from"),
    ("2026-01-01T00:00:00", "now", "no time zone"),
])
def test_bad_times(rollout: Path, capsys: pytest.CaptureFixture[str], start: str, end: str, words: str) -> None:
    assert main(["simulate", "-f", str(rollout), "--from", start, "--to", end]) == 2
    assert words in capsys.readouterr().err


def test_no_analysis_nothing_to_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(ROLLOUT.split("  analysis:")[0])
    assert main(["simulate", "-f", str(path), "--from", "-1h"]) == 2
    assert "spec.analysis is not set" in capsys.readouterr().err


def test_an_unreachable_prometheus_is_an_error_that_says_so(rollout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["simulate", "-f", str(rollout), "--prometheus", url, "--from", "-1h", "-q"]) == 2
    assert f"Prometheus at {url} is unreachable" in capsys.readouterr().err


def test_png_without_matplotlib_says_how_to_install_it(rollout: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib made unimportable (None in sys.modules is how Python spells `not installed`);
    tests/packaging/ checks the same in a real virtualenv without the extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "out.png"
    assert main(["simulate", "-f", str(rollout), "--from", "-1h", "--png", str(out)]) == 2
    assert "pip install 'featurerollout[simulate]'" in capsys.readouterr().err
    assert not out.exists()
