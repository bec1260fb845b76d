"""Load a compiled kernel library with ctypes and launch its kernels the way CuPy would.

A launch takes the same (grid, block, args, shared_mem) as a CuPy RawKernel call. Each argument is
checked against the parameter type the compiler reported, because a wrong type would not fail on a GPU
either: it would silently pass the wrong bytes. The launch is checked against the limits a GPU enforces,
with the cuda launcher's own checks (minunet/backends/launch_limits.py): the block against the kernel's
__launch_bounds__, static + dynamic shared memory against 48 KB unless the function opted in to more
(get_function(name, max_dynamic_shared=B)).
"""
import ctypes
import functools
import os
import shutil
import subprocess
import threading

import numpy as np

from ..backends.launch_limits import LaunchLimitError, check_launch, check_opt_in
from . import races
from .build import SIM_DIR, SimError, build_library, initcheck_from_env, racecheck_from_env, sanitize_enabled
from .global_memory import Regions

# One launch at a time in the whole process: the runtime's state and the crash handlers are process-wide.
_LAUNCH_LOCK = threading.RLock()  # reentrant: a failed launch may rerun itself to diagnose
_LIBRARIES = {}

_CODES = {"f4": np.float32, "f8": np.float64, "i1": np.int8, "u1": np.uint8, "i2": np.int16, "u2": np.uint16,
          "i4": np.int32, "u4": np.uint32, "i8": np.int64, "u8": np.uint64, "b1": np.bool_}
_C_NAMES = {"f4": "float", "f8": "double", "i1": "char", "u1": "unsigned char", "i2": "short",
            "u2": "unsigned short", "i4": "int", "u4": "unsigned int", "i8": "long long",
            "u8": "unsigned long long", "b1": "bool", "v": "void"}
_MAX_BLOCK = (1024, 1024, 64)
_MAX_GRID = (2**31 - 1, 65535, 65535)
# The device the sim checks launches against, in launch_limits' terms: an sm_90 (sm_80 lets a function opt
# in to 163 KB, sm_86 to 99 KB, sm_75 to 64 KB: the cuda launcher checks the device it runs on).
SIM_DEVICE_LIMITS = dict(max_threads_per_block=1024, max_block_dim=_MAX_BLOCK, max_registers_per_block=64 * 1024,
                         max_shared_per_block=48 * 1024, max_shared_per_block_optin=227 * 1024)


def shuffle_seed_from_env():
    value = os.environ.get("MINUNET_SIM_SHUFFLE", "").strip()
    if not value:
        return None
    try:
        return int(value, 0)
    except ValueError:
        raise ValueError(f"MINUNET_SIM_SHUFFLE must be an integer seed, got {value!r}") from None


