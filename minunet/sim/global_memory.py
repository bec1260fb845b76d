"""The kernel's global memory: which bytes of the caller's arrays the runtime copies, and naming its elements.

Each launch hands the runtime (global_memory.h) one region per group of array arguments that share memory
(an array passed twice, or two views of one buffer, stay one buffer for the kernel); the runtime copies each
into guarded pages, against the guard after it or (every other launch of a kernel) before it, and says where.
A bad access comes back as (region, byte offset from the region's start), which this module turns into the
argument, its element and how far outside it is.
"""
import ctypes
import weakref

import numpy as np

# The arrays `empty` made: the initcheck mode counts an element of one that still holds the fill as written by
# nobody (initcheck.h).
_EMPTY = weakref.WeakValueDictionary()


FILL_BYTE = 0xFF  # every byte of an unwritten output: a NaN no arithmetic makes (a CPU's or a GPU's is 0x7FC00000
#                   or 0xFFC00000, or keeps its operand's payload), so the checker tells it from a computed one


def empty(shape, dtype):
    """SimLauncher.empty: a new array whose bytes are all FILL_BYTE (NaN for floats, all ones for integers), so
    that an element no kernel wrote shows, and remembered as unwritten for the initcheck mode."""
    out = np.empty(shape, dtype)
    out.reshape(-1).view(np.uint8).fill(FILL_BYTE)
    _EMPTY[id(out)] = out
    return out


def unwritten_bytes(array):
    """A uint8 mask over array's bytes, 1 where it still holds the fill, if the array (or the array it is a view
    of) came from `empty`; None otherwise."""
    base = array
    while base is not None and _EMPTY.get(id(base)) is not base:
        base = base.base if isinstance(base.base, np.ndarray) else None
    if base is None:
        return None
    elements = array.reshape(-1).view(np.uint8).reshape(array.size, array.itemsize)
    return np.repeat((elements == FILL_BYTE).all(1), array.itemsize).astype(np.uint8)


class Regions:
    """The array arguments of one launch, grouped into regions of overlapping memory."""

    def __init__(self, params, args):
        spans = sorted((a.ctypes.data, a.nbytes, not p.const, i) for i, (p, a) in enumerate(zip(params, args))
                       if p.pointer)
        self.spans = []       # [lo, bytes, writable] per region
        self.members = []     # (argument index, parameter name, region, offset in the region, array)
        for lo, nbytes, writable, i in spans:
            last = self.spans[-1] if self.spans else None
            if last and lo < last[0] + last[1]:  # overlaps the previous region: the same buffer
                last[1] = max(last[1], lo + nbytes - last[0])
                last[2] = last[2] or writable
            else:
                self.spans.append([lo, nbytes, writable])
            self.members.append((i, params[i].name, len(self.spans) - 1, lo - self.spans[-1][0], args[i]))
        self.device = []

    def unwritten(self):
        """Per region, a uint8 mask of the bytes no one has written (initcheck.h), or None."""
        masks = [None] * len(self.spans)
        for i, _, region, offset, array in self.members:
            if not self.spans[region][2] or not array.size:
                continue
            mask = unwritten_bytes(array)
            if mask is not None:
                if masks[region] is None:
                    masks[region] = np.zeros(self.spans[region][1], np.uint8)
                masks[region][offset:offset + array.nbytes] |= mask
        return masks

    def place(self, lib, at_start, initcheck=False):
        """Copy the regions into the runtime's guarded memory, each against the guard page after it (at_start:
        before it), with the bytes of outputs no one has written (initcheck); {argument index: its address for
        the kernel}."""
        n = len(self.spans)
        device = (ctypes.c_ulonglong * max(1, n))()
        masks = self.unwritten() if initcheck else [None] * n
        failed = lib.minunet_sim_global_place(
            n, (ctypes.c_void_p * max(1, n))(*[lo for lo, _, _ in self.spans]),
            (ctypes.c_ulonglong * max(1, n))(*[size for _, size, _ in self.spans]),
            (ctypes.c_int * max(1, n))(*[int(w) for _, _, w in self.spans]), int(at_start),
            (ctypes.c_void_p * max(1, n))(*[None if m is None else m.ctypes.data for m in masks]), device)
        if failed:
            raise MemoryError("the simulator could not map guarded memory for the kernel's arrays")
        self.device = list(device[:n])
        return {i: self.device[region] + offset for i, _, region, offset, _ in self.members}

    def arrays(self):
        """[(parameter name, its address for the kernel, array)]."""
        return [(name, self.device[region] + offset, array) for _, name, region, offset, array in self.members]

    def describe(self, region, offset):
        """"element 130, 2 past the end of global array 'a' (argument 0, float32 (4, 32))" for a byte offset
        from the region's start: the argument nearest to it."""
        def distance(member):
            start = member[3]
            return start - offset if offset < start else max(0, offset - (start + member[4].nbytes) + 1)
        i, name, _, start, array = min((m for m in self.members if m[2] == region), key=distance)
        element = (offset - start) // array.itemsize
        what = f"global array '{name}' (argument {i}, {array.dtype} {tuple(array.shape)})"
        if element < 0:
            return f"element {element}, {-element} before the start of {what}"
        if element >= array.size:
            return f"element {element}, {element - array.size + 1} past the end of {what}"
        index = ", ".join(str(int(k)) for k in np.unravel_index(element, array.shape))
        return f"element [{index}] of {what}"
