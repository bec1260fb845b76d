"""python -m minunet.exercises: every exercise's checker passes the solution (the project's own kernel, or
common.cuh's block reduction) and reports typical mistakes, made by mutating that solution: a deleted
__syncthreads(), a bound off by one or dropped, a tie rule or a comparison changed. Bad input gets a message,
never a traceback."""
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minunet import paths
from minunet.compare import mismatch
from minunet.exercises import __main__ as cli
from minunet.exercises import catalog, machine_code
from minunet.exercises.catalog import EXERCISES
from minunet.exercises.checker import EDGE_TRIALS, RANDOM_TRIALS, TRIALS, check_file, count_report, run_trial
from minunet.exercises.skeleton import _mask_comments, definitions_to_write, function_definitions, make_skeleton
from minunet.ops.launching import TF32_VERSIONS
from minunet.sim.build import find_kernels
from minunet.sim import SimError
from minunet.sim.preload import racecheck_env

ROOT = Path(__file__).resolve().parent.parent
# what a missing __syncthreads() turns into
BARRIER = r"never written|elements wrong|exited while|shared memory nobody wrote"
# what a wrong bound turns into; an access past an array is named by the sim's guarded copies (global_memory.h)
BOUNDS = r"past the end|before the start|never written|elements wrong|crashed|shared memory nobody wrote"


def mutant(exercise, function, old, new, occurrence=0):
    """The solved skeleton (the learner's file with the solution's bodies) with the occurrence-th `old` inside
    `function`'s body replaced by `new`."""
    source = make_skeleton(exercise, solved=True)
    (_, body_open, end), = definitions_to_write(source, function)
    body = source[body_open:end]
    at = -1
    for _ in range(occurrence + 1):
        at = body.find(old, at + 1)
        assert at >= 0, f"{old!r} (occurrence {occurrence}) not in {function}: the mutant is out of date"
    return source[:body_open] + body[:at] + new + body[at + len(old):] + source[end:]


def write_mutant(tmp_path, name, function, old, new, occurrence=0):
    exercise = EXERCISES[name]
    path = tmp_path / exercise.file  # named as the solution's file, as the reports below expect
    path.write_text(mutant(exercise, function, old, new, occurrence))
    return exercise, path


# The tree's barrier at the start of each step instead of after it: right when one sum is reduced and thread 0
# reads it (bias_grad, the loss), wrong where other threads read the sums (the grad_weight kernels).
TREE_BARRIER_FIRST = ("block_sum", "minunet_block_sum",
                      "if ((unsigned)t < s)\n            for (int k = 0; k < K; k++) partial[k][t] += partial[k][t + s];"
                      "\n        __syncthreads();",
                      "__syncthreads();\n        if ((unsigned)t < s)\n"
                      "            for (int k = 0; k < K; k++) partial[k][t] += partial[k][t + s];", 0)
NO_MAX_SUBTRACTED = ("softmax_cross_entropy", "softmax_cross_entropy_v1",
                     "real m = z[0];\n            for (int k = 1; k < K; k++) m = z[k * HW] > m ? z[k * HW] : m;",
                     "real m = (real)0;", 0)
W_READ_PAST = ("conv3x3_tiled", "conv3x3_tiled", "if (m < Cout) wv", "wv", 0)  # loads w of channels m >= Cout
PADDING_TIMES_ZERO = ("conv3x3_tiled", "conv3x3_tiled",
                      "(iy >= 0 && iy < H && ix >= 0 && ix < W) ? img_c[iy * W + ix] : (real)0",
                      "img_c[min(max(iy, 0), H - 1) * W + min(max(ix, 0), W - 1)] "
                      "* (real)(iy >= 0 && iy < H && ix >= 0 && ix < W)", 0)
POOL_DROPS_NAN = ("max_pool2x2", "max_pool2x2_forward_v1", "v > best || (v != v && best == best)", "v > best", 0)
POOL_GRAD_TIMES_MASK = ("max_pool2x2", "max_pool2x2_backward_v1", "(argmax[o] == k) ? gy[o] : (real)0",
                        "gy[o] * (real)(argmax[o] == k)", 0)
