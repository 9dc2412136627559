"""The committed generated reference pages are exactly what scripts/gen-reference writes today.

docs/reference/crd.md comes from the pydantic models (the CRD schema), docs/reference/cli.md from the
argparse parser; neither is kept by hand. A change to a model's field, description or rule, or to a
command's options or help, fails here until the pages are regenerated and committed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tools.gen_reference import CLI_PAGE, CRD_PAGE, DOCS, generate

FIX = "run scripts/gen-reference (or `make reference`) and commit docs/reference/"


@pytest.mark.parametrize("page", [CRD_PAGE, CLI_PAGE], ids=str)
def test_committed_reference_matches_a_fresh_generation(tmp_path: Path, page: Path) -> None:
    generate(tmp_path)
    committed = DOCS / page
    assert committed.is_file(), f"docs/{page} is missing; {FIX}"
    fresh = (tmp_path / page).read_bytes()
    assert committed.read_bytes() == fresh, f"docs/{page} differs from what the models and parser generate; {FIX}"


def test_the_crd_reference_names_every_field_of_every_kind(tmp_path: Path) -> None:
    from featurerollout.api.crd import KINDS, render_crd

    generate(tmp_path)
    text = (tmp_path / CRD_PAGE).read_text()
    for kind in KINDS:
        crd = render_crd(kind)
        assert f"## {kind.kind}\n" in text
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for field in ("spec", *(f"spec.{name}" for name in schema["properties"]["spec"]["properties"])):
            assert f"| `{field}` |" in text, f"{kind.kind}: {field} is not in the reference"
    for path in ("spec.analysis.metrics[].compare.maxIncrease", "status.metrics[].result", "spec.gates[].onTimeout"):
        assert f"| `{path}` |" in text


def test_the_cli_reference_has_every_subcommand(tmp_path: Path) -> None:
    from featurerollout.commands.cli import build_parser

    generate(tmp_path)
    text = (tmp_path / CLI_PAGE).read_text()
    parser = build_parser()
    names = [action.choices for action in parser._actions if hasattr(action, "choices") and action.choices]
    assert names, "the parser has no subcommands"
    for name in names[-1]:
        assert f"## featurerollout {name}\n" in text
        assert f"usage: featurerollout {name}" in text
