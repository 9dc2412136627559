"""The operator's image is built from the product alone: its Dockerfile copies the package source and
the files pip needs, never tools/ (the sandbox and the demo), tests/ or the whole context.

Images are not built by this tier; `pip install .` in a fresh virtualenv, which is what the image's
build stage runs, is checked to install no sandbox or demo code in test_install_without_extras.py.
"""

from __future__ import annotations

import re

from tests.support.paths import REPO

ALLOWED = {"pyproject.toml", "constraints.txt", "README.md*", "operator"}


def copied_sources(dockerfile: str) -> list[str]:
    """The build-context sources of every COPY (not those of `COPY --from=<stage>`)."""
    sources: list[str] = []
    for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        sources += args[:-1]
    return sources


def test_the_image_copies_only_the_product() -> None:
    sources = copied_sources((REPO / "Dockerfile").read_text())
    assert sources, "the Dockerfile copies nothing?"
    assert set(sources) <= ALLOWED, f"the image would carry {set(sources) - ALLOWED}"


def test_a_copy_of_tools_would_be_caught() -> None:
    sources = copied_sources("FROM x\nCOPY operator ./operator\nCOPY tools \\\n  ./tools\nCOPY --from=build /a /a\n")
    assert sources == ["operator", "tools"]
    assert not set(sources) <= ALLOWED
