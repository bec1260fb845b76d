"""The GEMM tile's performance target, without a GPU: the hot loop of the learner's compiled kernels (NVRTC
and nvdisasm, as minunet.sass reads them; chapter 3b) against the solution's, and no spills.

A tile that multiplies right but keeps its operands out of registers, or loads a thread's rows one by one,
shows in the machine code: a smaller share of multiply-adds (FFMA) in the loop, more shared-memory loads
(LDS) per multiply-add. Static counts of the code, not a timing: what a GPU would have to execute.
"""
from .. import sass

FMA_SHARE_AT_LEAST = 0.9    # times the solution's FFMA share of the hot loop
LDS_PER_FMA_AT_MOST = 1.25  # times the solution's LDS per FFMA in the hot loop


def _lds_per_fma(code):
    return code.loop["LDS"] / code.loop["FFMA"] if code.loop["FFMA"] else float("inf")


def target(exercise, compiled, arch):
    """(ok, text) for exercise.machine_code's kernels; compiled: {stem: nvrtc.CompileResult} of the learner's
    files (resource_report's), for arch."""
    if not exercise.machine_code:
        return True, ""
    lines, ok = [], True
    for stem, kernel in exercise.machine_code:
        try:
            mine = sass.analyse(sass.disassemble(compiled[stem].cubin))[kernel]
            theirs = sass.kernel_code(stem, arch, "float")[kernel]
        except (FileNotFoundError, RuntimeError, ImportError, OSError) as e:
            return True, f"(no machine-code target: {e})"
        spills = compiled[stem].kernels[kernel]
        checks = [
            (mine.loop_fma_share >= FMA_SHARE_AT_LEAST * theirs.loop_fma_share,
             f"FFMA share of the hot loop {mine.loop_fma_share:.0%} (the solution's {theirs.loop_fma_share:.0%}; "
             f"at least {FMA_SHARE_AT_LEAST:g} x)"),
            (_lds_per_fma(mine) <= LDS_PER_FMA_AT_MOST * _lds_per_fma(theirs),
             f"LDS per FFMA {_lds_per_fma(mine):.3f} (the solution's {_lds_per_fma(theirs):.3f}; at most "
             f"{LDS_PER_FMA_AT_MOST:g} x)"),
            (spills.spill_stores == spills.spill_loads == 0,
             f"spills {spills.spill_stores}/{spills.spill_loads} (stores/loads; none allowed)")]
        for passed, what in checks:
            ok &= passed
            lines.append(f"{'target met' if passed else 'NOT DONE'}: {kernel} on sm_{arch_digits(arch)}: {what}")
    if not ok:
        lines.append("the machine code does more than the solution's for the same multiply-adds: keep a[TM] and "
                     "b[TN] in registers per kk, a thread's TM rows contiguous (one 16-byte load for four), and "
                     "acc small enough to stay in registers")
    return ok, "\n".join(lines)


def arch_digits(arch):
    return "".join(ch for ch in str(arch) if ch.isdigit())