RELU_DROPS_NAN = ("relu", "relu_forward_v1", "x[i] < (real)0 ? (real)0 : x[i]", "x[i] > (real)0 ? x[i] : (real)0", 0)
RELU_256_THREADS = ("relu", "relu_forward_v1", "blockIdx.x * blockDim.x", "blockIdx.x * 256", 0)
DROPOUT_TIE_DROPPED = ("dropout", "dropout_forward_v1", ">= p", "> p", 0)
ONE_PIXEL_PER_THREAD = ("up_conv2x2_grad_weight", "up_conv2x2_grad_weight_v1", "p += UP_CONV2X2_GW_THREADS",
                        "p += N * H * W", 0)
# The weight tile's rows of channels m >= Cout left unwritten instead of zero: their poison reaches only
# accumulators that are never stored, so the results are right (on a GPU, garbage read and thrown away).
W_TILE_LEFT_UNWRITTEN = ("conv3x3_tiled", "conv3x3_tiled", "wtile[tid / 9][tap] = wv;",
                         "if (m < Cout) wtile[tid / 9][tap] = wv;", 0)

# (exercise, function, text, replacement, occurrence, what the report must say)
MUTANTS = [
    ("relu", "relu_forward_v1", "i < n", "i <= n", 0, "past the end of (?:its input |global array ')?x"),
    ("relu", "relu_backward_v1", "if (i < n) ", "", 0, "past the end of (?:its input |global array ')?(gy|y)"),
    ("relu", "relu_backward_v1", "y[i] > (real)0", "y[i] >= (real)0", 0, "gx: .* elements wrong"),
    (*RELU_DROPS_NAN, r"y \(n=\d+; NaN.*got 0\.0, expected nan"),
    (*RELU_256_THREADS, r"blocks of 96 threads.*\n.*never written"),
    ("block_sum", "minunet_block_sum", "__syncthreads();", "", 0, "shared memory nobody wrote"),
    ("block_sum", "minunet_block_sum", "__syncthreads();", "", 1, BARRIER),
    ("block_sum", "minunet_block_sum", "(unsigned)t < s", "(unsigned)t <= s", 0, BOUNDS),
    ("block_sum", "minunet_block_sum", "k < K", "k <= K", 0, r"wrote past the \d+ bytes of dynamic shared memory"),
    (*TREE_BARRIER_FIRST, r"shuffled.*\n.*gw \(v\d.*elements wrong"),
    ("conv3x3_tiled", "conv3x3_tiled", "__syncthreads();", "", 0, "shared memory nobody wrote"),
    ("conv3x3_tiled", "conv3x3_tiled", "__syncthreads();", "", 1, BARRIER),
    ("conv3x3_tiled", "conv3x3_tiled", "iy < H", "iy <= H", 0,
     r"pad=1.*" + BOUNDS + "|reads element .* past the end of global array 'x'"),
    ("conv3x3_tiled", "conv3x3_tiled", "oy >= Ho", "oy > Ho", 0, "past the end of (?:global array ')?y"),
    (*W_READ_PAST, r"past the end of (?:its input w \(shape|global array 'w')"),
    (*PADDING_TIMES_ZERO, r"NaN and inf in x.*NaN where the reference has numbers.*inf - inf, 0 \* inf"),
    ("conv3x3_grad_input", "conv3x3_grad_input_v1", "int oy = iy - ky + pad;", "int oy = iy + ky - pad;", 0,
     "gx .* elements wrong"),
    ("conv3x3_grad_input", "conv3x3_grad_input_v1", "ox >= Wo", "ox > Wo", 0, BOUNDS),
    ("conv3x3_grad_input", "conv3x3_grad_input_v1", "if (i >= N * Ci * H * W) return;", "", 0,
     "past the end of (?:its input |global array ')?gy|past the end of (?:global array \')?gx"),
    ("conv3x3_grad_weight", "conv3x3_grad_weight_v1", "if (t < 9)", "if (t < 8)", 0, "never written"),
    ("conv3x3_grad_weight", "conv3x3_grad_weight_v1", "ix < 0 || ix >= W", "ix < 0 || ix > W", 0, BOUNDS),
    ("conv3x3_grad_weight", "conv3x3_grad_weight_v1", "iy < 0 || iy >= H", "iy >= H", 0,
     "before the start of (?:the input |global array ')?x|elements wrong"),
    ("conv3x3_grad_weight", "conv3x3_grad_weight_v1", "    real acc[9];", "    if (t >= N * Ho * Wo) return;\n    real acc[9];",
     0, r"exited while .*\nthe thread left at the `return` of conv3x3\.cu:\d+"),
    ("gemm_tile", "minunet_gemm_fma", "k0 = k_begin", "k0 = 0", 0, r"split over \d+ pixels.*elements wrong"),
    ("gemm_tile", "minunet_gemm_fma", "__syncthreads();", "", 0, "shared memory nobody wrote|" + BARRIER),
    ("gemm_tile", "minunet_gemm_fma", "__syncthreads();", "", 1, BARRIER),
    ("max_pool2x2", "max_pool2x2_forward_v1", "i >= N * C * h * w", "i > N * C * h * w", 0,
     "past the end of (?:its input |global array ')?x|past the end of (?:global array \')?y"),
    ("max_pool2x2", "max_pool2x2_forward_v1", "v > best", "v >= best", 0, r"argmax \(with ties\)"),
    ("max_pool2x2", "max_pool2x2_backward_v1", "if (i >= N * C * H * W) return;", "", 0,
     "past the end of (?:its input |global array ')?argmax|past the end of (?:global array \')?gx"),
    (*POOL_DROPS_NAN, r"y \(\d+ windows; NaN.*expected nan"),
    (*POOL_GRAD_TIMES_MASK, r"gx \(\d+ windows; NaN.*NaN where the reference has numbers"),
    ("up_conv2x2", "up_conv2x2_forward_v1", "i >= N * Co * Ho * Wo", "i > N * Co * Ho * Wo", 0,
     "past the end of (?:its input |global array ')?x|past the end of (?:global array \')?y"),
    ("up_conv2x2", "up_conv2x2_grad_input_v1", "if (i >= N * Ci * H * W) return;", "", 0,
     "past the end of (?:its input |global array ')?gy|past the end of (?:global array \')?gx"),
    ("up_conv2x2_grad_weight", "up_conv2x2_grad_weight_v1", "acc[2] += v * block[Wo];", "acc[2] += v * block[W];", 0,
     "gw .* elements wrong"),
    ("up_conv2x2_grad_weight", "up_conv2x2_grad_weight_v1", "if (t < 4)", "if (t <= 4)", 0, BOUNDS),
    (*ONE_PIXEL_PER_THREAD, r"edge cases.*\n.*257 pixels.*elements wrong"),
    ("softmax_cross_entropy", "softmax_cross_entropy_v1", "pixel < N * HW", "pixel <= N * HW", 0, BOUNDS),
    ("softmax_cross_entropy", "softmax_cross_entropy_v1", "if (pixel < N * HW) {", "if (pixel >= N * HW) return; {",
     0, r"exited while .* wait at __syncthreads at common\.cuh:\d+.*\n"
        r"the thread left at the `return` of softmax_cross_entropy\.cu:\d+"),
    (*NO_MAX_SUBTRACTED, r"edge cases.*\n.*NaN where the reference has numbers.*exp overflowing"),
    (*DROPOUT_TIE_DROPPED, r"edge cases.*\n.*mask .*elements wrong"),
    ("dropout", "dropout_forward_v1", "offset + (unsigned int)i", "(unsigned int)i", 0, "mask .*elements wrong"),
    ("dropout", "multiply_v1", "if (i < n) ", "", 0, "past the end of (?:its input|global array)|past the end of (?:global array \')?gx"),
]

