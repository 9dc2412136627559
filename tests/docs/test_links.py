"""Every relative link in README.md, DEVELOPMENT.md and docs/**/*.md resolves, without the network.

A link's file must exist (relative to the page that links it), and its `#anchor` must be a heading
of that file, slugified as GitHub renders it (the README and DEVELOPMENT.md are read there) and as
MkDocs does (the docs site): an anchor must work in both. Links inside code (fenced blocks and
`inline code`) are text, not links, and absolute URLs (`https:`, `mailto:`) are not followed.
`make docs` checks the site's links too (`mkdocs build --strict`); this also covers the two pages
outside docs/ and runs in the unit tier.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at the first space (a title may follow) or `)`
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def pages() -> list[Path]:
    return [REPO / "README.md", REPO / "DEVELOPMENT.md", *sorted((REPO / "docs").rglob("*.md"))]


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, INLINE_CODE.sub("", line)


def heading_text(raw: str) -> str:
    """The text a heading renders to: links to their text, no code ticks, no emphasis stars."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    return text.replace("`", "").replace("*", "")


def github_slug(text: str) -> str:
    """GitHub's anchor (github-slugger): lower case, punctuation dropped, each space a hyphen."""
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LNM")
    return text.replace(" ", "-")


def mkdocs_slug(text: str) -> str:
    """MkDocs' anchor (Python-Markdown's toc.slugify): ASCII, word characters, runs of - and spaces as one -."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    """The anchors that work for path both on GitHub and on the MkDocs site."""
    github: set[str] = set()
    mkdocs: set[str] = set()
    seen_github: dict[str, int] = {}
    seen_mkdocs: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = HEADING.match(line)
        if fenced or not match:
            continue
        text = heading_text(match.group(2))
        for slug, seen, found, separator in (
            (github_slug(text), seen_github, github, "-"),
            (mkdocs_slug(text), seen_mkdocs, mkdocs, "_"),
        ):
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}{separator}{count}")
    return github & mkdocs


def broken_links(files: Iterable[Path], root: Path) -> list[str]:
    """One line per link that does not resolve: `file:line: target: why`."""
    problems: list[str] = []
    cache: dict[Path, set[str]] = {}
    for page in files:
        for number, line in prose_lines(page.read_text(encoding="utf-8")):
            for match in LINK.finditer(line):
                target = match.group(1)
                if SCHEME.match(target) or target.startswith("//"):
                    continue
                where = f"{page.relative_to(root)}:{number}: {target}"
                file_part, _, anchor = target.partition("#")
                linked = (page.parent / file_part).resolve() if file_part else page
                if file_part.startswith("/"):
                    problems.append(f"{where}: an absolute path; link relative to the page")
                    continue
                if not linked.exists():
                    problems.append(f"{where}: no such file")
                    continue
                if anchor:
                    if linked.suffix != ".md":
                        problems.append(f"{where}: an anchor into a file that is not Markdown")
                        continue
                    if linked not in cache:
                        cache[linked] = anchors(linked)
                    if anchor not in cache[linked]:
                        known = ", ".join(sorted(cache[linked])) or "none"
                        problems.append(f"{where}: no heading with the anchor #{anchor} (there are: {known})")
    return problems


def test_every_relative_link_resolves() -> None:
    found = [path for path in pages() if path.is_file()]
    assert REPO / "README.md" in found and REPO / "DEVELOPMENT.md" in found
    assert len(found) > 10, found
    problems = broken_links(found, REPO)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_a_missing_file_and_a_missing_anchor_are_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## What it does, and why\n\ntext\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n"
        "[ok](docs/other.md) [ok anchor](docs/other.md#what-it-does-and-why) [self](#title)\n"
        "[gone](docs/missing.md) and [bad anchor](docs/other.md#what-it-does) and ![img](docs/none.png)\n"
        "`[in code](docs/missing-too.md)` and [web](https://example.com/x.md)\n"
        "```\n[in a fence](docs/missing-three.md)\n```\n"
    )
    problems = broken_links([page], tmp_path)
    assert len(problems) == 3, problems
    assert "README.md:4: docs/missing.md: no such file" in problems
    assert any(p.startswith("README.md:4: docs/other.md#what-it-does: no heading") for p in problems)
    assert "README.md:4: docs/none.png: no such file" in problems


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Operating it: `featurerollout list` and the Grafana dashboard",
         "operating-it-featurerollout-list-and-the-grafana-dashboard"),
        ("Why the `kubernetes` client's `leaderelection`, and not Kopf's peering",
         "why-the-kubernetes-clients-leaderelection-and-not-kopfs-peering"),
        ("Stopping: a bounded exit after SIGTERM", "stopping-a-bounded-exit-after-sigterm"),
    ],
)
def test_the_slugs_agree_with_github_and_mkdocs(heading: str, slug: str) -> None:
    assert github_slug(heading_text(heading)) == slug
    assert mkdocs_slug(heading_text(heading)) == slug


def test_where_github_and_mkdocs_differ_neither_is_accepted_alone(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A -- B\n\n# Same\n\n# Same\n")
    # GitHub: a----b, same, same-1; MkDocs: a-b, same, same_1
    assert anchors(page) == {"same"}
