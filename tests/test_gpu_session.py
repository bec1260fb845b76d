"""benchmarks/gpu_session.sh cannot report success without a GPU, and its verdicts (session_report.py) count
what ran: the gpu tests against those collected, a training run's steps against those asked for."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minunet.backends import cuda_available

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "session_report.py"


def session(*parts, out):
    # python3 in the script must be this interpreter, which has minunet's dependencies.
    env = dict(os.environ, OUT=str(out), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), *parts], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(cuda_available(), reason="the no-GPU failure mode needs a machine without a GPU")
def test_without_a_gpu_the_check_fails_and_says_how_many_gpu_tests_ran(tmp_path):
    result = session("check", out=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    log = (tmp_path / "check.txt").read_text()
    count = next(line for line in log.splitlines() if line.startswith("gpu tests:"))
    assert count.startswith("gpu tests: 0 of ") and int(count.split()[4]) >= 100, count
    assert "=== check: FAILED" in log and "FAILED steps: gpu check" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.txt", "gpu.txt", "nvrtc_table.txt"]


def test_an_unknown_part_is_a_one_line_error(tmp_path):
    result = session("check", "benchmark", out=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("gpu_session.sh: unknown part 'benchmark'; the parts are: check bench train "
                             "(default: all three)\n")


def report(*args):
    return subprocess.run([sys.executable, str(REPORT), *map(str, args)], capture_output=True, text=True, timeout=60)


def junit(path, outcomes):
    """A pytest --junitxml file with one test case per outcome ('passed', 'skipped', 'failure', 'error')."""
    cases = "".join(f'<testcase classname="tests.t" name="test_{i}">'
                    + ("" if kind == "passed" else f'<{kind} message="why {i}"/>') + "</testcase>"
                    for i, kind in enumerate(outcomes))
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
    return path


def test_the_gpu_tests_pass_only_if_every_one_ran_and_passed(tmp_path):
    result = report("gpu-tests", junit(tmp_path / "all.xml", ["passed"] * 3))
    assert result.returncode == 0 and result.stdout.startswith("gpu tests: 3 of 3 collected ran (passed 3, ")
    result = report("gpu-tests", junit(tmp_path / "one_skipped.xml", ["passed", "skipped", "passed"]))
    assert result.returncode == 1
    assert "gpu tests: 2 of 3 collected ran" in result.stdout and "not run: tests.t::test_1: why 1" in result.stdout
    for kind in ("failure", "error"):
        assert report("gpu-tests", junit(tmp_path / f"{kind}.xml", ["passed", kind])).returncode == 1
    result = report("gpu-tests", junit(tmp_path / "none.xml", []))
    assert result.returncode == 1 and "none was collected" in result.stdout
    result = report("gpu-tests", tmp_path / "missing.xml")
    assert result.returncode == 1 and "no pytest report" in result.stdout


def metrics(path, steps, val_every=2):
    with open(path, "w") as f:
        for step in range(1, steps + 1):
            f.write(json.dumps(dict(step=step, loss=1.0 / step, lr=0.01, time=5.0 + 0.25 * (step - 1))) + "\n")
            if step % val_every == 0:
                f.write(json.dumps(dict(step=step, val_iou=0.5)) + "\n")
    return path


def test_the_training_summary_counts_the_steps_done_even_when_cut_short(tmp_path):
    result = report("train", metrics(tmp_path / "cut.jsonl", 3), 400)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "train: 3 of 400 steps in 6 s (cut short)",
        "  loss: mean of steps 1-3 0.6111, of the last 3 0.6111",
        "  step time: first 5.0 s (compiles the kernels), then median 250 ms",
        "  validation IoU at step 2: 0.500"]
    result = report("train", metrics(tmp_path / "done.jsonl", 40, val_every=40), 40)
    assert result.stdout.startswith("train: 40 of 40 steps in 15 s\n")
    assert "mean of steps 1-20 0.1799, of the last 20 0.0340" in result.stdout  # (H40 - H20) / 20


def test_a_training_summary_without_steps_fails_and_bad_arguments_are_a_usage_error(tmp_path):
    result = report("train", tmp_path / "missing.jsonl", 400)
    assert result.returncode == 1 and result.stdout.startswith("train: no step logged in ")
    for args in (["train", "m.jsonl", "many"], ["gpu-tests"], ["plot", "x"]):
        result = report(*args)
        assert result.returncode == 2 and result.stderr.startswith("usage: session_report.py gpu-tests"), args


def test_the_training_parts_cpu_side_is_measured_at_paper_size():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_cpu_side.py"), "--steps", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("setup ") and "data path per step: median " in result.stdout
    assert "over 2; one checkpoint " in result.stdout