# What only the edge trials catch (random odd sizes of standard normal numbers, blocks of 256 pass them):
# (mutant, what the random trials miss).
ONLY_EDGES = [(RELU_DROPS_NAN, "NaN inputs"), (RELU_256_THREADS, "blocks of other than 256 threads"),
              (PADDING_TIMES_ZERO, "infinities"), (POOL_DROPS_NAN, "NaN inputs"),
              (POOL_GRAD_TIMES_MASK, "NaN gradients"), (NO_MAX_SUBTRACTED, "logits near +-100"),
              (DROPOUT_TIE_DROPPED, "ties"), (ONE_PIXEL_PER_THREAD, "more pixels than a block's threads")]


@pytest.mark.parametrize("name", EXERCISES)
def test_the_solution_passes(name, tmp_path):
    """The solution's file in kernels/, and the skeleton with the solution's bodies (the mutants' start)."""
    exercise = EXERCISES[name]
    result = check_file(exercise, paths.kernels_dir() / exercise.file)
    assert result.passed, result.message
    if not exercise.is_header:  # a header's solved skeleton is the header
        (tmp_path / exercise.file).write_text(make_skeleton(exercise, solved=True))
        result = check_file(exercise, tmp_path / exercise.file)
        assert result.passed, result.message


@pytest.mark.parametrize("name", EXERCISES)
def test_the_skeleton_compiles_and_fails_with_outputs_never_written(name, tmp_path):
    exercise = EXERCISES[name]
    skeleton = make_skeleton(exercise)
    for function in exercise.write:
        assert f"TODO: write {function}" in skeleton
    path = tmp_path / exercise.learner_file
    path.write_text(skeleton)
    result = check_file(exercise, path)
    # a header's empty body leaves its callers reading shared memory nobody wrote
    assert not result.passed and re.search("never written|shared memory nobody wrote", result.message), result.message


