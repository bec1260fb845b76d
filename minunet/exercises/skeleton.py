"""A learner's starting file, derived from the solution's source in kernels/ (never a second copy).

A header's skeleton (common.cuh) is the whole header with the bodies to write replaced by a TODO: the other
kernels include it. From a kernels/<stem>.cu file it keeps: the title paragraph of the file's header comment
and the header entries the exercise names; the #include and #define lines; the functions to write, with the
comment above each, their signature and a TODO for a body; and helpers copied whole (a kernel that only calls
the function to write, math helpers).
"""
import re
import textwrap

from .. import paths

_COMMENT = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"', re.S)
_ENTRY_START = re.compile(r"\w+(?:, \w+)*:\s")  # "forward: ...", "relu_forward_v1, relu_backward_v1: ..."


class SkeletonError(RuntimeError):
    """The solution's source no longer has what an exercise expects (a function or header entry renamed)."""


def _mask_comments(source):
    """The source with comments (and strings) blanked, same length and line breaks, for brace matching."""
    return _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)


def _matching(masked, start, open_char, close_char):
    """Index just past the bracket that closes the one at masked[start]."""
    depth = 0
    for i in range(start, len(masked)):
        if masked[i] == open_char:
            depth += 1
        elif masked[i] == close_char:
            depth -= 1
            if depth == 0:
                return i + 1
    raise SkeletonError(f"unbalanced {open_char}{close_char} from offset {start}")


def function_definitions(source, name):
    """[(start, body_open, end)] of every definition of `name`: start is where its declaration's first line
    begins (the comment above not included), body_open the index of its `{`, end just past its `}`."""
    masked = _mask_comments(source)
    found = []
    for m in re.finditer(rf"\b{re.escape(name)}\s*\(", masked):
        close = _matching(masked, m.end() - 1, "(", ")")
        after = masked[close:].lstrip()
        if not after.startswith("{"):
            continue  # a call or a declaration, not a definition
        body_open = masked.index("{", close)
        line_start = source.rfind("\n", 0, m.start()) + 1
        # Declaration lines above the name's line: `template <...>`, `extern "C" __global__ void __launch_bounds__(...)`
        while line_start > 0:
            previous = source.rfind("\n", 0, line_start - 1) + 1
            line = masked[previous:line_start - 1].strip()
            if not line or line.endswith(("}", ";")) or line.startswith("#"):
                break
            line_start = previous
        found.append((line_start, body_open, _matching(masked, body_open, "{", "}")))
    if not found:
        raise SkeletonError(f"no definition of {name}")
    return found


def definitions_to_write(source, name):
    """function_definitions(source, name) less the overloads that only call the function to write (kept whole)."""
    masked = _mask_comments(source)
    return [d for d in function_definitions(source, name)
            if not re.search(rf"\b{re.escape(name)}\s*[(<]", masked[d[1]:d[2]])]


def comment_above(source, start):
    """The // lines directly above offset start (the start of a line), or ''."""
    lines = source[:start].splitlines(keepends=True)
    kept = []
    while lines and lines[-1].lstrip().startswith("//"):
        kept.insert(0, lines.pop())
    return "".join(kept)


def header_entries(source, markers):
    """The title paragraph of the file's leading // comment, and each entry starting with a marker: the
    marker's line and the lines after it up to a blank // line or the next `name:` entry as indented."""
    header = []
    for line in source.splitlines():
        if not line.startswith("//"):
            break
        header.append(line)
    text = [line[2:] for line in header]
    indent = [len(t) - len(t.lstrip()) for t in text]
    starts = [0]  # the title paragraph
    for marker in markers:
        first = next((i for i, t in enumerate(text) if t.strip().startswith(marker)), None)
        if first is None:
            raise SkeletonError(f"the header comment has no entry starting with {marker!r}")
        starts.append(first)
    picked = []
    for first in starts:
        last = first + 1
        while last < len(text) and text[last].strip() and not (
                indent[last] <= indent[first] and _ENTRY_START.match(text[last].strip())):
            last += 1
        picked += header[first:last] + ["//"]
    return "\n".join(picked[:-1]) + "\n"


def preprocessor_lines(source, code):
    """The #include lines of the file, and the #define lines whose name appears in code (with their comments)."""
    kept = []
    for line in source.splitlines():
        define = re.match(r"\s*#\s*define\s+(\w+)", line)
        if re.match(r"\s*#\s*include\b", line) or (define and re.search(rf"\b{define.group(1)}\b", code)):
            kept.append(line + "\n")
    return "".join(kept)


def _todo(name, path):
    return f"{{\n    // TODO: write {name} (the solution, once you are done: kernels/{path.name})\n}}\n"


def _header_skeleton(exercise, source, path):
    """The whole header, each body to write replaced by a TODO."""
    cuts = sorted((body_open, end, name) for name in exercise.write
                  for _, body_open, end in definitions_to_write(source, name))
    text, done = "", 0
    for body_open, end, name in cuts:
        text += source[done:body_open] + _todo(name, path).rstrip("\n")
        done = end
    return text + source[done:]


def make_skeleton(exercise, solved=False):
    """The text of the learner's starting file for an exercise (catalog.Exercise); solved: with the solution's
    bodies instead of the TODOs (what a learner who solved it has; the tests mutate it)."""
    path = paths.kernels_dir() / exercise.file
    source = path.read_text()
    banner = (textwrap.fill(f"Exercise '{exercise.name}' ({exercise.chapter}): {exercise.summary}", 110,
                            initial_indent="// ", subsequent_indent="// ") + "\n"
              f"// Write the bodies marked TODO, then check them on the CPU simulator:\n"
              f"//     python -m minunet.exercises check {exercise.name}\n")
    if exercise.is_header:
        return banner + "//\n" + (source if solved else _header_skeleton(exercise, source, path))
    pieces = []  # (offset in the source, text), put back in source order
    solution = ""  # the code of the functions, for the #defines they use
    for name in exercise.write:
        for start, body_open, end in definitions_to_write(source, name):
            solution += source[start:end]
            body = source[body_open:end] + "\n" if solved else _todo(name, path)
            pieces.append((start, comment_above(source, start) + source[start:body_open] + body))
    for name in exercise.keep:
        for start, body_open, end in function_definitions(source, name):
            pieces.append((start, comment_above(source, start) + source[start:end] + "\n"))
    banner += f"// What kernels/{path.name} says about them:\n"
    body = "\n".join(text for _, text in sorted(pieces))
    return (banner + "//\n" + header_entries(source, exercise.header) + "\n"
            + preprocessor_lines(source, solution + body) + "\n" + body)


_BARRIER = re.compile(r"\b__syncthreads\s*\(|\bminunet_block_sum\s*[(<]")  # a barrier, or a call that has some


def early_returns(exercise, path):
    """The line numbers of the `return`s in the learner's file (path) that come before the last barrier of
    their function, among the functions the learner writes: a thread leaving there skips that barrier."""
    try:
        source = open(path).read()
    except OSError:
        return []
    masked = _mask_comments(source)
    lines = []
    for name in exercise.write:
        try:
            definitions = function_definitions(source, name)
        except SkeletonError:
            continue
        for _, body_open, end in definitions:
            barriers = [m.start() for m in _BARRIER.finditer(masked, body_open, end)]
            if not barriers:
                continue
            lines += [masked.count("\n", 0, m.start()) + 1
                      for m in re.finditer(r"\breturn\b", masked[:barriers[-1]])
                      if m.start() > body_open]
    return sorted(set(lines))
