"""Run a tutorial chapter (tutorials/NN-name.md or NNx-name.md) the way a reader would, and check what it promises.

The rules a chapter follows:
- Every ```python fenced block runs, in order, in ONE namespace, with the current directory set to a
  fresh folder holding an empty `figures/` folder and the repository root on sys.path. Other fences
  (```cuda, ```c, ```text, ```bash) are not run.
- Excerpts of the project's code are checked against it, so the prose can never drift from the code. A fence
  whose first line names a file after the language, ```python minunet/unet.py or ```text minunet/unet.py, is
  an excerpt of that file (and is not run); ```cuda fences are excerpts of kernels/*.cu or *.cuh, with or
  without a file named. Each must appear verbatim (line for line, trailing spaces ignored) in its file. A
  line that is exactly `// ...` (cuda) or `# ...` (python, text) marks an elision: the pieces around it
  must appear in that order in one file. Code that is not an excerpt (a kernel written in the chapter, a
  sketch) goes in a ```c fence or a Python string; a ```python, ```text or ```c block that copies three
  lines in a row of minunet/ or kernels/ without being a checked excerpt is an error (it would drift
  unchecked).
- A chapter saves figures as `plt.savefig("figures/NN-name.png")` and shows them as
  `![alt](figures/NN-name.png)`. Every figure it shows must be produced by the run and committed under
  tutorials/figures/; every figure it produces must be shown, and its name must start with the chapter's
  NN- (or NNx-). Diagrams are drawn by tutorials/draw.py, which chapters import, so that the drawing code
  does not interrupt the lesson; a few lines that plot a chapter's own results may stay in the chapter.
- The test suite sets MINUNET_TUTORIAL_SMALL=1; a chapter with heavy work shrinks its sizes when it is set.

    python tests/tutorial_runner.py tutorials/03-*.md                 # run at full size, check figures
    python tests/tutorial_runner.py tutorials/03-*.md --small         # as the test suite runs it
    python tests/tutorial_runner.py tutorials/0*.md --write-figures   # full size, copy figures to tutorials/figures/

Errors name the chapter, the line of the failing block in the .md file, and the exception; tracebacks
point at lines of the .md file.
"""
import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"
FIGURES = TUTORIALS / "figures"
KERNEL_SOURCES = sorted((ROOT / "kernels").glob("*.cu")) + sorted((ROOT / "kernels").glob("*.cuh"))
PACKAGE_SOURCES = sorted((ROOT / "minunet").rglob("*.py"))
UNCHECKED = ("python", "text", "c")  # fences whose copies of the project's code the excerpt check looks for
SMALL_ENV = "MINUNET_TUTORIAL_SMALL"
ELISIONS = {"cuda": "// ...", "python": "# ...", "text": "# ..."}
COPIED_LINES = 3  # this many lines of minunet/ in a row make a block an excerpt that must name its file


class TutorialError(Exception):
    """A chapter failed: its code raised, or its figures or excerpts are not what it promises."""


class Block:
    """One fenced block: its language (the fence's first word), the file it quotes (the second word, or None),
    its text, the .md line of its first code line."""

    def __init__(self, language, text, line, source=None):
        self.language, self.text, self.line, self.source = language, text, line, source

    @property
    def runs(self):
        return self.language == "python" and self.source is None


def chapter_id(path):
    """'03' for 03-conv3x3.md, '03b' for 03b-...: a lettered chapter sorts after its number without renumbering."""
    match = re.match(r"(\d\d[a-z]?)-", Path(path).name)
    if not match:
        raise ValueError(f"a chapter file is named NN-short-name.md or NNx-short-name.md, got {Path(path).name}")
    return match.group(1)


def chapter_number(path):
    """The chapter's number without its letter: 3 for 03-... and 03b-..."""
    return int(chapter_id(path)[:2])


def chapter_marker(path):
    """The pytest marker of a chapter: chapter3 for 03-..., chapter3b for 03b-... (pyproject.toml lists them)."""
    return "chapter" + chapter_id(path).lstrip("0")


def parse_blocks(path):
    """All fenced blocks of a Markdown file, in order."""
    lines = Path(path).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            fence = re.match(r"`{3,}", stripped).group(0)
            words = stripped[len(fence):].split()
            language = words[0].lower() if words else ""
            source = words[1] if len(words) > 1 else None
            start = i + 1
            end = start
            while end < len(lines) and lines[end].strip() != fence:
                end += 1
            if end == len(lines):
                raise TutorialError(f"{Path(path).name}: the ``` fence opened at line {i + 1} is never closed")
            blocks.append(Block(language, "\n".join(lines[start:end]), start + 1, source))
            i = end + 1
        else:
            i += 1
    return blocks