@pytest.mark.parametrize("name, function, old, new, occurrence, report", MUTANTS,
                         ids=[f"{m[1]}:{m[2]}->{m[3] or 'deleted'}#{m[4]}" for m in MUTANTS])
def test_a_typical_mistake_is_reported(name, function, old, new, occurrence, report, tmp_path):
    exercise, path = write_mutant(tmp_path, name, function, old, new, occurrence)
    result = check_file(exercise, path)
    assert not result.passed and result.message.startswith("FAILED in trial"), result.message
    assert re.search(report, result.message), result.message



@pytest.mark.parametrize("mutation, missed", ONLY_EDGES, ids=[m[1] for m in ONLY_EDGES])
def test_what_only_the_edge_trials_catch(mutation, missed, tmp_path):
    """Each kind of edge trial is needed: a mutant the random trials pass (test_a_typical_mistake_is_reported
    checks that the whole check fails it, with its message)."""
    exercise, path = write_mutant(tmp_path, *mutation)
    result = check_file(exercise, path, RANDOM_TRIALS)
    assert result.passed, f"the random trials catch it already, without {missed}: {result.message}"


INITCHECK_REPORT = (rf"FAILED in trial {len(TRIALS)} of {len(TRIALS)} \(float32; .*initcheck mode.*\n"
                    r"SimError: kernel 'conv3x3_forward_v2': thread \(\d+,\d+,\d+\) of block \(\d+,\d+,\d+\) reads "
                    r"__shared__ array 'wtile' \(element \d+\) at conv3x3\.cu:\d+, which no thread of the block has "
                    r"written since the block began")


def test_what_only_the_initcheck_trial_catches(tmp_path):
    """Shared memory read before any thread wrote it, where the NaN poison never reaches a result: every other
    trial passes; the initcheck trial names the kernel, the array, the element, the thread and the line."""
    exercise, path = write_mutant(tmp_path, *W_TILE_LEFT_UNWRITTEN)
    others = tuple(spec for spec in TRIALS if not spec.initcheck)
    assert len(others) == len(TRIALS) - 1 and check_file(exercise, path, others).passed
    result = check_file(exercise, path)
    assert not result.passed and re.search(INITCHECK_REPORT, result.message), result.message


def test_the_initcheck_trial_knows_the_outputs_the_kernels_have_not_written(tmp_path):
    """relu's gradient reading its own output gx for y: the outputs come from the sim's `empty`, so the initcheck
    mode names the read (the other trials see only a wrong gx)."""
    exercise, path = write_mutant(tmp_path, "relu", "relu_backward_v1", "y[i] > (real)0", "gx[i] > (real)0")
    result = check_file(exercise, path, (TRIALS[-1],))
    assert re.search(r"kernel 'relu_backward_v1': thread .* reads element \[[\d, ]+\] of global array 'gx' .* at "
                     r"elementwise\.cu:\d+, which no thread has written in this launch", result.message), result.message


