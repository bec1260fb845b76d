"""The race checker over the simulator's tests, from the normal suite.

ThreadSanitizer must be in a process from its start, so the simulator's tests and the kernel tests run again
in a subprocess under `python -m minunet.sim.preload` (which sets MINUNET_SIM_RACECHECK=1): the planted
races of tests/test_races.py are reported, and today's kernels run clean. About 6 minutes on 2 busy cores;
by hand:

    python -m minunet.sim.preload python -m pytest -q -k "not cuda and not gpu-math" tests/test_sim.py \
        tests/test_races.py tests/test_conv3x3.py tests/test_conv3x3_versions.py tests/test_up_conv2x2.py \
        tests/test_conv1x1.py tests/test_split_k.py tests/test_max_pool2x2.py tests/test_elementwise.py \
        tests/test_softmax_cross_entropy.py tests/test_sgd.py tests/test_sim_gpu_faithful.py
"""
import subprocess
import sys
from pathlib import Path

import pytest

from minunet.sim import SimError, SimModule
from minunet.sim.preload import main as preload_main, racecheck_env, tsan_loaded

ROOT = Path(__file__).resolve().parents[1]
UNDER_THE_RACE_CHECKER = ["tests/test_sim.py", "tests/test_races.py", "tests/test_conv3x3.py",
                          "tests/test_conv3x3_versions.py", "tests/test_up_conv2x2.py", "tests/test_conv1x1.py",
                          "tests/test_split_k.py", "tests/test_max_pool2x2.py", "tests/test_elementwise.py",
                          "tests/test_softmax_cross_entropy.py", "tests/test_sgd.py", "tests/test_sim_gpu_faithful.py"]


def test_sim_tests_pass_under_the_race_checker():
    try:
        env = racecheck_env()
    except SimError as e:
        pytest.skip(str(e))
    # GPU arithmetic (the sim-gpu-math runs) changes no ordering: left out, as the GPU runs are
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not cuda and not gpu-math",
               *UNDER_THE_RACE_CHECKER]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    # The exit status is TSan's 66 whenever it reported anything (the planted races do): read pytest's summary.
    assert " passed" in summary and "failed" not in summary and "error" not in summary, \
        f"under the race checker: {summary}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"


@pytest.mark.skipif(tsan_loaded(), reason="this process has ThreadSanitizer")
def test_racecheck_without_tsan_says_the_command_to_run(tmp_path):
    source = tmp_path / "k.cu"
    source.write_text('extern "C" __global__ void k(float* out) { out[threadIdx.x] = 1.0f; }\n')
    with pytest.raises(SimError, match=r"ThreadSanitizer loaded before Python starts; run: .* -m minunet.sim.preload"):
        SimModule(source, racecheck=True)


def test_preload_without_a_command_prints_its_usage(capsys):
    assert preload_main([]) == 2
    assert "python -m minunet.sim.preload" in capsys.readouterr().out


def test_preload_names_a_command_it_cannot_run(capsys):
    assert preload_main(["./no-such-command-here"]) == 127
    assert "cannot run './no-such-command-here'" in capsys.readouterr().err
