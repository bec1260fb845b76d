"""Compile kernels/*.cu with NVRTC exactly as CuPy does, on a machine without a GPU; report resources.

Why: CI has no GPU, yet a kernel that does not compile, warns, or spills registers for some GPU generation
should fail there, not on a borrowed GPU. NVRTC itself needs no GPU, but CuPy's public compile path asks
the driver for the architecture even when one is given. This file is the ONE place that works around it:
inside `_arch_from_argument()` the private `cupy.cuda.compiler._get_arch_for_options_for_nvrtc` answers
from its argument. With minunet's options (nvrtc_options.py, which the cuda launcher compiles with at run
time), the cubin is byte-identical to the one CuPy's RawModule caches (tests/test_nvrtc.py checks it). The
private name is why CuPy is pinned (pyproject.toml).

    python -m minunet.nvrtc [--arch sm_75 sm_80 ...] [--dtype float double] [--block 256]
"""
import argparse
import io
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .nvrtc_options import compile_options, real_name

CUPY_PIN = "14.2.0"  # keep equal to the pin of cupy-cuda13x in pyproject.toml
DEFAULT_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_90")


class NvrtcError(RuntimeError):
    """A kernel file failed to compile; the message holds NVRTC's log."""


@dataclass(frozen=True)
class Resources:
    """What ptxas reports for one kernel (per thread: registers, stack; per block: static shared memory)."""
    registers: int
    shared_bytes: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int


@dataclass(frozen=True)
class CompileResult:
    cubin: bytes
    log: str                         # NVRTC's program log: diagnostics, then the ptxas report
    kernels: dict                    # kernel name -> Resources (empty when compiled with report=False)
    options: tuple                   # minunet's options (compile_options), before CuPy adds its own


def arch_number(arch) -> str:
    """'sm_80', '80' or 80 -> '80' (also 'sm_90a' -> '90a')."""
    match = re.fullmatch(r"(?:sm_)?(\d{2,3}a?)", str(arch))
    if not match:
        raise ValueError(f"arch must look like 'sm_80' or '80', got {arch!r}")
    return match.group(1)


# ---- the CuPy workaround ----

NEEDS_CUPY = ("needs CuPy and NVRTC, which a CPU-only install leaves out: pip install -e \".[cuda13]\" "
              "(no GPU needed to compile)")


def cupy_compiler():
    """(cupy.cuda.compiler, cupy._core.core); a one-line RuntimeError naming the extra to install without CuPy."""
    try:
        import cupy
    except ImportError:
        raise RuntimeError(f"minunet.nvrtc {NEEDS_CUPY}") from None
    if cupy.__version__ != CUPY_PIN:
        raise RuntimeError(f"minunet.nvrtc needs CuPy {CUPY_PIN} (pinned in pyproject.toml: it patches a private "
                           f"CuPy function), found CuPy {cupy.__version__}")
    from cupy._core import core
    from cupy.cuda import compiler
    return compiler, core


_patch_lock = threading.Lock()
_patch_depth = 0
_original_arch_function = None


def _arch_options(arch=None):
    """Replacement of compiler._get_arch_for_options_for_nvrtc: a given arch needs no driver."""
    if arch is None:  # someone else compiling for the current GPU meanwhile: CuPy's own answer
        return _original_arch_function(arch)
    return f"-arch=sm_{arch}", "cubin"


@contextmanager
def _arch_from_argument(compiler):
    """Patch the private function while inside; reference-counted so threads may overlap."""
    global _patch_depth, _original_arch_function
    with _patch_lock:
        if _patch_depth == 0:
            _original_arch_function = compiler._get_arch_for_options_for_nvrtc
            compiler._get_arch_for_options_for_nvrtc = _arch_options
        _patch_depth += 1
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                compiler._get_arch_for_options_for_nvrtc = _original_arch_function


# ---- compiling and reading the ptxas report ----

def resolve_source(source) -> Path:
    """A kernel file stem ('conv3x3') from kernels/, or a path to any .cu file (tests use temp files)."""
    if isinstance(source, Path):
        if not source.is_file():
            raise FileNotFoundError(f"no kernel file {source}")
        return source
    if not isinstance(source, str):
        raise TypeError(f"source must be a kernel file stem (str) or a Path, got {type(source).__name__}")
    return paths.kernel_path(source)