def test_the_tree_is_checked_where_other_threads_read_the_sums(tmp_path):
    """The tree with its barriers misplaced passes when only thread 0 reads one sum (bias_grad, the loss):
    the grad_weight kernels, whose threads 0..8 read 9 sums, are what catch it."""
    exercise, path = write_mutant(tmp_path, *TREE_BARRIER_FIRST)

    def thread_0_reads(t):
        catalog._bias_grad(t)
        catalog._softmax_cross_entropy(t)
    assert check_file(dataclasses.replace(exercise, run=thread_0_reads), path, RANDOM_TRIALS).passed


def test_a_read_past_an_input_is_caught_by_the_sims_guarded_copies(tmp_path):
    """conv3x3_tiled loading the weights of channels past Cout: its results are right (never used), so only
    the inaccessible pages after the simulator's copy of w catch the load (on a GPU it reads another array, or
    faults), naming w and the line."""
    exercise, path = write_mutant(tmp_path, *W_READ_PAST)
    result = check_file(exercise, path, RANDOM_TRIALS)
    assert not result.passed and re.search(r"past the end of global array 'w' .*conv3x3\.cu:\d+", result.message), \
        result.message


def kernels_calling(function):
    """{(stem, kernel)} of kernels/*.cu whose kernel calls `function`, in its body or through a __device__
    function of its file that does; TF32 kernels left out (the CUDA-core tile is the one written)."""
    found = set()
    for path in paths.kernels_dir().glob("*.cu"):
        source = path.read_text()
        masked = _mask_comments(source)
        helpers = {m.group(1) for m in re.finditer(r"__device__[^;{}]*?\b(\w+)\s*\(", masked)}
        reach = {function} | {h for h in helpers if h != function and any(
            re.search(rf"\b{function}\s*[(<]", masked[o:e]) for _, o, e in function_definitions(source, h))}
        for kernel in find_kernels(source):
            (_, o, e), = function_definitions(source, kernel)
            op, version = kernel.rsplit("_v", 1)
            if any(re.search(rf"\b{name}\s*[(<]", masked[o:e]) for name in reach) and \
                    TF32_VERSIONS.get(op) != int(version):
                found.add((path.stem, kernel))
    return found


@pytest.mark.parametrize("name, function", [("block_sum", "minunet_block_sum"), ("gemm_tile", "minunet_gemm_fma")])
def test_a_header_is_checked_through_every_kernel_that_calls_it(name, function):
    exercise = EXERCISES[name]
    assert set(exercise.callers) == kernels_calling(function)
    for number, spec in enumerate((RANDOM_TRIALS[0], EDGE_TRIALS[0]), 1):
        problem, _, launcher = run_trial(exercise, paths.kernels_dir() / exercise.file, number, spec)
        assert problem is None, problem
        assert {kernel for _, kernel in exercise.callers} <= set(launcher.launched), spec


# Correct, and not done: the tiled convolution reading x from global memory in its inner loop, the tree
# summed by thread 0 alone, the GEMM tile's rows spread 16 apart (no 16-byte loads).
UNTILED = ("conv3x3_tiled", "conv3x3_tiled",
           "for (int k = 0; k < 9; k++) v[k] = tile[threadIdx.y + k / 3][threadIdx.x + k % 3];",
           "for (int k = 0; k < 9; k++) {\n"
           "            int iy = oy0 + (int)threadIdx.y + k / 3 - pad, ix = ox0 + (int)threadIdx.x + k % 3 - pad;\n"
           "            v[k] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? img_c[iy * W + ix] : (real)0;\n"
           "        }", 0)
SERIAL_SUM = ("block_sum", "minunet_block_sum",
              "for (unsigned s = threads / 2; s > 0; s >>= 1) {\n        if ((unsigned)t < s)\n"
              "            for (int k = 0; k < K; k++) partial[k][t] += partial[k][t + s];\n        __syncthreads();\n    }",
              "if (t == 0)\n        for (int k = 0; k < K; k++)\n"
              "            for (unsigned i = 1; i < threads; i++) partial[k][0] += partial[k][i];\n    __syncthreads();", 0)


@pytest.mark.parametrize("mutation, metric", [(UNTILED, "global loads per output"),
                                              (SERIAL_SUM, "accesses of the busiest thread")],
                         ids=["untiled", "serial"])
