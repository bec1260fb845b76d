"""Which __shared__ arrays each kernel of a compiled library can reach, and where they are.

A GPU counts a kernel's static shared memory over the `__shared__` arrays its code can reach (its own
and those of the functions it calls); the simulator asks the linker the same question. The wrapper is
compiled with one section per function and per variable (-ffunction-sections -fdata-sections); linking
it with --gc-sections and the kernel's entry point as the only root keeps exactly the sections that entry
point reaches. `__shared__` is `static` (cuda_sim.h) and never initialised, so its arrays are the .bss
objects; the ones named like an `extern __shared__` array are names of the one storage of dynamic shared
memory, and a kernel uses those its code refers to.
"""
import re
import subprocess
from dataclasses import dataclass, field

_SECTION = re.compile(r"^\s*\[\s*(\d+)\]\s+(\S+)", re.M)
_SYMBOL = re.compile(r"^\s*\d+:\s+([0-9a-f]+)\s+(0x[0-9a-f]+|\d+)\s+OBJECT\s+\w+\s+\w+\s+(\d+)\s+(.+?)\s*$", re.M)


@dataclass
class SharedLayout:
    """A kernel's shared memory: static arrays [(name, offset in the library, bytes)], dynamic storage
    [(name, offset)]."""
    static: list = field(default_factory=list)
    dynamic: list = field(default_factory=list)

    @property
    def static_bytes(self) -> int:
        return sum(size for _, _, size in self.static)


def bss_objects(path, demangle=False) -> dict:
    """{name: (value, size)} of the objects in .bss sections of an ELF file (demangle: C++ names, readable)."""
    command = ["readelf", "-SsW", *(["-C"] if demangle else []), str(path)]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    sections = {int(number): name for number, name in _SECTION.findall(text)}
    return {name: (int(value, 16), int(size, 0)) for value, size, index, name in _SYMBOL.findall(text)
            if sections.get(int(index), "").startswith(".bss")}


_RELOCATION = re.compile(r"^[0-9a-f]+\s+[0-9a-f]+\s+\S+\s+[0-9a-f]+\s+(\w+)", re.M)
DYNAMIC_STORAGE = "minunet_sim_dynamic_shared"  # cuda_sim.h: every extern __shared__ name is an alias of it


def reachable_names(object_path, entry: str, linker: str, scratch):
    """(names of the .bss objects that `entry` reaches in object_path, names of the symbols its code refers to):
    a relocatable link keeps only the sections entry reaches. The extern __shared__ names all live in one
    section, so which of them a kernel uses is told by the symbols its relocations name."""
    subprocess.run([linker, "-r", "--gc-sections", "-u", entry, "-e", entry, str(object_path), "-o", str(scratch)],
                   capture_output=True, text=True, check=True)
    text = subprocess.run(["readelf", "-rW", str(scratch)], capture_output=True, text=True, check=True).stdout
    code = [part for part in re.split(r"^Relocation section ", text, flags=re.M) if not part.startswith("'.rela.debug")]
    return set(bss_objects(scratch)), set(_RELOCATION.findall("".join(code)))


def kernel_layouts(object_path, library_path, kernels, extern_names, linker, scratch) -> dict:
    """{kernel: SharedLayout} for the kernels of library_path, whose arrays object_path declares."""
    placed = bss_objects(library_path)
    layouts = {}
    for kernel in kernels:
        layout = layouts[kernel] = SharedLayout()
        objects, referenced = reachable_names(object_path, f"minunet_sim_run_{kernel}", linker, scratch)
        for name in sorted(objects):
            offset, size = placed[name]
            if name in extern_names:
                if name in referenced:
                    layout.dynamic.append((name, offset))
            elif name != DYNAMIC_STORAGE:
                layout.static.append((name, offset, size))
    return layouts