def compile_file(source, arch, dtype, report=True, include_dirs=()) -> CompileResult:
    """Compile one kernel file for one GPU architecture and element type, as CuPy's RawModule would.

    report=True adds -Xptxas=-v, which makes NVRTC append ptxas's resource report to the log; the only
    difference it makes in the cubin is that ptxas's command line, recorded in a note, contains "-v".
    report=False compiles with exactly CuPy's options: the cubin is byte-identical to CuPy's cached one.
    """
    path = resolve_source(source)
    arch = arch_number(arch)
    options = compile_options(path, dtype, include_dirs)
    compiler, core = cupy_compiler()
    # What CuPy's compile_with_cache does to RawModule's options before it calls NVRTC.
    nvrtc_options = core.assemble_cupy_compiler_options(options + (("-Xptxas=-v",) if report else ()))
    nvrtc_options += ("-ftz=true",)
    log = io.StringIO()
    with _arch_from_argument(compiler):
        try:
            cubin, _ = compiler.compile_using_nvrtc(path.read_text(), nvrtc_options, arch=arch,
                                                    filename=path.name, log_stream=log)
        except compiler.CompileException as e:
            raise NvrtcError(f"{path.name} ({real_name(dtype)}, sm_{arch}) failed to compile:\n"
                             f"{_clean(str(e))}") from None
    log = _clean(log.getvalue())
    return CompileResult(cubin=cubin, log=log, kernels=parse_ptxas_report(log) if report else {},
                         options=options)


def _clean(log: str) -> str:
    return log.replace("\x00", "").strip()


def warnings_in(log: str) -> list:
    """The lines of a log that are compiler or ptxas warnings."""
    return [line for line in log.splitlines() if re.search(r"\bwarning\b", line, re.IGNORECASE)]


def parse_ptxas_report(log: str) -> dict:
    """Kernel name -> Resources, from the 'ptxas info' lines of a -Xptxas=-v log (entry functions only)."""
    entries, properties, used = [], {}, {}
    current_entry = current_function = None
    for line in log.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            current_entry = m.group(1)
            entries.append(current_entry)
        elif m := re.search(r"Function properties for (\w+)", line):
            current_function = m.group(1)
        elif m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
            properties[current_function] = tuple(int(g) for g in m.groups())
        elif m := re.search(r"Used (\d+) registers", line):
            smem = re.search(r"(\d+) bytes smem", line)  # absent when the kernel uses none
            used[current_entry] = (int(m.group(1)), int(smem.group(1)) if smem else 0)
    kernels = {}
    for name in entries:
        if name not in used or name not in properties:
            raise ValueError(f"ptxas report incomplete for kernel {name}:\n{log}")
        registers, shared = used[name]
        stack, stores, loads = properties[name]
        kernels[name] = Resources(registers, shared, stores, loads, stack)
    return kernels


# ---- theoretical occupancy (the CUDA occupancy calculator's rules, largest shared-memory carveout) ----

# warps and blocks per SM, shared memory per SM, shared memory the system reserves per block
_SM_LIMITS = {
    "75": dict(warps=32, blocks=16, shared=64 * 1024, reserved=0),
    "80": dict(warps=64, blocks=32, shared=164 * 1024, reserved=1024),
    "86": dict(warps=48, blocks=16, shared=100 * 1024, reserved=1024),
    "89": dict(warps=48, blocks=24, shared=100 * 1024, reserved=1024),
    "90": dict(warps=64, blocks=32, shared=228 * 1024, reserved=1024),
}


REGISTERS_PER_BLOCK = 64 * 1024  # sm_75 to sm_90: more in one block is cudaErrorLaunchOutOfResources
MAX_THREADS_PER_BLOCK = 1024


