"""Compile a .cu file for the simulator: find its kernels, generate a wrapper, run g++, cache the library.

The wrapper `#include`s the unchanged .cu file after cuda_sim.h and adds, per kernel, an entry point that
unpacks an array of argument pointers, plus storage for each `extern __shared__` array. The runtime
(runtime.cpp) is compiled once into an object file and linked into every kernel library.

Cache: <minunet cache>/sim/<stem>-<defines>-<hash>.so, the hash taken over everything that can change the
result: the .cu source, every header it includes with "...", the simulator's own sources, the generated
wrapper, the compiler and its flags. Builds go to a temporary name and are renamed into place, so two
processes building the same file at once both end up with a complete library.
"""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import paths

SIM_DIR = Path(__file__).resolve().parent
SIM_SOURCES = ("cuda_sim.h", "fiber.h", "racecheck.h", "runtime.cpp")
CXX_FLAGS = ("-O2", "-std=c++17", "-fPIC", "-ffp-contract=off", "-fno-strict-aliasing", "-fvisibility=hidden",
             "-fstack-clash-protection", "-g1", "-w")  # -g1: line tables, to name the line of a crash


class SimError(RuntimeError):
    """A kernel misbehaved in the simulator: a barrier or warp bug, a crash, a bad launch."""


class SimCompileError(SimError):
    """g++ rejected a kernel file (the message holds the compiler's output)."""


def sanitize_enabled() -> bool:
    return os.environ.get("MINUNET_SIM_SANITIZE", "") not in ("", "0")


def racecheck_from_env() -> bool:
    return os.environ.get("MINUNET_SIM_RACECHECK", "") not in ("", "0")


def compiler() -> str:
    cxx = os.environ.get("CXX", "g++")
    if not shutil.which(cxx):
        raise SimCompileError(f"the simulator needs a C++ compiler; {cxx!r} was not found (set CXX)")
    return cxx


def mode_flags(racecheck=False):
    """Flags of the build mode: the assembly fiber switch, or glibc ucontext (MINUNET_SIM_FIBERS=ucontext),
    or AddressSanitizer, which needs ucontext (MINUNET_SIM_SANITIZE=1), or the race checker's
    ThreadSanitizer (racecheck; runtime_object leaves -fsanitize=thread out of the scheduler)."""
    if racecheck:
        if sanitize_enabled():
            raise SimError("the race checker and MINUNET_SIM_SANITIZE=1 cannot be combined (ThreadSanitizer and "
                           "AddressSanitizer exclude each other): run one, then the other")
        # -gdwarf-4: addr2line (which names the lines of a race) misnames some files in g++ 12's DWARF 5
        return ("-g", "-gdwarf-4", "-fsanitize=thread", "-DMINUNET_SIM_TSAN=1")
    if sanitize_enabled():
        return ("-g", "-fsanitize=address", "-fno-omit-frame-pointer", "-DMINUNET_SIM_UCONTEXT=1")
    fibers = os.environ.get("MINUNET_SIM_FIBERS", "asm")
    if fibers not in ("asm", "ucontext"):
        raise ValueError(f"MINUNET_SIM_FIBERS must be 'asm' or 'ucontext', got {fibers!r}")
    return ("-DMINUNET_SIM_UCONTEXT=1",) if fibers == "ucontext" else ()


# ---- reading the source ---------------------------------------------------------------------------------
def strip_comments(source: str) -> str:
    """Source without // and /* */ comments (string literals kept), so commented-out kernels are not found."""
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"', re.S)
    return pattern.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", source)


_QUALIFIERS = r"(?:(?:__\w+__|static|inline)\b(?:\s*\([^()]*\))?\s*)*"
_KERNEL = re.compile(r'extern\s*"C"\s*(' + _QUALIFIERS + r')void\s+(' + _QUALIFIERS + r')(\w+)\s*\(([^)]*)\)')
_EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+([^;{}]*?)\s*\b(\w+)\s*\[\s*\]\s*;")
_ALIGN = re.compile(r"__align__\s*\(\s*\d+\s*\)|alignas\s*\(\s*\d+\s*\)")
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


