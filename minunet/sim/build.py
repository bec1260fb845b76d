"""Compile a .cu file for the simulator: find its kernels, generate a wrapper, run g++, cache the library.

The wrapper holds the .cu file's text with one change, `extern __shared__` becomes `extern` (`__shared__` is
`static`, cuda_sim.h), after a `#line` directive, so errors name the original file and line; it adds, per
kernel, an entry point that unpacks an array of argument pointers, plus the storage of dynamic shared memory,
which every `extern __shared__` array names (as on a GPU, they all start at the same byte).
The runtime (runtime.cpp) is compiled once into an object file and linked into every kernel library.
Each kernel's shared arrays and static shared-memory size come from the linker (shared_layout.py) and are
stored beside the library as JSON.

Cache: <minunet cache>/sim/<stem>-<defines>-<hash>.so, the hash taken over everything that can change the
result: the .cu source, every header it includes with "...", the simulator's own sources, the generated
wrapper, the compiler and its flags. Builds go to a temporary name and are renamed into place, so two
processes building the same file at once both end up with a complete library.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from .shared_layout import SharedLayout, kernel_layouts

SIM_DIR = Path(__file__).resolve().parent
SIM_SOURCES = ("cuda_sim.h", "counting.h", "fiber.h", "float_mode.h", "global_memory.h", "initcheck.h",
               "racecheck.h", "runtime.cpp", "shared_memory.h", "shared_layout.py")
CXX_FLAGS = ("-O2", "-std=c++17", "-fPIC", "-ffp-contract=off", "-fno-strict-aliasing", "-fvisibility=hidden",
             "-fstack-clash-protection", "-g1", "-gdwarf-4", "-w")
# -g1: line tables, to name the line of a crash; DWARF 4, since binutils 2.40 misnames the file of lines
# after an #include in GCC 12's DWARF 5 tables
# One section per function and variable, so the linker can tell which shared arrays a kernel reaches;
# no STB_GNU_UNIQUE symbols, which would make two libraries share one template's shared array.
SECTION_FLAGS = ("-ffunction-sections", "-fdata-sections", "-fno-gnu-unique")
# A counting build (counting.h): every load and store of kernel code becomes a call that counts it.
COUNT_FLAGS = ("-fsanitize=kernel-address", "-fasan-shadow-offset=0", "--param=asan-instrumentation-with-call-threshold=0",
               "--param=asan-globals=0", "--param=asan-stack=0", "-DMINUNET_SIM_COUNT=1")


class SimError(RuntimeError):
    """A kernel misbehaved in the simulator: a barrier or warp bug, a crash, a bad launch."""


class SimCompileError(SimError):
    """g++ rejected a kernel file (the message holds the compiler's output)."""


def _flag(name) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def sanitize_enabled() -> bool:
    return _flag("MINUNET_SIM_SANITIZE")


def gpu_math_enabled() -> bool:
    return _flag("MINUNET_SIM_GPU_MATH")


def racecheck_from_env() -> bool:
    return os.environ.get("MINUNET_SIM_RACECHECK", "") not in ("", "0")


def initcheck_from_env() -> bool:
    return _flag("MINUNET_SIM_INITCHECK")


def compiler() -> str:
    cxx = os.environ.get("CXX", "g++")
    if not shutil.which(cxx):
        raise SimCompileError(f"the simulator needs a C++ compiler; {cxx!r} was not found (set CXX)")
    return cxx


# Every access through a pointer checks its alignment, as a GPU does (a float4 at an address that is not a
# multiple of 16 faults there, and may not here); runtime.cpp's handler names the address, type and line.
# UBSan does this itself in the sanitize mode. For kernel code only: not the runtime, and not the link (the
# handler is the runtime's, not libubsan's).
ALIGNMENT_FLAGS = ("-fsanitize=alignment", "-DMINUNET_SIM_ALIGNMENT=1")
# The diagnosis build (trace=True): every comparison records where the thread is, so that a thread that
# returned early can be named with the line of its last one (launch.py reruns a failed launch in it).
TRACE_FLAGS = ("-fsanitize-coverage=trace-cmp", "-DMINUNET_SIM_TRACE=1")
# The initcheck mode (initcheck.h): every load and store of kernel code becomes a call to the runtime.
# GCC's kernel-address sanitizer has that form and needs no runtime library of its own; no stack
# instrumentation (locals are not watched) and no redzones around globals (the __shared__ arrays keep
# their sizes).
INITCHECK_FLAGS = ("-fsanitize=kernel-address", "--param=asan-instrumentation-with-call-threshold=0",
                   "--param=asan-stack=0", "--param=asan-globals=0", "-DMINUNET_SIM_INITCHECK=1")
KERNEL_ONLY_FLAGS = ("-fsanitize=thread", "-fsanitize=alignment", "-fsanitize-coverage=trace-cmp",
                     "-fsanitize=kernel-address")


def mode_flags(racecheck=False, gpu_math=None, trace=False, initcheck=False):
    """Flags of the build mode: the assembly fiber switch, or glibc ucontext (MINUNET_SIM_FIBERS=ucontext),
    or AddressSanitizer and UBSan, which need ucontext (MINUNET_SIM_SANITIZE=1), or the race checker's
    ThreadSanitizer (racecheck; runtime_object leaves -fsanitize=thread out of the scheduler), or the
    initcheck mode (initcheck); the alignment check outside the sanitize mode; plus GPU arithmetic (gpu_math;
    None: MINUNET_SIM_GPU_MATH=1)."""
    gpu_math = gpu_math_enabled() if gpu_math is None else gpu_math
    if initcheck and (racecheck or sanitize_enabled()):
        raise SimError(f"the initcheck mode and {'the race checker' if racecheck else 'MINUNET_SIM_SANITIZE=1'} "
                       f"cannot be combined (both instrument every memory access): run one, then the other")
    return (_fiber_and_sanitizer_flags(racecheck) + (() if sanitize_enabled() or trace else ALIGNMENT_FLAGS) +
            (INITCHECK_FLAGS if initcheck else ()) + (gpu_math_flags() if gpu_math else ()) +
            (TRACE_FLAGS if trace else ()))


def _fiber_and_sanitizer_flags(racecheck):
    if racecheck:
        if sanitize_enabled():
            raise SimError("the race checker and MINUNET_SIM_SANITIZE=1 cannot be combined (ThreadSanitizer and "
                           "AddressSanitizer exclude each other): run one, then the other")
        return ("-g", "-fsanitize=thread", "-DMINUNET_SIM_TSAN=1")
    if sanitize_enabled():
        # UBSan's first finding ends the process, as AddressSanitizer's does (its traps name the wrong lines).
        return ("-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                "-fno-omit-frame-pointer", "-DMINUNET_SIM_UCONTEXT=1")
    fibers = os.environ.get("MINUNET_SIM_FIBERS", "asm")
    if fibers not in ("asm", "ucontext"):
        raise ValueError(f"MINUNET_SIM_FIBERS must be 'asm' or 'ucontext', got {fibers!r}")
    return ("-DMINUNET_SIM_UCONTEXT=1",) if fibers == "ucontext" else ()


def cpu_has_fma() -> bool:
    """x86-64 CPUs without the FMA extension exist (before 2013); aarch64 always has fused multiply-add."""
    if os.uname().machine != "x86_64":
        return True
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and "fma" in line.split() for line in cpuinfo)
    except OSError:
        return False


def gpu_math_flags():
    """As CuPy compiles: a*b+c contracted to fused multiply-adds, float denormals flushed (float_mode.h)."""
    flags = ("-DMINUNET_SIM_GPU_MATH=1", "-ffp-contract=fast")
    if os.uname().machine != "x86_64":
        return flags
    if not cpu_has_fma():
        warnings.warn("MINUNET_SIM_GPU_MATH=1: this CPU has no FMA instructions, so multiply-adds are not fused "
                      "(only flush-to-zero is as on a GPU)", stacklevel=3)
        return flags
    return flags + ("-mfma",)  # x86-64's baseline has no FMA: without it contraction does nothing


# ---- reading the source ---------------------------------------------------------------------------------
def strip_comments(source: str) -> str:
    """Source without // and /* */ comments (string literals kept), so commented-out kernels are not found."""
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"', re.S)
    return pattern.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", source)


_QUALIFIERS = r"(?:(?:__\w+__|static|inline)\b(?:\s*\([^()]*\))?\s*)*"
_KERNEL = re.compile(r'extern\s*"C"\s*(' + _QUALIFIERS + r')void\s+(' + _QUALIFIERS + r')(\w+)\s*\(([^)]*)\)')
_EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+([^;{}]*?)\s*\b(\w+)\s*\[\s*\]\s*;")
_ALIGN = re.compile(r"__align__\s*\(\s*\d+\s*\)|alignas\s*\(\s*\d+\s*\)")
_EXTERN_SHARED_KEYWORDS = re.compile(r"\bextern(\s+)__shared__\b")
_LAUNCH_BOUNDS = re.compile(r"__launch_bounds__\s*(\([^()]*\))")
_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def find_kernels(source: str) -> dict:
    """{kernel name: [parameter names]} of every `extern "C" __global__ void name(params)`."""
    kernels = {}
    for m in _KERNEL.finditer(strip_comments(source)):
        if "__global__" not in m.group(1) + m.group(2):
            continue
        params = [p.strip() for p in m.group(4).split(",")]
        names = []
        for i, p in enumerate(params):
            if p in ("", "void"):
                continue
            words = re.findall(r"\w+", re.sub(r"\[[^\]]*\]", "", p))
            names.append(words[-1] if len(words) > 1 else f"#{i}")
        kernels[m.group(3)] = names
    return kernels


# `extern __shared__ T name[];  // minunet: aliases`: the author means this array to share its bytes with the
# kernel's other extern __shared__ arrays (on a GPU all of them start at the same byte).
_ALIASED = re.compile(r"extern\s+__shared__[^;{}]*?\b(\w+)\s*\[\s*\]\s*;[ \t]*(?://|/\*)\s*minunet:\s*aliases\b")


def find_aliased_on_purpose(source: str) -> set:
    """Names of the extern __shared__ arrays whose declaration ends with the comment `// minunet: aliases`."""
    return set(_ALIASED.findall(source))


def find_extern_shared(source: str, path) -> dict:
    """{name: element type} of the `extern __shared__ T name[];` declarations."""
    found = {}
    for m in _EXTERN_SHARED.finditer(strip_comments(source)):
        ctype = " ".join(_ALIGN.sub(" ", m.group(1)).split())
        name = m.group(2)
        if found.get(name, ctype) != ctype:
            raise SimCompileError(f"{path}: extern __shared__ array {name!r} is declared with two element types "
                                  f"({found[name]} and {ctype}); the simulator needs one")
        found[name] = ctype
    return found


def included_files(path: Path, include_dirs) -> list:
    """Every file reached through #include "..." from path, resolved like the compiler (own folder first)."""
    seen, todo = [], [path]
    while todo:
        current = todo.pop()
        for name in _INCLUDE.findall(current.read_text()):
            for folder in (current.parent, *include_dirs):
                candidate = (Path(folder) / name).resolve()
                if candidate.is_file():
                    if candidate not in seen:
                        seen.append(candidate)
                        todo.append(candidate)
                    break
    return seen


def find_launch_bounds(source: str) -> dict:
    """{kernel name: "(arguments)" of its __launch_bounds__, "()" without one}, for the compiler to evaluate."""
    bounds = {}
    for m in _KERNEL.finditer(strip_comments(source)):
        found = _LAUNCH_BOUNDS.search(m.group(1) + " " + m.group(2))
        bounds[m.group(3)] = found.group(1) if found else "()"
    return bounds


def without_extern_shared(source: str) -> str:
    """The source with `extern __shared__` turned into `extern` (line numbers kept)."""
    return _EXTERN_SHARED_KEYWORDS.sub("extern", source)


_SHARED_DECLARATION = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|'
                                 r"(?P<extern>\bextern\s+)?\b__shared__\b(?P<body>[^;{}]*);", re.S)
