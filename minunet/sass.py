"""The machine code (SASS) NVRTC makes of kernels/*.cu, and what each kernel's hot loop spends its instructions
on; no GPU needed.

ptxas's report (python -m minunet.nvrtc) says how many registers a kernel takes; the SASS says what it does
with them. A GPU issues one instruction per cycle per scheduler, so in a compute-bound GEMM the share of the
main loop's instructions that are multiply-adds bounds the fraction of peak FLOP/s a kernel can reach: the
index arithmetic, the shared-memory loads and the barriers all take issue slots. The "hot loop" is the loop
(a backward branch) holding the most multiply-adds: for the GEMM versions, one 16-deep step of the k loop
with its kk loop unrolled. tests/test_sass.py holds the kernels to what their headers promise.

    python -m minunet.sass [--arch sm_80] [--dtype float] [conv3x3 ...]

The disassembler is nvdisasm, from NVIDIA's `nvidia-cuda-nvdisasm` wheel (a dev dependency) or a CUDA
toolkit on the PATH. Counts are static: each instruction of the loop body once.
"""
import argparse
import collections
import functools
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import nvrtc

FMA_OPCODES = ("FFMA", "DFMA", "HMMA")  # fp32 and fp64 multiply-add, tensor-core mma (each does 32x more)
# "/*0090*/  @!P0 LDS.U.128 R4, [R2+0x10] ;" -> address 0x90, opcode LDS.U.128; ".L_x_3:" is a branch target
_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):", re.M)


@dataclass(frozen=True)
class KernelCode:
    """One kernel's instructions, as opcode counts: the whole kernel, and its hot loop."""
    instructions: collections.Counter  # base opcode (FFMA, LDS, ...) -> count, the whole kernel
    loop: collections.Counter          # the same for the hot loop; empty if the kernel has no loop
    loop_vector_loads: int             # shared-memory loads in the hot loop that move 8 or 16 bytes

    @property
    def loop_fma_share(self) -> float:
        """FFMA + DFMA per instruction of the hot loop (a tensor-core loop is measured by its HMMAs instead)."""
        total = sum(self.loop.values())
        return (self.loop["FFMA"] + self.loop["DFMA"]) / total if total else 0.0


def nvdisasm_path():
    """nvdisasm on the PATH, else the one of the nvidia-cuda-nvdisasm wheel; None if neither is there."""
    found = shutil.which("nvdisasm")
    if found:
        return found
    try:
        import nvidia  # the namespace package NVIDIA's wheels install into
    except ImportError:
        return None
    candidates = [p for root in nvidia.__path__ for p in sorted(Path(root).glob("cu*/bin/nvdisasm"))]
    return str(candidates[-1]) if candidates else None


def disassemble(cubin: bytes) -> str:
    """nvdisasm's listing of a cubin from minunet.nvrtc.compile_file."""
    tool = nvdisasm_path()
    if tool is None:
        raise FileNotFoundError("nvdisasm not found: pip install nvidia-cuda-nvdisasm (or put a CUDA toolkit's "
                                "bin folder on the PATH)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kernels.cubin"
        # CuPy's getCUBIN strips "the trailing NULL" as if a cubin were text, so the ELF file comes one byte
        # short (the last byte of its program header table, a zero). The driver does not notice: a Python
        # bytes object is followed by a zero in memory. nvdisasm refuses the file, so the byte goes back.
        path.write_bytes(cubin + b"\0")
        result = subprocess.run([tool, "-c", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nvdisasm failed: {result.stderr.strip()}")
    return result.stdout


def _base(opcode):
    return opcode.split(".")[0]


def analyse(listing: str) -> dict:
    """{kernel: KernelCode} from an nvdisasm listing (one .text section per kernel)."""
    kernels = {}
    for section in re.split(r"^\s*\.section\s+\.text\.", listing, flags=re.M)[1:]:
        name = re.match(r"[\w$]+", section).group(0)
        # Branch targets: a label names the address of the next instruction.
        labels, instructions = {}, []
        for item in re.finditer(f"{_LABEL.pattern}|{_INSTRUCTION.pattern}", section, re.M):
            if item.group(1):
                labels[item.group(1)] = None
            else:
                address = int(item.group(2), 16)
                labels.update({k: address for k, v in labels.items() if v is None})
                instructions.append((address, item.group(3), item.group(4)))
        loop = []
        for address, opcode, operands in instructions:
            target = re.search(r"\((\.L_x_\d+)\)", operands) if _base(opcode) == "BRA" else None
            start = labels.get(target.group(1)) if target else None
            if start is not None and start <= address:  # a backward branch closes a loop
                body = [op for a, op, _ in instructions if start <= a <= address]
                if sum(_base(op) in FMA_OPCODES for op in body) > sum(_base(op) in FMA_OPCODES for op in loop):
                    loop = body
        kernels[name] = KernelCode(collections.Counter(_base(op) for _, op, _ in instructions),
                                   collections.Counter(_base(op) for op in loop),
                                   sum(_base(op) == "LDS" and (".64" in op or ".128" in op) for op in loop))
    return kernels


@functools.lru_cache(maxsize=32)  # compiling conv3x3.cu takes seconds; the tests ask for it several times
def kernel_code(stem, arch="sm_80", dtype="float") -> dict:
    """{kernel: KernelCode} of one kernel file compiled as CuPy would."""
    return analyse(disassemble(nvrtc.compile_file(stem, arch, dtype, report=False).cubin))


def format_table(rows) -> str:
    """rows: [(file name, kernel, KernelCode)] -> a text table."""
    header = ("file", "kernel", "instr", "loop instr", "FFMA", "DFMA", "HMMA", "LDS", "of them .64/.128", "LDG",
              "BAR", "FMA share", "LDL/STL")
    lines = []
    for file, kernel, code in rows:
        loop = code.loop
        lines.append((file, kernel, str(sum(code.instructions.values())), str(sum(loop.values())),
                      *(str(loop[op]) for op in ("FFMA", "DFMA", "HMMA", "LDS")), str(code.loop_vector_loads),
                      str(loop["LDG"]), str(loop["BAR"]),
                      "tensor cores" if loop["HMMA"] else f"{code.loop_fma_share:.0%}" if loop else "-",
                      f"{code.instructions['LDL']}/{code.instructions['STL']}"))
    return nvrtc.text_table(header, lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minunet.sass", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="sm_80")
    parser.add_argument("--dtype", default="float", choices=["float", "double"])
    parser.add_argument("files", nargs="*", help="kernel file stems (default: every kernels/*.cu)")
    args = parser.parse_args(argv)
    stems = args.files or nvrtc.kernel_files()
    try:
        nvrtc.cupy_compiler()  # a missing CuPy is one line, before anything is compiled
        print(f"compiling and disassembling {len(stems)} kernel file(s) for {args.arch} ({args.dtype}) ...",
              file=sys.stderr, flush=True)
        rows = [(nvrtc.resolve_source(stem).name, kernel, code)
                for stem in stems for kernel, code in sorted(kernel_code(stem, args.arch, args.dtype).items())]
    except (FileNotFoundError, ValueError, RuntimeError) as e:  # NvrtcError is a RuntimeError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.dtype}, {args.arch}: the hot loop is the loop with the most multiply-adds; static counts")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
