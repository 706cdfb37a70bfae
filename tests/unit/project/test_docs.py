"""The docs against the code they describe: the README stays a first page, its test command is what CI runs, every
relative link resolves, and the reference tables (config keys, search flags) list every key with its real default.
Text only: no Ray, no torch."""
from __future__ import annotations

import json
import pathlib
import re

import pytest
import repo_root

from simmim_ray.config import Config
from simmim_ray.config_rules import FIELD_RULES
from simmim_ray.search import settings

ROOT = repo_root.REPO_PATH
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 150

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def text(path: pathlib.Path) -> str:
    return path.read_text(encoding="utf-8")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but - and _), spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def table_rows(doc: str) -> dict[str, list[str]]:
    """First cell (backticks stripped) -> the row's cells, for every markdown table row of `doc`."""
    rows = {}
    for line in doc.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows.setdefault(cells[0].strip("`"), cells)
    return rows


def value(cell: str):
    """A default as the docs write it (`0.04`, `[2, 2]`, `true`, `""`, `vit`) as the Python value it means."""
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        return cell


def test_readme_is_a_first_page():
    lines = text(README).splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_test_command_is_what_ci_runs():
    commands = [ln for ln in text(README).splitlines() if "pytest" in ln and ln.startswith("python3 -m venv")]
    assert len(commands) == 1, f"README.md should show one test command, found {commands}"
    ci = text(ROOT / ".ci" / "run").splitlines()
    assert commands[0] in ci, f"README's test command is not a line of .ci/run: {commands[0]!r}"


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", text(page))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT) if ROOT in dest.parents else dest})")
        elif anchor and dest.suffix == ".md":
            anchors = {slug(h) for h in HEADING.findall(FENCE.sub("", text(dest)))}
            if anchor not in anchors:
                broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_configuration_reference_lists_every_key_with_its_default():
    doc = text(ROOT / "docs" / "configuration.md")
    rows = table_rows(doc)
    defaults = Config().to_dict()
    missing, wrong = [], []
    for key in FIELD_RULES:
        if key not in rows:
            missing.append(key)
            continue
        want = defaults
        for part in key.split("."):
            want = want[part]
        got = value(rows[key][1].strip("`"))
        if got != want:
            wrong.append(f"{key}: docs say {rows[key][1]}, config.py has {want!r}")
    assert not missing, f"docs/configuration.md has no table row for {missing}"
    assert not wrong, f"docs/configuration.md defaults differ from config.py: {wrong}"


def test_search_flags_documented_with_their_defaults():
    """Every flag of `simmim-ray search` has a row in docs/search.md; a default written in backticks (the whole
    cell, or after `else`) is SearchSettings' default."""
    source = text(ROOT / "simmim_ray" / "cli" / "search.py")
    flags = re.findall(r'add_argument\(\s*"(--[a-z][a-z-]*)"', source)
    assert "--trials" in flags and "--resume" in flags  # the pattern still finds the flags
    rows = table_rows(text(ROOT / "docs" / "search.md"))
    doc = text(ROOT / "docs" / "search.md")
    undocumented = [f for f in flags if f not in rows and f"`{f}`" not in doc]
    assert not undocumented, f"docs/search.md does not mention {undocumented}"
    known = {"SPACE": settings.DEFAULT_SPACE, "--storage-path": settings.DEFAULT_ROOT}
    wrong = []
    for flag, cells in rows.items():
        m = re.fullmatch(r"`([^`]*)`", cells[1]) or re.search(r"else `([^`]*)`$", cells[1])
        if not m or not (flag in known or flag.startswith("--")):
            continue
        field = flag[2:].replace("-", "_")
        try:
            want = known[flag] if flag in known else settings.default(field)
        except (KeyError, StopIteration):
            continue  # not a SearchSettings field with a default
        if value(m.group(1)) != want:
            wrong.append(f"{flag}: docs say {m.group(1)}, SearchSettings has {want!r}")
    assert not wrong, f"docs/search.md defaults differ from search/settings.py: {wrong}"
