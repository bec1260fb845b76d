"""Every tutorial chapter runs (at small sizes), shows only figures it makes and commits, and quotes real kernels.

One test per chapter, discovered from tutorials/NN-*.md and tagged with a marker `chapterN`, so a reader
runs only their chapter (minitorch style):

    python -m pytest tests/test_tutorials.py -m chapter3      # or: -k 03-conv3x3
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tutorial_runner import (ROOT, TUTORIALS, TutorialError, chapter_number, check_cuda_excerpts,  # noqa: E402
                             check_figures, run_chapter)

CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]-*.md"))


def _chapter_params():
    return [pytest.param(p, id=p.stem, marks=getattr(pytest.mark, f"chapter{chapter_number(p)}"))
            for p in CHAPTERS]


@pytest.mark.parametrize("chapter", _chapter_params())
def test_chapter_runs(chapter, tmp_path):
    try:
        check_cuda_excerpts(chapter)
        produced = run_chapter(chapter, tmp_path, small=True)
        check_figures(chapter, produced)
        return
    except TutorialError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)  # outside the except: no "during handling..." chain in the report


def _linked_chapters(markdown):
    import re
    return {Path(link).name for link in re.findall(r"\]\((?:\./)?([0-9][0-9]-[^)#\s]+\.md)(?:#[^)]*)?\)", markdown)}


def test_table_of_contents_links_every_chapter():
    toc = TUTORIALS / "README.md"
    assert toc.exists(), "tutorials/README.md (the table of contents) is missing"
    linked = _linked_chapters(toc.read_text())
    present = {p.name for p in CHAPTERS}
    assert present - linked == set(), f"tutorials/README.md does not link these chapters: {sorted(present - linked)}"
    assert linked - present == set(), f"tutorials/README.md links chapters that do not exist: {sorted(linked - present)}"


def test_chapter_numbers_are_unique():
    numbers = [chapter_number(p) for p in CHAPTERS]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not duplicates, f"two chapters share a number: {duplicates}"


def test_root_readme_links_the_tutorials():
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    assert "tutorials/README.md" in text or "](tutorials/)" in text or "](tutorials)" in text, (
        "README.md at the repository root must link the tutorials' table of contents: add a line like "
        "`[The tutorials](tutorials/README.md)` (this link is the lead's to add)")