def shown_figures(path):
    """Relative paths of the images a chapter shows with ![alt](figures/...)."""
    return re.findall(r"!\[[^\]]*\]\((figures/[^)\s]+)\)", Path(path).read_text())


# ---- excerpts -----------------------------------------------------------------------------------------
def _normalise(text):
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _pieces_in_order(pieces, source):
    position = 0
    for piece in pieces:
        found = source.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def _excerpt_sources(block, name):
    """{file name: normalised text} a block may quote: the file it names, else (cuda) every kernels/ file."""
    if block.source is None:
        return {p.name: _normalise(p.read_text()) for p in KERNEL_SOURCES}
    path = ROOT / block.source
    if not path.is_file():
        raise TutorialError(f"{name}: the ```{block.language} block at line {block.line} quotes {block.source}, "
                            f"which is not a file of the repository")
    return {block.source: _normalise(path.read_text())}


def _copied_lines(text):
    """The first line of a run of COPIED_LINES lines (stripped, not imports or decorators) found in a row in
    some minunet/*.py or kernels/ file, or None."""
    lines = [line.strip() for line in text.splitlines()]
    telling = [len(line) >= 8 and not line.startswith(("import ", "from ", "@", "#")) for line in lines]
    for path in PACKAGE_SOURCES + KERNEL_SOURCES:
        source = [line.strip() for line in path.read_text().splitlines()]
        starts = {}
        for i, line in enumerate(source):
            starts.setdefault(line, []).append(i)
        for i in range(len(lines) - COPIED_LINES + 1):
            if not all(telling[i:i + COPIED_LINES]):
                continue
            if any(source[j:j + COPIED_LINES] == lines[i:i + COPIED_LINES] for j in starts.get(lines[i], [])):
                return f"{lines[i]!r} (from {path.relative_to(ROOT)})"
    return None


def check_excerpts(path):
    """Every excerpt appears verbatim in its file (pieces split at elision lines, in order), and no block
    copies the project's code without being checked as an excerpt."""
    name = Path(path).name
    for block in parse_blocks(path):
        quoted = block.language == "cuda" or (block.source is not None and block.language in ELISIONS)
        if not quoted:
            copied = _copied_lines(block.text) if block.language in UNCHECKED else None
            if copied:
                raise TutorialError(
                    f"{name}: the ```{block.language} block at line {block.line} copies the project's code "
                    f"without naming its file: {copied}. Quote it as an excerpt (```python minunet/<file>.py, "
                    f"```text <file>, or ```cuda for kernels/) so that it is checked against the source.")
            continue
        elision = ELISIONS[block.language]
        pieces, current = [], []
        for line in block.text.splitlines():
            if line.strip() == elision:
                pieces.append("\n".join(current))
                current = []
            else:
                current.append(line)
        pieces.append("\n".join(current))
        pieces = [_normalise(p) for p in pieces if p.strip()]
        sources = _excerpt_sources(block, name)
        if not any(_pieces_in_order(pieces, text) for text in sources.values()):
            missing = next((p for p in pieces if not any(p in t for t in sources.values())), pieces[0])
            where = block.source or "kernels/*.cu"
            raise TutorialError(
                f"{name}: the ```{block.language} block at line {block.line} is not a verbatim excerpt of "
                f"{where} (copy it from the source, mark cuts with a `{elision}` line, or use a ```c fence or "
                f"an unnamed ```text fence for code that is not an excerpt). First piece not found:\n"
                f"{missing.splitlines()[0]!r}")


check_cuda_excerpts = check_excerpts  # the name it had when only ```cuda blocks were checked


# ---- running --------------------------------------------------------------------------------------------
@contextmanager
def _chapter_environment(workdir, small):
    old_cwd, old_path, old_env = os.getcwd(), list(sys.path), os.environ.get(SMALL_ENV)
    os.chdir(workdir)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if small:
        os.environ[SMALL_ENV] = "1"
    else:
        os.environ.pop(SMALL_ENV, None)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path
        if old_env is None:
            os.environ.pop(SMALL_ENV, None)
        else:
            os.environ[SMALL_ENV] = old_env
        try:
            import matplotlib.pyplot as plt
            plt.close("all")
        except ImportError:
            pass