def test_a_correct_solution_that_is_untiled_or_serial_is_not_done(mutation, metric, tmp_path):
    exercise, path = write_mutant(tmp_path, *mutation)
    assert check_file(dataclasses.replace(exercise, run=exercise.counted or exercise.run), path,
                      RANDOM_TRIALS[:2]).passed  # right, shuffled or not
    done, text = count_report(exercise, path)
    assert not done and re.search(rf"NOT DONE: \w+: {metric} .* the target is at most", text), text
    done, text = count_report(exercise, paths.kernels_dir() / exercise.file)
    assert done and "target met" in text and "NOT DONE" not in text, text


def test_the_gemm_tile_is_held_to_the_solutions_machine_code(tmp_path):
    """Rows spread 16 apart give the right numbers with twice the shared loads per multiply-add (no LDS.128).
    Checked on conv1x1's GEMM forward, the smallest file that calls the tile (conv3x3's takes seconds more)."""
    exercise = dataclasses.replace(EXERCISES["gemm_tile"], callers=(("conv1x1", "conv1x1_forward_v2"),),
                                   machine_code=(("conv1x1", "conv1x1_forward_v2"),))
    for source, done in ((paths.kernels_dir() / exercise.file, True), (None, False)):
        if source is None:
            source = tmp_path / "gemm_tile.cuh"
            strided = mutant(exercise, "minunet_gemm_fma", "As[kk][ty * TM + i]", "As[kk][ty + TY * i]")
            source.write_text(strided.replace("store(ty * TM + i, tx", "store(ty + TY * i, tx"))
        ok, report, compiled = cli.resource_report(exercise, source, "sm_80")
        if not compiled:
            pytest.skip(f"no NVRTC here: {report}")
        ok, text = machine_code.target(exercise, compiled, "sm_80")
        if "no machine-code target" in text:
            pytest.skip(text)
        assert ok == done and ("NOT DONE: conv1x1_forward_v2 on sm_80: LDS per FFMA" in text) != done, text

def test_a_missing_or_misdeclared_kernel_is_named(tmp_path):
    path = tmp_path / "relu.cu"
    source = paths.kernel_path("elementwise").read_text()
    path.write_text(source.replace("relu_backward_v1(const real* gy,", "relu_backward(const real* gy,"))
    result = check_file(EXERCISES["relu"], path)
    assert "no kernel 'relu_backward_v1'" in result.message and "relu_backward'" in result.message, result.message
    path.write_text(source.replace("real* gx, int n)", "real* gx, int n, int m)"))
    result = check_file(EXERCISES["relu"], path)
    assert "kernel 'relu_backward_v1' takes 5 arguments (gy, y, gx, n, m), got 4" in result.message, result.message


def test_every_exercise_has_a_barrier_or_two_bound_mutants():
    for name in EXERCISES:
        kinds = [m for m in MUTANTS if m[0] == name]
        assert any(m[2] == "__syncthreads();" for m in kinds) or len(kinds) >= 2, name


def test_mismatch_names_the_first_and_the_worst_element():
    expected = np.arange(12.0).reshape(3, 4)
    got = expected.copy()
    got[0, 3] += 0.5
    got[2, 1] += 3.0
    message = mismatch("y", got, expected, atol=1e-6, rtol=0)
    assert "2 of 12 elements wrong" in message and "first at index (0, 3)" in message
    assert "worst at (2, 1): got 12.0, expected 9.0" in message
    assert mismatch("y", expected, expected, 0, 0) is None
    labels = np.array([1, 2, 3], np.uint8)
    message = mismatch("argmax", labels + 1, labels, 0, 0)
    assert "(must be equal)" in message and "tolerance" not in message


def test_each_chapter_ends_with_its_exercises_then_its_next_chapter():
    for chapter in {e.chapter for e in EXERCISES.values()}:
        text = (ROOT / chapter).read_text()
        last_section = text[text.rindex("\n## "):]
        assert last_section.startswith("\n## Exercise\n"), f"{chapter} does not end with its exercise"
        for name in (e.name for e in EXERCISES.values() if e.chapter == chapter):
            for command in ("start", "check"):
                assert re.search(rf"python -m minunet\.exercises {command} {name}\s", last_section), (chapter, name)
        if re.search(r"^Next\b", text, re.M):  # "Next: ..." is the chapter's last paragraph, after the exercise
            assert re.search(r"\n\nNext\b[^\n]*(\n[^\n]+)*\n*$", last_section), f"{chapter}: Next is not last"



