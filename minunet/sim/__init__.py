"""The sim device: kernels/*.cu run unchanged on the CPU by a small CUDA simulator.

How it works
- Compiling (build.py): the .cu file is compiled by g++ as C++, with cuda_sim.h force-included first. That
  header turns the CUDA qualifiers into nothing, `__shared__` into `static` (a global of its own per array),
  and supplies the built-ins (threadIdx, atomics, shuffles, math). A generated wrapper holds the source
  (`extern __shared__` made a plain `extern`) and adds one C entry point per `extern "C" __global__` kernel
  and the storage of each `extern __shared__` array. The linker tells which shared arrays each kernel
  reaches (shared_layout.py): its static shared-memory size and what to poison. The library and that
  layout are cached under <cache>/sim/ by a hash of every input.
- Running (runtime.cpp, fiber.h): every CUDA thread of a block is a fiber -- its own 64 KB stack with a guard
  page -- and all fibers run on the calling OS thread, one at a time, so runs are deterministic. A fiber
  runs until `__syncthreads()` or a warp function, then hands control back to the scheduler (a dozen
  instructions of assembly on x86-64/aarch64). A block runs warp by warp: a warp runs until none of its
  lanes can go on (a warp function completes when its lanes arrive and orders that warp only), then the
  next warp. When every thread of the block waits at the same barrier, the barrier opens. Blocks run one
  after another.
- Catching bugs: a thread that returns while others wait at a barrier (with the line it returned after),
  barriers at different lines, a shuffle that some lanes never reach or that reads a lane that does not exist
  or take part, and crashes inside the kernel (caught with a signal handler on an alternate stack; the line
  is looked up with addr2line) raise SimError naming the kernel, block, thread and source line; the process
  stays usable. The kernel's arrays are copies between inaccessible pages (global_memory.h): an index past
  either end is a SimError naming the argument and element. Every access is checked for alignment, as a GPU
  does. All `extern __shared__` arrays start at the same byte, as on a GPU. Output buffers from `empty` are
  filled with NaN bytes, the kernel's shared arrays at the start of every block with the word 0x7FFFFFFF
  (NaN as float and double, INT_MAX as int; fmax/fmin keep it), so an element nobody wrote shows up. Arguments are checked against
  the compiled parameter types: a Python int for an `int`, np.float64 for a `float`, a float32 array for a
  `const double*` are TypeErrors.
- Launch limits (launch.py, with the cuda launcher's checks), as a GPU refuses them: a block over the
  kernel's __launch_bounds__; static + dynamic shared memory over 48 KB unless the function opts in with
  `function(..., max_dynamic_shared=B)` (static + B at most 227 KB); static alone over 48 KB. An
  `extern __shared__` array has exactly `shared_mem` bytes: a write past them is a SimError after the
  launch (shared_memory.h). Registers the sim cannot know: tests/test_nvrtc.py checks them with NVRTC.
- Shuffled order: SimLauncher(shuffle_seed=...) or MINUNET_SIM_SHUFFLE=<seed> runs the warps of each
  barrier phase, the lanes of each warp and the blocks in a random order, so a missing `__syncthreads()`
  shows up as a wrong result.
- Race checker: SimLauncher(racecheck=True) or MINUNET_SIM_RACECHECK=1 compiles the kernels with
  ThreadSanitizer (racecheck.h) and reports two unordered accesses to one address, one a write, as a SimError
  naming the kernel, the array, both threads and both lines (races.py). The process needs libtsan loaded
  before Python starts: `python -m minunet.sim.preload <command>` (preload.py).
- Counting: SimModule(counting=True) compiles every load and store of kernel code as a call (GCC's
  kernel-address instrumentation, counting.h) that counts it for its CUDA thread, as a global or shared access
  by the ranges the caller sets (minunet/exercises/counts.py shows them per thread, as GPU-Puzzles does).
- MINUNET_SIM_FIBERS=ucontext switches fibers with glibc's swapcontext (slower; a check of the assembly).
  MINUNET_SIM_SANITIZE=1 builds with AddressSanitizer and UBSan (and ucontext fibers); run Python with
  libasan in LD_PRELOAD (and UBSAN_OPTIONS=print_stacktrace=1) to see, at their source line, out-of-bounds
  accesses (also past a shared array, or past `shared_mem`), misaligned loads, signed overflow, bad shifts.
  The first finding ends the process.
- GPU arithmetic: SimLauncher(gpu_math=True) or MINUNET_SIM_GPU_MATH=1 contracts multiply-adds into FMA
  instructions and flushes denormals to zero, as CuPy's NVRTC options do (float_mode.h); results then
  differ from the default mode's in the last bits, as a GPU's do.
- Initcheck: SimLauncher(initcheck=True) or MINUNET_SIM_INITCHECK=1 makes every load and store of kernel code
  a call into the runtime (initcheck.h), which reports a read of shared memory no thread of the block wrote,
  of an output from `empty` no thread wrote, or of anything outside the arrays, naming array, element,
  thread and line.

Not simulated: warp lockstep without __syncwarp (code relying on it breaks; the race checker names it),
__syncthreads_count/and/or, __activemask, cooperative groups, inline PTX, half precision, textures.
`extern __shared__` arrays must be declared in the .cu file, not in a header; an infinite loop in a kernel
hangs. ARCHITECTURE.md lists what
each mode catches and misses.

    launcher = SimLauncher()
    f = launcher.function("conv3x3", "conv3x3_forward_v1", np.float32)
    f(grid, block, (x, w, b, y, np.int32(N), ...))
"""
import numpy as np

