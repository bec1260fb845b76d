"""Every tutorial chapter runs (at small sizes), shows only figures it makes and commits, and quotes real code.

One test per chapter, discovered from tutorials/NN-*.md (and NNx-*.md) and tagged with a marker `chapterN`
(`chapter3b` for 03b-*.md), so a reader runs only their chapter (minitorch style):

    python -m pytest tests/test_tutorials.py -m chapter3      # or: -k 03-conv3x3
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tutorial_runner import (ROOT, TUTORIALS, TutorialError, chapter_id, chapter_marker,  # noqa: E402
                             check_excerpts, check_figures, run_chapter)

CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]*-*.md"))


def _chapter_params():
    return [pytest.param(p, id=p.stem, marks=getattr(pytest.mark, chapter_marker(p))) for p in CHAPTERS]


@pytest.mark.parametrize("chapter", _chapter_params())
def test_chapter_runs(chapter, tmp_path):
    try:
        check_excerpts(chapter)
        produced = run_chapter(chapter, tmp_path, small=True)
        check_figures(chapter, produced)
        return
    except TutorialError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)  # outside the except: no "during handling..." chain in the report


def _linked_chapters(markdown):
    import re
    return {Path(link).name for link in re.findall(r"\]\((?:\./)?([0-9][0-9][a-z]?-[^)#\s]+\.md)(?:#[^)]*)?\)", markdown)}


def test_table_of_contents_links_every_chapter():
    toc = TUTORIALS / "README.md"
    assert toc.exists(), "tutorials/README.md (the table of contents) is missing"
    linked = _linked_chapters(toc.read_text())
    present = {p.name for p in CHAPTERS}
    assert present - linked == set(), f"tutorials/README.md does not link these chapters: {sorted(present - linked)}"
    assert linked - present == set(), f"tutorials/README.md links chapters that do not exist: {sorted(linked - present)}"


def test_chapter_numbers_are_unique_and_have_markers():
    numbers = [chapter_id(p) for p in CHAPTERS]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not duplicates, f"two chapters share a number: {duplicates}"
    declared = (ROOT / "pyproject.toml").read_text()
    missing = [chapter_marker(p) for p in CHAPTERS if f'"{chapter_marker(p)}:' not in declared]
    assert not missing, f"pyproject.toml's pytest markers lack {missing}"


@pytest.mark.parametrize("fence, body, problem", [
    ("cuda", "extern \"C\" __global__ void conv3x3_forward_v1(const real* x, int n) {", "not a verbatim excerpt"),
    ("python minunet/unet.py", "    def forward(self, x):\n# ...\n        return self.head(x)", None),
    ("python minunet/unet.py", "        skips = []\n# ...\n        size = x.shape[2:]", "not a verbatim"),
    ("text minunet/no_such_file.py", "x", "not a file of the repository"),
    ("text", "        skips = []\n        for i, level in enumerate(self.down):\n            x = level(x)",
     "without naming its file"),
    ("python", "skips = []\nfor i, level in enumerate(down):\n    x = level(x)", None),
    ("c", "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n    if (i >= count) return;\n    real sum = (real)0;",
     "without naming its file")])
def test_excerpts_are_checked_against_their_source(tmp_path, fence, body, problem):
    chapter = tmp_path / "99-excerpt.md"
    chapter.write_text(f"```{fence}\n{body}\n```\n")
    if problem is None:
        check_excerpts(chapter)
    else:
        with pytest.raises(TutorialError, match=problem):
            check_excerpts(chapter)


def test_root_readme_links_the_tutorials():
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    assert "tutorials/README.md" in text or "](tutorials/)" in text or "](tutorials)" in text, (
        "README.md at the repository root must link the tutorials' table of contents: add a line like "
        "`[The tutorials](tutorials/README.md)` (this link is the lead's to add)")


NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen".split()


def test_the_chapter_counts_in_the_text_are_the_chapters():
    """The table of contents' "Twelve chapters", 3b's "without renumbering chapters 4 to 11", and every
    "Four things to notice:" followed by that many bullets."""
    import re
    said = re.search(r"^(\w+) chapters\b", (TUTORIALS / "README.md").read_text(), re.M).group(1).lower()
    assert NUMBER_WORDS.index(said) == len(CHAPTERS), f"tutorials/README.md says {said} chapters; there are {len(CHAPTERS)}"
    last = max(int(re.match(r"\d+", p.name).group(0)) for p in CHAPTERS)
    for chapter in CHAPTERS:
        text = chapter.read_text()
        for m in re.finditer(r"chapters 4 to (\d+)", text):
            assert int(m.group(1)) == last, f"{chapter.name}: 'chapters 4 to {m.group(1)}', the last is {last}"
        for m in re.finditer(r"^(\w+) things to notice:\n\n((?:- .*\n(?:  .*\n)*)+)", text, re.M):
            bullets = len(re.findall(r"^- ", m.group(2), re.M))
            assert NUMBER_WORDS.index(m.group(1).lower()) == bullets, f"{chapter.name}: '{m.group(1)} things', {bullets}"


def test_the_gemm_chapter_explains_the_padding_it_uses():
    from minunet.ops.launching import GEMM_TILE
    text = next(p for p in CHAPTERS if p.name.startswith("03b-")).read_text()
    assert f"`MINUNET_GEMM_PAD` = {GEMM_TILE.MINUNET_GEMM_PAD} words" in text
    assert "| rung | what it adds | kernel |" in text  # the rungs' numbers are not the versions'