def test_the_chapters_state_the_targets_the_checker_holds():
    def words(chapter):
        return " ".join((ROOT / "tutorials" / chapter).read_text().split())
    gemm = words("03b-gemm-ladder.md")
    assert f"at least {machine_code.FMA_SHARE_AT_LEAST:g} times the solution's" in gemm
    assert f"at most {machine_code.LDS_PER_FMA_AT_MOST:g} times the solution's" in gemm
    (kernel, metric, factor), = EXERCISES["conv3x3_tiled"].targets
    assert metric == "global loads per output" and f"(at most {factor:g} times the solution's)" in words(
        "03-conv3x3.md")
    threads = [spec.threads for spec in EDGE_TRIALS if spec.threads]
    assert f"blocks of {threads[0]} and {threads[1]} threads instead of 256" in words("02-first-kernel.md")

def test_exercises_written_by_start_are_ignored_by_git():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "-q", f"{cli.DEFAULT_DIR}/relu.cu"], cwd=ROOT)
    assert result.returncode == 0, f"git does not ignore {cli.DEFAULT_DIR}/, where `start` writes"


# ---- the command line ------------------------------------------------------------------------------------
def run_cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "minunet.exercises", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_list_and_start_never_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in EXERCISES) and len(EXERCISES) >= 11
    assert cli.main(["start", "relu"]) == 0
    learner = tmp_path / "exercises" / "relu.cu"
    assert learner.read_text() == make_skeleton(EXERCISES["relu"])
    learner.write_text("// my work")
    assert cli.main(["start", "relu"]) == 1
    assert "exists already" in capsys.readouterr().err and learner.read_text() == "// my work"
    assert cli.main(["start", "relu", "--force", "--dir", "elsewhere"]) == 0
    assert (tmp_path / "elsewhere" / "relu.cu").is_file() and learner.read_text() == "// my work"
    assert cli.main(["start", "relu", "--force"]) == 0 and learner.read_text() != "// my work"
    (tmp_path / "a_file").write_text("")
    assert cli.main(["start", "relu", "--dir", "a_file"]) == 1 and "cannot write" in capsys.readouterr().err


def test_unknown_exercise_and_missing_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "rleu"]) == 2
    assert "unknown exercise 'rleu'. Did you mean 'relu'?" in capsys.readouterr().err
    assert cli.main(["check", "relu"]) == 2
    assert "start the exercise first" in capsys.readouterr().err