def _code_location(library_path, offset):
    """(file name, line, function) of the instruction at offset into the library, from its line tables: the
    innermost frame of kernel code, past the simulator's own helpers inlined into it (an atomic, say); line is
    None in the generated wrapper (the kernel's first instructions). None: unknown."""
    addr2line = shutil.which("addr2line")
    if not offset or not addr2line:
        return None
    try:
        result = subprocess.run([addr2line, "-f", "-i", "-C", "-e", str(library_path), hex(offset)],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.splitlines()
    for function, location in zip(lines[::2], lines[1::2]):  # innermost first, then the inlined-into callers
        path, _, line = location.partition(":")
        if path.startswith("??") or path.startswith(str(SIM_DIR)):
            continue
        function = function.replace("minunet_sim_run_", "")  # the kernel inlined into its entry point
        if path.endswith("minunet_sim_wrapper.cpp"):
            return os.path.basename(path), None, function
        return os.path.basename(path), line.split()[0], function
    return None


def _source_line(library_path, offset):
    """' (the faulting instruction is at file.cu:LINE in function)' for a crash at offset into the library."""
    location = _code_location(library_path, offset)
    if location is None:
        return ""
    name, line, function = location
    if line is None:
        return f" (on entry to {function})"
    return f" (the faulting instruction is at {name}:{line} in {function})"


def _asan_loaded():
    try:
        with open("/proc/self/maps") as maps:
            return "libasan" in maps.read()
    except OSError:
        return False


def _load(path, racecheck):
    lib = _LIBRARIES.get(path)
    if lib is None:
        if racecheck:  # a TSan library would abort the whole process on dlopen
            from .preload import require_tsan  # here: `python -m minunet.sim.preload` must not find it imported
            require_tsan()
        elif sanitize_enabled() and not _asan_loaded():  # ASan would abort the whole process on dlopen
            raise SimError("MINUNET_SIM_SANITIZE=1 builds need AddressSanitizer loaded before Python starts: "
                           "run with LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 "
                           "UBSAN_OPTIONS=print_stacktrace=1 (UBSan's stack names the kernel)")
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            hint = ""
            if "ASan runtime" in str(e) or "asan" in str(e).lower():
                hint = (" (MINUNET_SIM_SANITIZE=1 builds need AddressSanitizer loaded first: run Python with "
                        "LD_PRELOAD=$(g++ -print-file-name=libasan.so))")
            raise SimError(f"could not load the simulator library {path}: {e}{hint}") from None
        lib.minunet_sim_launch.restype = ctypes.c_int
        lib.minunet_sim_global_place.argtypes = [ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                                 ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.minunet_sim_global_finish.argtypes = [ctypes.c_int]
        lib.minunet_sim_launch.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                                           ctypes.c_int, ctypes.c_ulonglong,
                                           ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.c_uint, ctypes.c_ulonglong]
        lib.minunet_sim_last_error.restype = ctypes.c_char_p
        lib.minunet_sim_fault_offset.restype = ctypes.c_ulonglong
        lib.minunet_sim_race_report.restype = ctypes.c_char_p
        lib.minunet_sim_shared_base.restype = ctypes.c_ulonglong
        lib.minunet_sim_finding.restype = ctypes.POINTER(_Finding)
        lib.minunet_sim_exit_trace.restype = ctypes.c_ulonglong
        _LIBRARIES[path] = lib
    return lib


class _Finding(ctypes.Structure):
    """runtime.cpp's Finding: a bad access to memory, for the launcher to name the array and element."""
    _fields_ = [("kind", ctypes.c_int), ("access", ctypes.c_int), ("region", ctypes.c_uint),
                ("offset", ctypes.c_longlong), ("thread", ctypes.c_char * 160), ("shared", ctypes.c_int),
                ("state", ctypes.c_int), ("address", ctypes.c_ulonglong), ("size", ctypes.c_ulonglong)]


GLOBAL_FAULT, GLOBAL_CANARY, MISALIGNED, EARLY_EXIT, INITCHECK = 1, 2, 3, 4, 5
UNWRITTEN, OUTSIDE = 1, 2  # initcheck.h's states
_VERBS = {0: "accesses", 1: "reads", 2: "writes"}


def _c_array(ctype, values):
    return (ctype * max(1, len(values)))(*values)


class Param:
    """One kernel parameter: its name and the type code the compiler reported ("*cf4" = const float*)."""

    def __init__(self, name, code):
        self.name = name
        self.pointer = code.startswith("*")
        self.const = code.startswith("*c")
        self.base = code.lstrip("*c") if self.pointer else code
        self.c_type = ("const " if self.const else "") + _C_NAMES.get(self.base, "?") + ("*" if self.pointer else "")
        self.dtype = np.dtype(_CODES[self.base]) if self.base in _CODES else None


class SimKernel:
    """A launchable kernel: f(grid, block, args, shared_mem=0), like cupy.RawKernel.__call__."""

    def __init__(self, module, name, info, max_dynamic_shared=None):
        self.module = module
        self.name = name
        self.max_dynamic_shared = max_dynamic_shared  # the opt-in (ARCHITECTURE.md)
        self._launches = 0  # global memory alternates between guarding the arrays' ends and starts
        self.before_launch = None  # f({argument index: its address for the kernel}), after the copies are placed
        lib = module.library
        param_names = info.params
        self._run = ctypes.cast(getattr(lib, f"minunet_sim_run_{name}"), ctypes.c_void_p).value
        signature = getattr(lib, f"minunet_sim_signature_{name}")
        signature.restype = ctypes.c_char_p
        codes = [c for c in signature().decode().split(",") if c]
        if len(param_names) != len(codes):  # the source parse was fooled (a macro in the list?): use numbers
            param_names = [f"#{i}" for i in range(len(codes))]
        self.params = [Param(n, c) for n, c in zip(param_names, codes)]
        for p in self.params:
            if p.base not in _CODES and not (p.pointer and p.base == "v"):
                raise SimError(f"kernel '{name}': parameter '{p.name}' has a type the simulator cannot pass "
                               f"(only arithmetic scalars and pointers)")
        max_threads = getattr(lib, f"minunet_sim_max_threads_{name}")
        max_threads.restype = ctypes.c_int
        # What launch_limits reads of a compiled function; the sim has no registers (tests/test_nvrtc.py).
        self.attributes = dict(max_threads_per_block=max_threads(), num_regs=None,  # __launch_bounds__ or 1024
                               shared_size_bytes=info.shared.static_bytes)
        static, most = info.shared.static_bytes, SIM_DEVICE_LIMITS["max_shared_per_block"]
        if static > most:
            raise LaunchLimitError(f"kernel '{name}': {static} B of static shared memory (__shared__ arrays) exceed "
                                   f"the {most} B any GPU compiles (ptxas: too much shared data); make the rest "
                                   f"dynamic shared memory, with max_dynamic_shared")
        if max_dynamic_shared is not None:
            check_opt_in(name, self.attributes, SIM_DEVICE_LIMITS, max_dynamic_shared)
        layout = info.shared
        extern_names = sorted(name for name, _ in layout.dynamic)  # all of them name one storage (cuda_sim.h)
        unmarked = [n for n in extern_names if n not in info.aliased]
        if len(extern_names) > 1 and unmarked:
            raise SimError(f"kernel '{name}' uses {len(extern_names)} extern __shared__ arrays, "
                           f"{', '.join(repr(n) for n in extern_names)}: on a GPU every extern __shared__ array "
                           f"starts at the same byte of the block's dynamic shared memory, so they overlap; carve one "
                           f"array into parts (T* second = first + n), or, if the overlap is meant, end the line of "
                           f"each declaration with the comment `// minunet: aliases` (missing on "
                           f"{', '.join(repr(n) for n in unmarked)})")
        # What the runtime poisons and guards (shared_memory.h), kept alive as ctypes arrays.
        offsets_and_sizes = [v for _, offset, size in layout.static for v in (offset, size)]
        self._static_arrays = _c_array(ctypes.c_ulonglong, offsets_and_sizes)
        dynamic = [(" = ".join(extern_names), layout.dynamic[0][1])] if extern_names else []
        self._dynamic = _c_array(ctypes.c_ulonglong, [offset for _, offset in dynamic])
        self._dynamic_names = _c_array(ctypes.c_char_p, [n.encode() for n, _ in dynamic])
        self._shared_counts = len(layout.static), len(dynamic)

    def __repr__(self):
        params = ", ".join(f"{p.c_type} {p.name}" for p in self.params)
        return f"<sim kernel {self.name}({params})>"

    # -- argument checks ---------------------------------------------------------------------------------
    def _dims(self, value, what, limits):
        if isinstance(value, (int, np.integer)):
            value = (value,)
        if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 3:
            raise ValueError(f"kernel '{self.name}': {what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
        dims = []
        for v in value:
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ValueError(f"kernel '{self.name}': {what} must hold ints, got {value!r}")
            dims.append(int(v))
        dims += [1] * (3 - len(dims))
        for v, limit, axis in zip(dims, limits, "xyz"):
            if not 1 <= v <= limit:
                raise ValueError(f"kernel '{self.name}': {what}.{axis} = {v} is outside [1, {limit}] "
                                 f"({what} {tuple(dims)})")
        return dims

    def _check(self, param, value):
        """The argument checked against the parameter."""
        where = f"kernel '{self.name}': parameter '{param.name}' ({param.c_type})"
        if param.pointer:
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{where} needs a numpy array on the sim device, got {type(value).__name__}")
            if not value.flags.c_contiguous:
                raise TypeError(f"{where} needs a C-contiguous array (the kernel ignores strides); "
                                f"pass np.ascontiguousarray(...)")
            if param.dtype is not None and value.dtype != param.dtype:
                raise TypeError(f"{where} needs an array of dtype {param.dtype}, got {value.dtype}")
            if not param.const and not value.flags.writeable:
                raise TypeError(f"{where} may be written by the kernel, but the array is read-only")
            return
        if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):  # np.float64 is a float
            raise TypeError(f"{where} needs np.{param.dtype.type.__name__}(...), got a Python "
                            f"{type(value).__name__} (CuPy would pass a Python {type(value).__name__} as 8 bytes)")
        if not isinstance(value, np.generic) or value.dtype != param.dtype:
            got = f"np.{value.dtype}" if isinstance(value, np.generic) else type(value).__name__
            raise TypeError(f"{where} needs np.{param.dtype.type.__name__}, got {got}")

    def _message(self, finding, message, regions, fault_offset):
        """The SimError's text: a bad access to global memory names the array and element."""
        if finding.kind == GLOBAL_FAULT:
            return (f"kernel '{self.name}': {finding.thread.decode()} {_VERBS[finding.access]} "
                    f"{regions.describe(finding.region, finding.offset)}"
                    f"{_source_line(self.module.library_path, fault_offset)}")
        if finding.kind == GLOBAL_CANARY:
            return (f"kernel '{self.name}' wrote {regions.describe(finding.region, finding.offset)} (seen in its "
                    f"guard bytes after the launch, which tells neither the thread nor the line; "
                    f"MINUNET_SIM_INITCHECK=1 names both)")
        if finding.kind == MISALIGNED:
            return f"{message}; the address is {regions.describe(finding.region, finding.offset)}"
        if finding.kind == INITCHECK:
            return self._initcheck_message(finding, regions, fault_offset)
        return message + _source_line(self.module.library_path, fault_offset)

    def _initcheck_message(self, finding, regions, fault_offset):
        location = _code_location(self.module.library_path, fault_offset)
        at = f" at {location[0]}:{location[1]}" if location and location[1] else ""
        who = f"kernel '{self.name}': {finding.thread.decode()} {_VERBS[finding.access]}"
        if not finding.shared:
            what = regions.describe(finding.region, finding.offset)
            if finding.state == UNWRITTEN:
                return (f"{who} {what}{at}, which no thread has written in this launch (the array came from the "
                        f"sim's empty() and still holds its fill; found by the initcheck mode)")
            return f"{who} {what}{at} (found by the initcheck mode)"
        base = self.module.library.minunet_sim_shared_base()
        what = races.shared_element(finding.address, finding.size, self.module.shared_arrays(), base)
        if finding.state == UNWRITTEN:
            return (f"{who} {what}{at}, which no thread of the block has written since the block began (found by "
                    f"the initcheck mode)")
        return (f"{who} {what}{at}, past the bytes of dynamic shared memory the launch asked for (found by the "
                f"initcheck mode)")

    def _where_it_returned(self, grid, block, args, shared_mem):
        """'file.cu:LINE' where the thread that exited while others waited at a barrier made its last comparison
        (the decision of an early return), from a rerun of the launch in the diagnosis build; or None."""
        if self.module.diagnosis is None:
            return None
        twin = self.module.diagnosis().get_function(self.name, self.max_dynamic_shared)
        try:
            twin(grid, block, args, shared_mem)
        except SimError:
            pass  # the same error again, with the comparison traced
        location = _code_location(twin.module.library_path, twin.module.library.minunet_sim_exit_trace())
        return f"{location[0]}:{location[1]}" if location and location[1] else None

    # -- launch ------------------------------------------------------------------------------------------
    def __call__(self, grid, block, args, shared_mem=0):
        grid = self._dims(grid, "grid", _MAX_GRID)
        block = self._dims(block, "block", _MAX_BLOCK)
        check_launch(self.name, self.attributes, SIM_DEVICE_LIMITS, block, shared_mem, self.max_dynamic_shared)
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"kernel '{self.name}': args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            raise TypeError(f"kernel '{self.name}' takes {len(self.params)} arguments "
                            f"({', '.join(p.name for p in self.params)}), got {len(args)}")
        for p, a in zip(self.params, args):
            self._check(p, a)
        grid_c = (ctypes.c_uint * 3)(*grid)
        block_c = (ctypes.c_uint * 3)(*block)
        seed = self.module.shuffle_seed
        lib = self.module.library
        regions = Regions(self.params, args)
        with _LAUNCH_LOCK:
            # The kernel works on guarded copies (global_memory.h), every other launch against the guard before
            # them rather than after.
            device = regions.place(lib, self._launches % 2 == 1, self.module.initcheck)
            self._launches += 1
            if self.before_launch is not None:  # the exercises' counting build: where the copies are
                self.before_launch(device)
            holders = [ctypes.c_void_p(device[i]) if p.pointer else
                       np.ctypeslib.as_ctypes_type(p.dtype).from_buffer_copy(a.tobytes())
                       for i, (p, a) in enumerate(zip(self.params, args))]
            argv = (ctypes.c_void_p * max(1, len(holders)))(*[ctypes.addressof(h) for h in holders])
            failed = lib.minunet_sim_launch(self.name.encode(), self._run, argv, grid_c, block_c,
                                            int(seed is not None), (seed or 0) & (2**64 - 1),
                                            self._static_arrays, self._shared_counts[0], self._dynamic,
                                            self._dynamic_names, self._shared_counts[1], int(shared_mem))
            race = lib.minunet_sim_race_report().decode(errors="replace") if failed else ""
            returned_at = None
            if failed and lib.minunet_sim_finding().contents.kind == EARLY_EXIT:  # before the arrays change
                returned_at = self._where_it_returned(grid, block, args, shared_mem)
            failed = lib.minunet_sim_global_finish(failed) or failed  # the copies back to the caller's arrays
            message = lib.minunet_sim_last_error().decode(errors="replace") if failed else ""
            fault_offset = lib.minunet_sim_fault_offset() if failed else 0
            finding = _Finding.from_buffer_copy(lib.minunet_sim_finding().contents)
        if returned_at:
            message += f"; it returned after its last comparison, at {returned_at}"
        if race:
            raise SimError(races.describe(race, self.name, self.module.library_path, regions.arrays(),
                                          self.module.shared_arrays(), lib.minunet_sim_shared_base()))
        if failed:
            raise SimError(self._message(finding, message, regions, fault_offset))