def _chapter_traceback(exc, md_path):
    """The traceback from the chapter's own frames on (the runner's frames left out)."""
    frames = traceback.extract_tb(exc.__traceback__)
    keep = next((i for i, f in enumerate(frames) if f.filename == md_path), 0)
    lines = traceback.format_list(frames[keep:]) + traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def run_chapter(path, workdir, small=True):
    """Run every ```python block of the chapter at `path` with cwd = workdir; return the figures produced.

    workdir gets an empty figures/ folder first. small=True sets MINUNET_TUTORIAL_SMALL=1 (as the tests do).
    Raises TutorialError naming the chapter, the block's line in the .md and the exception.
    """
    path = Path(path).resolve()
    workdir = Path(workdir)
    (workdir / "figures").mkdir(parents=True, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    md_path = str(path)
    namespace = {"__name__": "__main__", "__file__": md_path}
    with _chapter_environment(workdir, small):
        for block in parse_blocks(path):
            if not block.runs:
                continue
            # Padding with blank lines makes the compiled code's line numbers the .md file's line numbers.
            try:
                code = compile("\n" * (block.line - 1) + block.text, md_path, "exec")
            except SyntaxError as e:
                raise TutorialError(f"{path.name}: the python block at line {block.line} does not compile: "
                                    f"{e.msg} (line {e.lineno})") from None
            try:
                exec(code, namespace)
            except BaseException as e:  # noqa: BLE001 -- SystemExit/KeyboardInterrupt from a chapter included
                if isinstance(e, KeyboardInterrupt):
                    raise
                raise TutorialError(f"{path.name}: the python block at line {block.line} raised "
                                    f"{type(e).__name__}: {e}\n{_chapter_traceback(e, md_path)}") from e
    return sorted((workdir / "figures").glob("*.png"))


def check_figures(path, produced):
    """Shown figures were produced and are committed; produced figures are shown and named NN-*."""
    path = Path(path)
    prefix = f"{chapter_id(path)}-"
    produced_names = {Path(p).name for p in produced}
    shown = [Path(f).name for f in shown_figures(path)]
    problems = []
    for name in shown:
        if name not in produced_names:
            problems.append(f"shows figures/{name}, but its code did not save it (plt.savefig(\"figures/{name}\"))")
        if not (FIGURES / name).exists():
            problems.append(f"shows figures/{name}, which is not committed in tutorials/figures/ "
                            f"(run: python tests/tutorial_runner.py tutorials/{path.name} --write-figures)")
    for name in sorted(produced_names):
        if name not in shown:
            problems.append(f"saves figures/{name} but never shows it (![...](figures/{name}))")
        if not name.startswith(prefix):
            problems.append(f"figure {name} should be named {prefix}*.png (figures of all chapters share a folder)")
    if problems:
        raise TutorialError(f"{path.name}: " + "; ".join(problems))


def write_figures(produced):
    FIGURES.mkdir(parents=True, exist_ok=True)
    for p in produced:
        shutil.copyfile(p, FIGURES / Path(p).name)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run tutorial chapters and check their figures and excerpts.")
    parser.add_argument("chapters", nargs="+", help="tutorials/NN-name.md files")
    parser.add_argument("--small", action="store_true", help=f"set {SMALL_ENV}=1, as the test suite does")
    parser.add_argument("--write-figures", action="store_true",
                        help="copy the figures the run produced into tutorials/figures/")
    args = parser.parse_args(argv)
    failed = 0
    for chapter in args.chapters:
        start = time.perf_counter()
        try:
            check_excerpts(chapter)
            with tempfile.TemporaryDirectory(prefix="minunet-tutorial-") as workdir:
                produced = run_chapter(chapter, workdir, small=args.small)
                if args.write_figures:
                    write_figures(produced)
                check_figures(chapter, produced)
                names = ", ".join(Path(p).name for p in produced) or "no figures"
        except TutorialError as e:
            failed += 1
            print(f"FAILED {chapter} ({time.perf_counter() - start:.1f} s)\n{e}\n", file=sys.stderr)
            continue
        written = " (written to tutorials/figures/)" if args.write_figures else ""
        print(f"ok     {chapter} ({time.perf_counter() - start:.1f} s{', small' if args.small else ''}): "
              f"{names}{written}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