def test_check_passes_the_solution_with_counts_and_a_resource_report(tmp_path):
    exercise = EXERCISES["relu"]
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / exercise.learner_file).write_text((paths.kernels_dir() / exercise.file).read_text())
    result = run_cli(tmp_path, "check", "relu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"passed: {len(TRIALS)} trials" in result.stdout and "(initcheck)" in result.stdout
    assert re.search(r"relu_forward_v1 +yours +\d+ +[\d.]+ +[\d.]+ +0\.00 +0\.00 +1\.00 +0\.00 +2\n"
                     r"relu_forward_v1 +solution", result.stdout), result.stdout  # 1 load, 1 store per element
    assert re.search(r"relu_forward_v1 +\d+ +0 +0/0", result.stdout) or "no NVRTC resource report" in result.stdout


def test_a_headers_resource_report_is_of_the_kernels_that_call_it():
    exercise = dataclasses.replace(EXERCISES["block_sum"], callers=(("elementwise", "bias_grad_v1"),))
    ok, text, _ = cli.resource_report(exercise, paths.kernels_dir() / exercise.file, "sm_80")
    assert ok and (re.search(r"bias_grad_v1 +\d+ +0 +0/0", text) or "no NVRTC resource report" in text), text


def test_without_cupy_the_check_still_passes_and_says_what_to_install(monkeypatch):
    from minunet import nvrtc

    def no_cupy(*args, **kwargs):
        raise ImportError("No module named 'cupy'")
    monkeypatch.setattr(nvrtc, "compile_file", no_cupy)
    ok, text, _ = cli.resource_report(EXERCISES["relu"], paths.kernel_path("elementwise"), "sm_80")
    assert ok and "pip install" in text and "cupy" in text


@pytest.mark.parametrize("case, edit, report", [
    ("does not compile", ("y[i] = x[i] < (real)0", "y[i] = x[i] < (real)0 +"), r"does not compile:\n.*relu\.cu:\d+"),
    ("crashes", ("y[i] = x[i] <", "y[i + (1 << 30)] = x[i] <"), r"crashed .*SIGSEGV.*relu\.cu:\d+"),
    ("rejected by NVRTC", ("y[i] = x[i] < (real)0 ? (real)0 : x[i];", "y[i] = std::max(x[i], (real)0);"),
     "NVRTC .* rejects it"),
])
def test_a_broken_file_gets_a_message_not_a_traceback(tmp_path, case, edit, report):
    (tmp_path / "exercises").mkdir()
    source = paths.kernel_path("elementwise").read_text()
    assert edit[0] in source
    (tmp_path / "exercises" / "relu.cu").write_text(source.replace(edit[0], edit[1], 1))
    result = run_cli(tmp_path, "check", "relu")
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    if case == "rejected by NVRTC" and "no NVRTC resource report" in output:
        pytest.skip("CuPy's NVRTC is not installed")
    assert re.search(report, output, re.S), output


def test_a_kernel_that_never_finishes_is_stopped(tmp_path):
    (tmp_path / "exercises").mkdir()
    endless = mutant(EXERCISES["block_sum"], "minunet_block_sum", "s >>= 1", "s >>= 0")  # s never reaches 0
    (tmp_path / "exercises" / "block_sum.cuh").write_text(endless)
    result = run_cli(tmp_path, "check", "block_sum", "--timeout", "5")
    assert result.returncode == 1 and "no result after 5 s" in result.stdout, result.stdout + result.stderr


# ---- --race: the simulator's race checker (ThreadSanitizer, preloaded into the checker's child process) ------
@pytest.mark.parametrize("option, report", [
    ("--race", r"data race on __shared__ array 'bias_grad_cache' .* at block_sum\.cuh:\d+ .* at block_sum\.cuh:\d+ "),
    (None, r"the race checker, run by itself on trial \d+, names the two accesses:\n"
           r"kernel .*data race on __shared__ array .* at block_sum\.cuh:\d+ .* at block_sum\.cuh:\d+ ")],
    ids=["--race", "run by itself on a failure"])
def test_race_names_the_shared_array_and_both_lines_of_a_missing_barrier(option, report, tmp_path):
    try:
        racecheck_env()
    except SimError as e:
        pytest.skip(f"no race checker here: {e}")
    (tmp_path / "exercises").mkdir()
    tree_step_unordered = mutant(EXERCISES["block_sum"], "minunet_block_sum", "__syncthreads();", "", occurrence=1)
    (tmp_path / "exercises" / "block_sum.cuh").write_text(tree_step_unordered)
    result = run_cli(tmp_path, "check", "block_sum", *([option] if option else []))
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert re.search(report, output), output


def test_race_runs_the_initcheck_trial_without_the_race_checker(tmp_path):
    """The two modes exclude each other in one build, not in one process: under --race (ThreadSanitizer
    preloaded) the initcheck trial still names the read, and the solution passes it."""
    try:
        racecheck_env()
    except SimError as e:
        pytest.skip(f"no race checker here: {e}")
    exercise, path = write_mutant(tmp_path, *W_TILE_LEFT_UNWRITTEN)
    passed, output = cli._run_checker(exercise, path, cli.RACE_TIMEOUT, race=True, trial=len(TRIALS))
    assert not passed and re.search(INITCHECK_REPORT, output), output
    passed, output = cli._run_checker(exercise, paths.kernels_dir() / exercise.file, cli.RACE_TIMEOUT, race=True,
                                      trial=len(TRIALS))
    assert passed and "(initcheck)" in output and "no data race" not in output, output  # one trial, not raced


def test_race_without_thread_sanitizer_is_a_message(monkeypatch):
    def no_tsan(env=None):
        raise SimError("the race checker needs ThreadSanitizer's runtime, and g++ has none (libtsan.so)")
    monkeypatch.setattr(cli, "racecheck_env", no_tsan)
    passed, output = cli._run_checker(EXERCISES["relu"], paths.kernel_path("elementwise"), 60, race=True)
    assert not passed and "--race is not available here" in output and "libtsan" in output