@functools.lru_cache(maxsize=None)
def _diagnosis_module(path, defines, include_dirs, shuffle_seed, racecheck, gpu_math, initcheck):
    return SimModule(path, dict(defines), list(include_dirs), shuffle_seed, racecheck, gpu_math, initcheck,
                     _trace=True)


class SimModule:
    """A .cu file compiled for the simulator, like cupy.RawModule: SimModule(path).get_function(name).

    defines: {"MINUNET_REAL": "double", ...} (or a list of names); include_dirs: extra -I folders;
    shuffle_seed: run threads and blocks in a random order from this seed (None: MINUNET_SIM_SHUFFLE or
    in order); racecheck: report data races between the kernel's threads as SimErrors (None:
    MINUNET_SIM_RACECHECK; the process needs ThreadSanitizer loaded, see minunet/sim/preload.py); gpu_math:
    fused multiply-adds and flush-to-zero as CuPy compiles (None: MINUNET_SIM_GPU_MATH); initcheck: report a read
    of shared memory no thread of the block wrote, of an output no thread wrote, or outside the arrays, as a
    SimError (None: MINUNET_SIM_INITCHECK; initcheck.h); counting: every load and store of kernel code counted
    per thread (counting.h; the caller sets the ranges with library.minunet_sim_count_set before a launch, as
    minunet/exercises/counts.py does).
    """

    def __init__(self, path, defines=None, include_dirs=None, shuffle_seed=None, racecheck=None, gpu_math=None,
                 initcheck=None, counting=False, _trace=False):
        if defines is not None and not isinstance(defines, dict):
            defines = {name: None for name in defines}
        self.path = path
        self.shuffle_seed = shuffle_seed if shuffle_seed is not None else shuffle_seed_from_env()
        self.racecheck = racecheck_from_env() if racecheck is None else bool(racecheck)
        self.counting = counting
        self.initcheck = initcheck_from_env() if initcheck is None else bool(initcheck)
        self.library_path, self.kernels = build_library(path, defines, include_dirs, self.racecheck, gpu_math, _trace,
                                                        self.initcheck, counting)
        self.library = _load(self.library_path, self.racecheck)
        # The diagnosis build: the same with every comparison traced (built when a launch first needs it).
        self.diagnosis = None if _trace else functools.partial(
            _diagnosis_module, path, tuple(sorted((defines or {}).items())), tuple(include_dirs or ()),
            self.shuffle_seed, self.racecheck, gpu_math, self.initcheck)
        self._functions = {}
        self._shared_arrays = None

    def shared_arrays(self):
        """[(name, offset, size)] of the library's __shared__ arrays, for naming them in race reports."""
        if self._shared_arrays is None:
            self._shared_arrays = races.shared_arrays(self.library_path)
        return self._shared_arrays

    def get_function(self, name, max_dynamic_shared=None):
        """The kernel; max_dynamic_shared=B opts it in to launches with up to B bytes of dynamic shared memory."""
        key = (name, max_dynamic_shared)
        if key not in self._functions:
            if name not in self.kernels:
                raise ValueError(f"no kernel {name!r} in {self.path}; its kernels: {sorted(self.kernels)}")
            self._functions[key] = SimKernel(self, name, self.kernels[name], max_dynamic_shared)
        return self._functions[key]
