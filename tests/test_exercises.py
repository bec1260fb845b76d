"""python -m minunet.exercises: every exercise's checker passes the solution (the project's own kernel, or
common.cuh's block reduction) and reports typical mistakes, made by mutating that solution: a deleted
__syncthreads(), a bound off by one or dropped, a tie rule or a comparison changed. Bad input gets a message,
never a traceback."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minunet import paths
from minunet.exercises import __main__ as cli
from minunet.exercises.catalog import EXERCISES
from minunet.exercises.checker import check_file
from minunet.exercises.compare import mismatch
from minunet.exercises.skeleton import definitions_to_write, make_skeleton
from minunet.sim import SimError
from minunet.sim.preload import racecheck_env

ROOT = Path(__file__).resolve().parent.parent
BARRIER = r"never written|elements wrong|exited while"  # what a missing __syncthreads() turns into
BOUNDS = r"past the end|never written|elements wrong|crashed"  # what a wrong bound turns into
# an access past an array: the sim's guard page or canary (global_memory.h), or the checker's guard zone; a
# kernel that reads an input past its end before it writes past an output is stopped at the read
PAST_THE_END = r"past the end of (global array ')?{}\b"


def mutant(exercise, function, old, new, occurrence=0):
    """The solution's source with the occurrence-th `old` inside `function`'s body replaced by `new`."""
    source = (paths.kernels_dir() / exercise.file).read_text()
    (_, body_open, end), = definitions_to_write(source, function)
    body = source[body_open:end]
    at = -1
    for _ in range(occurrence + 1):
        at = body.find(old, at + 1)
        assert at >= 0, f"{old!r} (occurrence {occurrence}) not in {function}: the mutant is out of date"
    return source[:body_open] + body[:at] + new + body[at + len(old):] + source[end:]


# (exercise, function, text, replacement, occurrence, what the report must say)
MUTANTS = [
    ("relu", "relu_forward_v1", "i < n", "i <= n", 0, PAST_THE_END.format("y")),
    ("relu", "relu_backward_v1", "if (i < n) ", "", 0, PAST_THE_END.format("(?:gx|y)")),
    ("relu", "relu_backward_v1", "y[i] > (real)0", "y[i] >= (real)0", 0, "gx: .* elements wrong"),
    ("block_sum", "minunet_block_sum", "__syncthreads();", "", 0, BARRIER),
    ("block_sum", "minunet_block_sum", "__syncthreads();", "", 1, BARRIER),
    ("block_sum", "minunet_block_sum", "(unsigned)t < s", "(unsigned)t <= s", 0, BOUNDS),
    ("block_sum", "minunet_block_sum", "k < K", "k <= K", 0, r"wrote past the \d+ bytes of dynamic shared memory"),
    ("conv3x3_tiled", "conv3x3_tiled", "__syncthreads();", "", 0, BARRIER),
    ("conv3x3_tiled", "conv3x3_tiled", "__syncthreads();", "", 1, BARRIER),
    ("conv3x3_tiled", "conv3x3_tiled", "iy < H", "iy <= H", 0, BOUNDS),
    ("conv3x3_tiled", "conv3x3_tiled", "oy >= Ho", "oy > Ho", 0, PAST_THE_END.format("y")),
    ("max_pool2x2", "max_pool2x2_forward_v1", "i >= N * C * h * w", "i > N * C * h * w", 0,
     PAST_THE_END.format("(?:y|x)")),
    ("max_pool2x2", "max_pool2x2_forward_v1", "v > best", "v >= best", 0, r"argmax \(with ties\)"),
    ("max_pool2x2", "max_pool2x2_backward_v1", "if (i >= N * C * H * W) return;", "", 0, PAST_THE_END.format("gx")),
    ("up_conv2x2", "up_conv2x2_forward_v1", "i >= N * Co * Ho * Wo", "i > N * Co * Ho * Wo", 0,
     PAST_THE_END.format("(?:y|x)")),
    ("up_conv2x2", "up_conv2x2_grad_input_v1", "if (i >= N * Ci * H * W) return;", "", 0,
     PAST_THE_END.format("(?:gx|gy)")),
    ("softmax_cross_entropy", "softmax_cross_entropy_v1", "pixel < N * HW", "pixel <= N * HW", 0, BOUNDS),
    ("softmax_cross_entropy", "softmax_cross_entropy_v1", "if (pixel < N * HW) {", "if (pixel >= N * HW) return; {",
     0, r"exited while .* wait at __syncthreads at common\.cuh:\d+"),
]


@pytest.mark.parametrize("name", EXERCISES)
def test_the_solution_passes(name):
    exercise = EXERCISES[name]
    result = check_file(exercise, paths.kernels_dir() / exercise.file)
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
    assert not result.passed and "never written" in result.message, result.message


@pytest.mark.parametrize("name, function, old, new, occurrence, report", MUTANTS,
                         ids=[f"{m[1]}:{m[2]}->{m[3] or 'deleted'}#{m[4]}" for m in MUTANTS])
def test_a_typical_mistake_is_reported(name, function, old, new, occurrence, report, tmp_path):
    exercise = EXERCISES[name]
    path = tmp_path / exercise.file  # named as the solution, so the messages' file names compare
    path.write_text(mutant(exercise, function, old, new, occurrence))
    result = check_file(exercise, path)
    assert not result.passed and result.message.startswith("FAILED in trial"), result.message
    assert re.search(report, result.message), result.message


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


def test_each_chapter_ends_with_its_exercises():
    for chapter in {e.chapter for e in EXERCISES.values()}:
        text = (ROOT / chapter).read_text()
        last_section = text[text.rindex("\n## "):]
        assert last_section.startswith("\n## Exercise\n"), f"{chapter} does not end with its exercise"
        for name in (e.name for e in EXERCISES.values() if e.chapter == chapter):
            for command in ("start", "check"):
                assert re.search(rf"python -m minunet\.exercises {command} {name}\s", last_section), (chapter, name)


# ---- the command line ------------------------------------------------------------------------------------
def run_cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "minunet.exercises", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_list_and_start_never_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in EXERCISES)
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


@pytest.mark.parametrize("name, kernel", [("relu", "relu_forward_v1"), ("block_sum", "bias_grad_v1")])
def test_check_passes_the_solution_with_a_resource_report(tmp_path, name, kernel):
    """block_sum's file is a header: the report is of the kernels that call it, compiled with it."""
    exercise = EXERCISES[name]
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / exercise.learner_file).write_text((paths.kernels_dir() / exercise.file).read_text())
    result = run_cli(tmp_path, "check", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed: 4 trials" in result.stdout
    assert re.search(rf"{kernel} +\d+ +0 +0/0", result.stdout) or "no NVRTC resource report" in result.stdout


def test_without_cupy_the_check_still_passes_and_says_what_to_install(monkeypatch):
    from minunet import nvrtc

    def no_cupy(*args, **kwargs):
        raise ImportError("No module named 'cupy'")
    monkeypatch.setattr(nvrtc, "compile_file", no_cupy)
    ok, text = cli.resource_report(EXERCISES["relu"], paths.kernel_path("elementwise"), "sm_80")
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
def test_race_names_the_shared_array_and_both_lines_of_a_missing_barrier(tmp_path):
    try:
        racecheck_env()
    except SimError as e:
        pytest.skip(f"no race checker here: {e}")
    (tmp_path / "exercises").mkdir()
    tree_step_unordered = mutant(EXERCISES["block_sum"], "minunet_block_sum", "__syncthreads();", "", occurrence=1)
    (tmp_path / "exercises" / "block_sum.cuh").write_text(tree_step_unordered)
    result = run_cli(tmp_path, "check", "block_sum", "--race")
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert re.search(r"data race on __shared__ array 'bias_grad_cache' .* at block_sum\.cuh:\d+ .* at "
                     r"block_sum\.cuh:\d+ ", output), output


def test_race_without_thread_sanitizer_is_a_message(monkeypatch):
    def no_tsan(env=None):
        raise SimError("the race checker needs ThreadSanitizer's runtime, and g++ has none (libtsan.so)")
    monkeypatch.setattr(cli, "racecheck_env", no_tsan)
    passed, output = cli._run_checker(EXERCISES["relu"], paths.kernel_path("elementwise"), 60, race=True)
    assert not passed and "--race is not available here" in output and "libtsan" in output