_DECLARATOR = re.compile(r"^(?P<type>.*?)(?P<stars>[*&\s]*)\b(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)$",
                         re.S)


def _split_top_level(text):
    """text split at the commas outside brackets: `a[N], b[f(1, 2)]` -> `a[N]`, ` b[f(1, 2)]`."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "([<":
            depth += 1
        elif c in ")]>":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def shared_through_pointers(source: str, path) -> str:
    """The initcheck mode: each `__shared__ T name[...];` becomes a static array under another name and a
    reference `name` to it through a pointer the compiler cannot see through (cuda_sim.h's launder), on the
    same line. GCC's instrumentation skips accesses it can prove in bounds of a static variable (a shared
    scalar, tile[0]); through the reference, every access is checked (initcheck.h)."""
    def rewrite(m):
        if m.group("body") is None or m.group("extern"):
            return m.group(0)  # a comment, a string, or dynamic shared memory (always checked)
        out = []
        for i, text in enumerate(_split_top_level(m.group("body"))):
            d = _DECLARATOR.match(text.strip())
            if i == 0 and d:
                base_type = d.group("type")
            if not d or (i > 0 and d.group("type").strip()):
                raise SimCompileError(f"{path}: the initcheck mode cannot read the declaration "
                                      f"`__shared__{m.group('body')};`")
            name, storage = d.group("name"), f"minunet_sim_shared_{d.group('name')}"
            out.append(f"__shared__ {base_type.strip()} {d.group('stars').strip()}{storage}{d.group('dims')}; "
                       f"auto& {name} = *::minunet_sim::launder(&{storage});")
        return " ".join(out)
    return _SHARED_DECLARATION.sub(rewrite, source)


def generate_wrapper(cu_path: Path, source: str, kernels: dict, extern_shared: dict, launch_bounds: dict,
                     initcheck=False) -> str:
    source = without_extern_shared(source)
    lines = [f"// Generated by minunet.sim for {cu_path.name}: the kernels, storage for extern __shared__ arrays,",
             "// one entry point per kernel. Compiled with -include cuda_sim.h.",
             f'#line 1 "{cu_path}"',
             shared_through_pointers(source, cu_path) if initcheck else source,
             '#line 1 "minunet_sim_wrapper.cpp"']
    if extern_shared:
        lines.append("MINUNET_SIM_DYNAMIC_SHARED_STORAGE")
    lines += [f"MINUNET_SIM_DYNAMIC_SHARED({ctype}, {name})" for name, ctype in sorted(extern_shared.items())]
    lines += [f"MINUNET_SIM_KERNEL({name}, {launch_bounds[name]})" for name in kernels]
    return "\n".join(lines) + "\n"


# ---- compiling ------------------------------------------------------------------------------------------
def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _run(command, what):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SimCompileError(f"compiling {what} for the simulator failed:\n$ {' '.join(map(str, command))}\n"
                              f"{result.stdout}{result.stderr}")


def _build_atomically(target: Path, command_for):
    """Run command_for(temp_path), then rename the result to target (atomic on one file system)."""
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=target.stem + ".", suffix=".tmp" + target.suffix)
    os.close(fd)
    try:
        command, what = command_for(temp)
        _run(command, what)
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _sim_sources_digest():
    return _digest(*[(SIM_DIR / name).read_bytes() for name in SIM_SOURCES])


def runtime_object(cxx: str, racecheck=False, gpu_math=None, trace=False, initcheck=False) -> Path:
    """runtime.cpp compiled once per (simulator sources, compiler, flags). Never with -fsanitize=thread: the
    scheduler's own bookkeeping is no race, and it tells TSan about the threads' orderings itself."""
    flags = tuple(f for f in CXX_FLAGS + mode_flags(racecheck, gpu_math, trace, initcheck)
                  if f not in KERNEL_ONLY_FLAGS)
    key = _digest(_sim_sources_digest(), cxx, flags)
    target = paths.cache_dir() / "sim" / f"runtime-{key}.o"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _build_atomically(target, lambda out: (
            [cxx, *flags, "-I", str(SIM_DIR), "-c", str(SIM_DIR / "runtime.cpp"), "-o", out], "runtime.cpp"))
    return target


@dataclass
class KernelInfo:
    params: list          # parameter names, from the source
    shared: SharedLayout  # the shared arrays it reaches (shared_layout.py)
    aliased: set          # extern __shared__ arrays declared `// minunet: aliases` (find_aliased_on_purpose)


def build_library(cu_path, defines=None, include_dirs=None, racecheck=False, gpu_math=None, trace=False,
                  initcheck=False, counting=False):
    """Compile cu_path with defines {NAME: value} (racecheck: for the race checker; gpu_math: with GPU
    arithmetic, None: MINUNET_SIM_GPU_MATH; trace: the diagnosis build; initcheck: the initcheck mode; counting:
    with the memory-access counter of counting.h, not with the race checker); returns (library path,
    {kernel: KernelInfo})."""
    cu_path = Path(cu_path).resolve()
    if not cu_path.is_file():
        raise FileNotFoundError(f"kernel source {cu_path} not found")
    defines = dict(defines or {})
    include_dirs = [Path(d).resolve() for d in (include_dirs or [])]
    source = cu_path.read_text()
    headers = included_files(cu_path, include_dirs)
    for header in headers:
        if _EXTERN_SHARED.search(strip_comments(header.read_text())):
            raise SimCompileError(f"{header}: the simulator needs `extern __shared__` arrays declared in the .cu "
                                  f"file itself, not in a header it includes")
    # A header may define kernels too (gemm_tile.cuh's gemm_split_k_reduce): they belong to every file that
    # includes it, as they do in the module NVRTC compiles.
    whole = "\n".join([source] + [h.read_text() for h in headers])
    kernels = find_kernels(whole)
    if not kernels:
        raise SimCompileError(f'{cu_path}: no `extern "C" __global__ void name(...)` kernel found')
    extern_shared = find_extern_shared(whole, cu_path)
    wrapper = generate_wrapper(cu_path, source, kernels, extern_shared, find_launch_bounds(whole), initcheck)

    # The initcheck mode rewrites the __shared__ declarations of the headers too: copies beside the wrapper,
    # which its #include "..." finds first (headers included through a subfolder keep the originals).
    header_copies = {h.name: f'#line 1 "{h}"\n' + shared_through_pointers(h.read_text(), h)
                     for h in headers if initcheck and "__shared__" in h.read_text()}

    cxx = compiler()
    flags = (*CXX_FLAGS, *mode_flags(racecheck, gpu_math, trace, initcheck), *(COUNT_FLAGS if counting else ()),
             "-DMINUNET_SIM",
             *[f"-D{k}" if v is None else f"-D{k}={v}" for k, v in sorted(defines.items())],
             "-I", str(cu_path.parent), *[a for d in include_dirs for a in ("-I", str(d))],
             "-include", str(SIM_DIR / "cuda_sim.h"))
    key = _digest(source, *[(h, h.read_bytes()) for h in headers], _sim_sources_digest(), wrapper, cxx, flags,
                  SECTION_FLAGS, *sorted(header_copies.items()))
    tag = "-".join(re.sub(r"\W", "", str(v if v is not None else k)) for k, v in sorted(defines.items()))
    target = paths.cache_dir() / "sim" / f"{cu_path.stem}{'-' + tag if tag else ''}-{key}.so"
    layout_file = target.with_suffix(".json")
    if not (target.is_file() and layout_file.is_file()):
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=target.stem + ".") as scratch:
            runtime = runtime_object(cxx, racecheck, gpu_math, trace, initcheck)
            for name, text in header_copies.items():
                (Path(scratch) / name).write_text(text)
            _compile(cxx, flags, runtime, wrapper, cu_path, kernels, set(extern_shared), Path(scratch), target)
    layouts = json.loads(layout_file.read_text())
    aliased = find_aliased_on_purpose(whole)
    return target, {name: KernelInfo(params, SharedLayout(**layouts[name]), aliased)
                    for name, params in kernels.items()}


def _compile(cxx, flags, runtime, wrapper, cu_path, kernels, extern_names, scratch: Path, target: Path):
    """Wrapper -> object (a section per function and variable, for shared_layout.py) -> library + layouts.
    Both land in target's folder by rename, the JSON first: a library on disk always has its layouts."""
    wrapper_path, obj, library = scratch / "wrapper.cpp", scratch / "wrapper.o", scratch / "library.so"
    wrapper_path.write_text(wrapper)
    _run([cxx, *flags, *SECTION_FLAGS, "-c", str(wrapper_path), "-o", str(obj)], cu_path.name)
    link_flags = [f for f in flags if f not in ("-fsanitize=alignment", "-fsanitize=kernel-address")]
    _run([cxx, *link_flags, "-shared", str(obj), str(runtime), "-o", str(library)], cu_path.name)
    # AddressSanitizer's constructor registers every global, so all would look reachable: ask the linker
    # about an uninstrumented object (same arrays, same names).
    reach_obj = obj
    if any(f.startswith("-fsanitize=address") for f in flags):
        unsanitized = [f for f in flags if not f.startswith("-fsanitize")]
        reach_obj = scratch / "unsanitized.o"
        _run([cxx, *unsanitized, *SECTION_FLAGS, "-c", str(wrapper_path), "-o", str(reach_obj)], cu_path.name)
    linker = subprocess.run([cxx, "-print-prog-name=ld"], capture_output=True, text=True).stdout.strip() or "ld"
    layouts = kernel_layouts(reach_obj, library, kernels, extern_names, linker, scratch / "kernel.o")
    (scratch / "layouts.json").write_text(json.dumps({k: vars(v) for k, v in layouts.items()}))
    os.replace(scratch / "layouts.json", target.with_suffix(".json"))
    os.replace(library, target)