from .. import paths
from ..nvrtc_options import real_name
from . import global_memory
from .build import SimCompileError, SimError
from .launch import SimKernel, SimModule

__all__ = ["SimLauncher", "SimModule", "SimKernel", "SimError", "SimCompileError"]


class SimLauncher:
    """The launcher of the sim device (the contract in ARCHITECTURE.md, the same as CudaLauncher's)."""
    name = "sim"
    xp = np

    def __init__(self, shuffle_seed=None, racecheck=None, gpu_math=None, initcheck=None):
        self.shuffle_seed = shuffle_seed
        self.racecheck = racecheck
        self.gpu_math = gpu_math
        self.initcheck = initcheck
        self._modules = {}
        self._functions = {}

    def compute_capability(self):
        return None  # the sim emulates every feature a kernel uses (the TF32 mma.sync too)

    def asarray(self, a):
        return np.array(a, order="C", copy=True)

    def to_numpy(self, a):
        return np.asarray(a)

    def empty(self, shape, dtype):
        """A new array filled with NaN (floats) or all-ones bytes (integers): unwritten elements show (and the
        initcheck mode names a kernel that reads one before writing it)."""
        return global_memory.empty(shape, dtype)

    def module(self, stem, dtype):
        dtype = np.dtype(dtype)
        key = (stem, dtype)
        if key not in self._modules:
            self._modules[key] = SimModule(paths.kernel_path(stem), defines={"MINUNET_REAL": real_name(dtype)},
                                           include_dirs=[paths.kernels_dir()], shuffle_seed=self.shuffle_seed,
                                           racecheck=self.racecheck, gpu_math=self.gpu_math,
                                           initcheck=self.initcheck)
        return self._modules[key]

    def function(self, stem, kernel_name, dtype, max_dynamic_shared=None):
        """f(grid, block, args, shared_mem=0) for kernel_name of kernels/<stem>.cu compiled for dtype;
        max_dynamic_shared=B opts in to up to B bytes of dynamic shared memory per launch (ARCHITECTURE.md)."""
        key = (stem, kernel_name, np.dtype(dtype), max_dynamic_shared)
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = self.module(stem, dtype).get_function(kernel_name, max_dynamic_shared)
        return fn
