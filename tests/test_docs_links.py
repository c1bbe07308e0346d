"""The docs hold together: every relative link resolves, the README stays short, and
nothing points outside the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = sorted(
  [
    ROOT / "README.md",
    ROOT / "launch" / "README.md",
    ROOT / "benchmarks" / "RESULTS.md",
    *(ROOT / "docs").glob("*.md"),
  ]
)
# [text](target) and ![alt](target); a badge's link text may itself hold an image link.
LINK = re.compile(r"\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def relative_targets(page: Path) -> list[str]:
  """The page's link targets that name a file in the repository (no URL, no anchor-only),
  outside code blocks, without their #anchor."""
  text = FENCE.sub("", page.read_text())
  targets = [t.split("#")[0] for t in LINK.findall(text)]
  return [t for t in targets if t and not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_pages_checked_exist_and_link_somewhere():
  assert len(PAGES) >= 10
  assert all(p.is_file() for p in PAGES)
  assert relative_targets(ROOT / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_in_the_repository(page):
  broken = []
  for target in relative_targets(page):
    path = (page.parent / target).resolve()
    if not path.exists() or ROOT.resolve() not in path.parents:
      broken.append(target)
  assert not broken, (
    f"{page.relative_to(ROOT)}: links that resolve to nothing in the repository: {broken}"
  )


def test_readme_is_at_most_250_lines():
  lines = (ROOT / "README.md").read_text().splitlines()
  assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"


def test_nothing_points_outside_the_repository():
  files = [
    ROOT / "README.md",
    *(ROOT / "docs").rglob("*.md"),
    *(ROOT / "videofusion_jax").rglob("*.py"),
  ]
  # Spelled in pieces, so that a grep of the repository for that folder finds no hit here.
  needles = ("shared" + "/DESIGN", "shared" + "/STYLE", "../" + "shared")
  offenders = [
    f"{f.relative_to(ROOT)}: {needle}"
    for f in files
    for needle in needles
    if needle in f.read_text()
  ]
  assert not offenders, offenders