def registers_per_block(resources: Resources, threads_per_block: int) -> int:
    """Registers a block takes: allocated per warp, in units of 256 (for every arch from sm_75 to sm_90)."""
    warps = -(-threads_per_block // 32)
    return warps * -(-max(resources.registers, 1) * 32 // 256) * 256


def occupancy(resources: Resources, arch, threads_per_block: int, dynamic_shared: int = 0) -> float:
    """Resident warps per SM / the maximum, limited by registers, shared memory, warps and blocks."""
    limits = _SM_LIMITS.get(arch_number(arch).rstrip("a"))
    if limits is None:
        raise ValueError(f"no occupancy limits known for arch {arch!r}; known: {sorted(_SM_LIMITS)}")
    if not 1 <= threads_per_block <= MAX_THREADS_PER_BLOCK:
        raise ValueError(f"threads_per_block must be in 1..{MAX_THREADS_PER_BLOCK}, got {threads_per_block}")
    warps = -(-threads_per_block // 32)
    regs_per_warp = registers_per_block(resources, 32)
    by_registers = (16384 // regs_per_warp) * 4 // warps  # 4 sub-partitions of 16384 registers each
    shared = resources.shared_bytes + dynamic_shared + limits["reserved"]
    by_shared = limits["shared"] // (-(-shared // 128) * 128) if shared else limits["blocks"]
    blocks = min(by_registers, by_shared, limits["warps"] // warps, limits["blocks"])
    return blocks * warps / limits["warps"]


# ---- the table ----

def kernel_files() -> list:
    return sorted(paths.kernels_dir().glob("*.cu"))


_nvrtc_loaded = False


def compile_matrix(sources, archs, dtypes, workers=2, progress=None):
    """Compile every (source, arch, dtype); returns [(path, arch, dtype, CompileResult or NvrtcError)].
    progress: called with 1 after each compilation (a progress bar's update).

    NVRTC releases the GIL while compiling, so threads run compilations in parallel. The process's first
    one runs alone: NVRTC loads libnvrtc-builtins on first use, and concurrent first uses failed to open it.
    """
    global _nvrtc_loaded
    jobs = [(resolve_source(s), arch_number(a), real_name(d)) for s in sources for d in dtypes for a in archs]

    def run(job):
        try:
            return job + (compile_file(*job),)
        except NvrtcError as e:
            return job + (e,)
        finally:
            if progress is not None:
                progress(1)

    compiler, _ = cupy_compiler()
    with _arch_from_argument(compiler), ThreadPoolExecutor(max(1, workers)) as pool:
        results = [] if _nvrtc_loaded else [run(job) for job in jobs[:1]]
        _nvrtc_loaded = True
        return results + list(pool.map(run, jobs[len(results):]))


def format_table(results, block=256) -> str:
    header = ("file", "kernel", "dtype", "arch", "regs", "smem", "spill st/ld", "stack", f"occ@{block}", "warnings")
    rows = []
    def order(result):  # by file, float before double, archs by number (sm_120 after sm_90)
        return result[0].name, result[2] == "double", int(result[1].rstrip("a"))
    for path, arch, dtype, result in sorted(results, key=order):
        if isinstance(result, NvrtcError):
            rows.append((path.name, "COMPILE ERROR", dtype, f"sm_{arch}") + ("-",) * 6)
            continue
        n_warnings = str(len(warnings_in(result.log)))
        for name, r in result.kernels.items():
            occ = f"{occupancy(r, arch, block):.0%}" if arch.rstrip("a") in _SM_LIMITS else "?"
            rows.append((path.name, name, dtype, f"sm_{arch}", str(r.registers), str(r.shared_bytes),
                         f"{r.spill_stores}/{r.spill_loads}", str(r.stack_bytes), occ, n_warnings))
    rows.sort(key=lambda row: row[:2])  # stable: each kernel's rows together, float first, archs in order
    return text_table(header, rows)


def text_table(header, rows) -> str:
    """Left-aligned columns, two spaces apart (also minunet.sass's table)."""
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header] + rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minunet.nvrtc", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="+", default=list(DEFAULT_ARCHS))
    parser.add_argument("--dtype", nargs="+", default=["float", "double"], choices=["float", "double"])
    parser.add_argument("--block", type=int, default=256, help="threads per block for the occupancy column")
    parser.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 2), help="parallel compilations")
    parser.add_argument("files", nargs="*", help="kernel file stems (default: every kernels/*.cu)")
    args = parser.parse_args(argv)
    if not 1 <= args.block <= MAX_THREADS_PER_BLOCK:  # before compiling: the table needs it only at the end
        print(f"error: --block must be 1..{MAX_THREADS_PER_BLOCK} threads per block, got {args.block}", file=sys.stderr)
        return 2
    from tqdm import tqdm
    sources = args.files or kernel_files()
    try:
        cupy_compiler()  # before the progress bar: a missing CuPy is one line
        what = f"NVRTC: {len(sources)} kernel files x {len(args.arch)} archs x {len(args.dtype)} dtypes"
        with tqdm(total=len(sources) * len(args.arch) * len(args.dtype), desc=what, unit="compilation",
                  file=sys.stderr) as bar:
            results = compile_matrix(sources, args.arch, args.dtype, args.jobs, bar.update)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(results, args.block))
    status = 0
    for path, arch, dtype, result in results:
        if isinstance(result, NvrtcError):
            print(f"\n{result}", file=sys.stderr)
            status = 1
        elif warnings_in(result.log):
            print(f"\n{path.name} ({dtype}, sm_{arch}) warnings:\n{result.log}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
