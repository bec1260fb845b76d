"""A CUDA launch checked against the compiled function's and the device's limits before CUDA sees it.

CUDA refuses a block too large for the kernel's registers, or more shared memory than a block may use, with
"too many resources requested for launch" (or "invalid argument"), naming neither the kernel nor the
resource. These checks raise one line that says which limit, by how much, and what to change.

Pure functions over plain mappings, so the rules are tested without a GPU (tests/test_launch_limits.py);
cuda_launcher.py reads the mappings with CuPy:
  attributes: the compiled function's `max_threads_per_block` (CUDA derives it from the registers per thread
              and __launch_bounds__), `num_regs` (registers per thread; None on the sim, which has none),
              `shared_size_bytes` (static shared memory, the `__shared__` arrays).
  limits:     the device's `max_threads_per_block`, `max_block_dim` (x, y, z), `max_registers_per_block`,
              `max_shared_per_block` (48 KB: what a launch may use without opting in),
              `max_shared_per_block_optin` (the most a function may opt in to: 227 KB on an H100).

The opt-in (CUDA's cudaFuncAttributeMaxDynamicSharedMemorySize): a function created with
max_dynamic_shared=B may launch with up to B bytes of dynamic shared memory, provided static + B fits the
device's opt-in limit; without it, static + dynamic must fit max_shared_per_block.
"""
from numbers import Integral


class LaunchLimitError(ValueError):
    """A launch the device would refuse; the message names the kernel, the resource and the limit."""


def _is_size(value):
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 0


def block_dims(block):
    """An int or a 1- to 3-tuple of ints -> (x, y, z)."""
    dims = (block,) if isinstance(block, Integral) else tuple(block)
    if not 1 <= len(dims) <= 3:
        raise LaunchLimitError(f"block must be an int or 1 to 3 ints, got {block!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def check_opt_in(kernel, attributes, limits, max_dynamic_shared):
    """The opt-in itself: static + max_dynamic_shared must fit the device's opt-in limit."""
    static, optin = attributes["shared_size_bytes"], limits["max_shared_per_block_optin"]
    if not _is_size(max_dynamic_shared):
        raise LaunchLimitError(f"kernel '{kernel}': max_dynamic_shared must be an int >= 0 (bytes), "
                               f"got {max_dynamic_shared!r}")
    if static + max_dynamic_shared > optin:
        raise LaunchLimitError(f"kernel '{kernel}': max_dynamic_shared={max_dynamic_shared} B plus its {static} B of "
                               f"static shared memory exceeds the {optin} B per block this device allows "
                               f"(at most max_dynamic_shared={optin - static})")


def check_launch(kernel, attributes, limits, block, shared_mem, max_dynamic_shared=None):
    """Raise LaunchLimitError if the device would refuse this block and dynamic shared memory (bytes)."""
    x, y, z = dims = block_dims(block)
    threads = x * y * z
    if min(dims) < 1 or any(d > m for d, m in zip(dims, limits["max_block_dim"])):
        raise LaunchLimitError(f"kernel '{kernel}': block {dims} is outside the device's block limits "
                               f"1..{tuple(limits['max_block_dim'])} (x, y, z)")
    if threads > limits["max_threads_per_block"]:
        raise LaunchLimitError(f"kernel '{kernel}': block {dims} has {threads} threads; the device allows "
                               f"{limits['max_threads_per_block']} per block")
    if threads > attributes["max_threads_per_block"]:
        regs, per_block = attributes["num_regs"], limits["max_registers_per_block"]
        if regs is None:  # the sim: no registers, so the bound is the kernel's __launch_bounds__
            why = "its __launch_bounds__"
        elif regs * threads > per_block:
            why = (f"{regs} registers per thread x {threads} threads = {regs * threads} > the device's {per_block} "
                   f"per block")
        else:
            why = f"{regs} registers per thread; its __launch_bounds__?"
        raise LaunchLimitError(f"kernel '{kernel}': block {dims} has {threads} threads, but as compiled it can run at "
                               f"most {attributes['max_threads_per_block']} per block ({why}): launch a smaller block")
    if not _is_size(shared_mem):
        raise LaunchLimitError(f"kernel '{kernel}': shared_mem must be an int >= 0 (bytes), got {shared_mem!r}")
    static = attributes["shared_size_bytes"]
    total = static + shared_mem
    needs = f"kernel '{kernel}': {static} B static + {shared_mem} B dynamic shared memory = {total} B per block"
    if total > limits["max_shared_per_block_optin"]:
        raise LaunchLimitError(f"{needs}; the device allows at most {limits['max_shared_per_block_optin']} B")
    if max_dynamic_shared is None and total > limits["max_shared_per_block"]:
        raise LaunchLimitError(f"{needs}, over the {limits['max_shared_per_block']} B a launch may use without "
                               f"opting in: create the function with max_dynamic_shared={shared_mem}")
    if max_dynamic_shared is not None and shared_mem > max_dynamic_shared:
        raise LaunchLimitError(f"{needs}, over the max_dynamic_shared={max_dynamic_shared} B this function "
                               f"opted in to")
