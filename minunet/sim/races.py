"""Turn ThreadSanitizer's report of a kernel's data race into one SimError message.

TSan names threads by number and memory by address; the reader of a kernel thinks in CUDA threads, arrays and
source lines. The runtime names each TSan fiber after its CUDA thread ("minunet thread (3,0,0) of block
(0,0,0)"); the launcher knows each argument array's address range (of the kernel's copy, global_memory.h);
the library's symbol table gives each __shared__ array's offset from the library's load address (the
simulator keeps each in a static).
"""
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .build import SIM_DIR
from .shared_layout import bss_objects

_ACCESS = re.compile(r"^\s*(Previous )?(atomic )?(read|write) of size (\d+) at (0x[0-9a-f]+) "
                     r"by (thread T\d+|main thread)", re.I | re.M)
_FRAME = re.compile(r"^\s*#\d+ .*\((?P<module>[^()+\s]+)\+(?P<offset>0x[0-9a-f]+)\)$", re.M)
_THREAD = re.compile(r"^\s*Thread (T\d+) '([^']*)'", re.M)

ORDERINGS = "no __syncthreads, warp function of their own warp, atomic or kernel boundary orders the two"


def shared_arrays(library_path):
    """[(name, offset, size)] of the __shared__ arrays (static objects here) in the library, offsets from its
    load address."""
    arrays = []
    for name, (offset, size) in bss_objects(library_path, demangle=True).items():
        name = name.split("::")[-1]  # a __shared__ array in a function: "kernel(...)::tile"
        name = name.removeprefix("minunet_sim_shared_")  # its name in the initcheck mode (build.py)
        if not name.startswith("minunet_sim"):
            arrays.append((name, offset, size))
    return arrays


def first_report(text):
    start = text.find("WARNING: ThreadSanitizer")
    end = text.find("SUMMARY: ThreadSanitizer", start)
    return text[start:end if end >= 0 else None] if start >= 0 else text


def _kernel_line(stack, library_path):
    """'file.cu:LINE (in function)' of the innermost frame of the stack in kernel code (not the simulator's
    own files). addr2line, not TSan's symbolizer: that one does not see libraries loaded after its first use."""
    addr2line = shutil.which("addr2line")
    offsets = [m.group("offset") for m in _FRAME.finditer(stack) if m.group("module") == Path(library_path).name]
    if not addr2line or not offsets:
        return "an unknown line"
    result = subprocess.run([addr2line, "-f", "-i", "-C", "-e", str(library_path), *offsets],
                            capture_output=True, text=True)
    lines = result.stdout.splitlines()
    for function, location in zip(lines[::2], lines[1::2]):  # innermost first, inlined callers next
        path, _, line = location.partition(":")
        if path.startswith(str(SIM_DIR)) or path.endswith("minunet_sim_wrapper.cpp") or path.startswith("?"):
            continue
        function = function.replace("minunet_sim_run_", "")  # the kernel, inlined into its entry point
        return f"{Path(path).name}:{line.split()[0]} (in {function})"
    return "an unknown line"


def shared_element(address, size, shared, shared_base):
    """"__shared__ array 'tile' (element 5)", counting elements of the access's size; names of one
    extern __shared__ storage are joined."""
    names = [(name, address - shared_base - offset) for name, offset, nbytes in shared
             if 0 <= address - shared_base - offset < nbytes]
    if not names:
        return f"address {address:#x} (not an argument array or a __shared__ array)"
    return f"__shared__ array '{' = '.join(n for n, _ in names)}' (element {names[0][1] // size})"


def _where(address, size, arrays, shared, shared_base):
    """The memory an address belongs to: an argument array with the element's index, or a __shared__ array."""
    for name, lo, array in arrays:
        if lo <= address < lo + array.nbytes:
            index = np.unravel_index((address - lo) // array.itemsize, array.shape) if array.size else ()
            index = ", ".join(str(int(i)) for i in index)
            return f"global array '{name}' (element [{index}])"
    return shared_element(address, size, shared, shared_base)


def describe(text, kernel, library_path, arrays, shared, shared_base):
    """The SimError message for TSan's text about the kernel of library_path; arrays: [(parameter name, its
    address in the kernel's global memory, numpy array)], shared: [(name, offset, size)] of __shared__ arrays
    at shared_base."""
    report = first_report(text)
    accesses = list(_ACCESS.finditer(report))
    names = dict(_THREAD.findall(report))
    if "data race" not in report or len(accesses) < 2:
        return f"kernel '{kernel}': ThreadSanitizer reported a problem:\n{report.strip()}"
    parts = []
    for m in reversed(accesses[:2]):  # the earlier access first
        thread = m.group(6).split()[-1]
        who = names.get(thread, "the host" if thread == "thread" else thread).replace("minunet ", "")
        block = report[m.end():]
        block = block[:block.find("\n\n")] if "\n\n" in block else block
        verb = ("atomically " if m.group(2) else "") + ("reads" if m.group(3).lower() == "read" else "writes")
        parts.append(f"{who} {verb} it at {_kernel_line(block, library_path)}")
    first = accesses[0]
    where = _where(int(first.group(5), 16), int(first.group(4)), arrays, shared, shared_base)
    return (f"kernel '{kernel}': data race on {where}: {parts[0]}, then {parts[1]}, and {ORDERINGS} "
            f"(found by the race checker, ThreadSanitizer)")