def generate_wrapper(cu_path: Path, kernels: dict, extern_shared: dict) -> str:
    lines = [f"// Generated by minunet.sim for {cu_path.name}: the kernels, storage for extern __shared__ arrays,",
             "// one entry point per kernel. Compiled with -include cuda_sim.h.",
             f'#include "{cu_path}"',
             "MINUNET_SIM_MODULE()"]
    lines += [f"MINUNET_SIM_DYNAMIC_SHARED({ctype}, {name})" for name, ctype in sorted(extern_shared.items())]
    lines += [f"MINUNET_SIM_KERNEL({name})" for name in kernels]
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


def runtime_object(cxx: str, racecheck=False) -> Path:
    """runtime.cpp compiled once per (simulator sources, compiler, flags). Never with -fsanitize=thread: the
    scheduler's own bookkeeping is no race, and it tells TSan about the threads' orderings itself."""
    flags = tuple(f for f in CXX_FLAGS + mode_flags(racecheck) if f != "-fsanitize=thread")
    key = _digest(_sim_sources_digest(), cxx, flags)
    target = paths.cache_dir() / "sim" / f"runtime-{key}.o"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _build_atomically(target, lambda out: (
            [cxx, *flags, "-I", str(SIM_DIR), "-c", str(SIM_DIR / "runtime.cpp"), "-o", out], "runtime.cpp"))
    return target


def build_library(cu_path, defines=None, include_dirs=None, racecheck=False):
    """Compile cu_path with defines {NAME: value} (racecheck: for the race checker); returns
    (library path, {kernel: [param names]})."""
    cu_path = Path(cu_path).resolve()
    if not cu_path.is_file():
        raise FileNotFoundError(f"kernel source {cu_path} not found")
    defines = dict(defines or {})
    include_dirs = [Path(d).resolve() for d in (include_dirs or [])]
    source = cu_path.read_text()
    headers = included_files(cu_path, include_dirs)
    # A header may define kernels too (gemm_tile.cuh's gemm_split_k_reduce): they belong to every file that
    # includes it, as they do in the module NVRTC compiles.
    whole = "\n".join([source] + [h.read_text() for h in headers])
    kernels = find_kernels(whole)
    if not kernels:
        raise SimCompileError(f'{cu_path}: no `extern "C" __global__ void name(...)` kernel found')
    wrapper = generate_wrapper(cu_path, kernels, find_extern_shared(whole, cu_path))

    cxx = compiler()
    flags = (*CXX_FLAGS, *mode_flags(racecheck), "-DMINUNET_SIM",
             *[f"-D{k}" if v is None else f"-D{k}={v}" for k, v in sorted(defines.items())],
             "-I", str(cu_path.parent), *[a for d in include_dirs for a in ("-I", str(d))],
             "-include", str(SIM_DIR / "cuda_sim.h"))
    key = _digest(source, *[(h, h.read_bytes()) for h in headers], _sim_sources_digest(), wrapper, cxx, flags)
    tag = "-".join(re.sub(r"\W", "", str(v if v is not None else k)) for k, v in sorted(defines.items()))
    target = paths.cache_dir() / "sim" / f"{cu_path.stem}{'-' + tag if tag else ''}-{key}.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        runtime = runtime_object(cxx, racecheck)

        written = []

        def command(out):
            wrapper_path = Path(out).with_suffix(".cpp")
            wrapper_path.write_text(wrapper)
            written.append(wrapper_path)
            return [cxx, *flags, "-shared", "-x", "c++", str(wrapper_path), "-x", "none", str(runtime),
                    "-o", out], cu_path.name

        try:
            _build_atomically(target, command)
        finally:
            for path in written:
                path.unlink(missing_ok=True)
    return target, kernels
