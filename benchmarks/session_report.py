"""gpu_session.sh's verdicts, which pytest's and train's exit codes alone would get wrong.

    python benchmarks/session_report.py gpu-tests PYTEST_JUNIT.xml
        How many of the collected gpu tests ran. Exit 1 unless every one ran and passed: without a usable GPU
        pytest skips them all and exits 0, which must not read as "the kernels are correct on the GPU".
    python benchmarks/session_report.py train RUN_DIR/metrics.jsonl STEPS
        Steps done of STEPS, the loss at the start and at the end, the median step time, the validation IoU.
        Written also when the run was cut short (metrics.jsonl gets one line per step); exit 1 if no step was
        logged.
"""
import json
import statistics
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def gpu_tests(junit_path):
    """(message, ok) for a pytest --junitxml report of `pytest -m gpu`."""
    path = Path(junit_path)
    if not path.is_file():
        return f"gpu tests: no pytest report at {path} (pytest did not get to run them)", False
    cases = list(ET.parse(path).getroot().iter("testcase"))
    outcome = {}
    for case in cases:
        kind = next((c.tag for c in case if c.tag in ("skipped", "failure", "error")), "passed")
        outcome.setdefault(kind, []).append(case)
    ran = len(cases) - len(outcome.get("skipped", []))
    counts = ", ".join(f"{kind} {len(outcome.get(kind, []))}" for kind in ("passed", "failure", "error", "skipped"))
    lines = [f"gpu tests: {ran} of {len(cases)} collected ran ({counts})"]
    skipped = outcome.get("skipped", [])
    for case in skipped[:5]:
        lines.append(f"  not run: {case.get('classname')}::{case.get('name')}: {case.find('skipped').get('message')}")
    if len(skipped) > 5:
        lines.append(f"  ... and {len(skipped) - 5} more not run")
    ok = len(cases) > 0 and len(outcome.get("passed", [])) == len(cases)
    if not ok:
        lines.append("FAILED: every gpu test must run and pass" + (" (none was collected)" if not cases else ""))
    return "\n".join(lines), ok


def train(metrics_path, steps):
    """(message, ok) for a run's metrics.jsonl, complete or cut short."""
    path = Path(metrics_path)
    records = [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []
    losses = [r for r in records if "loss" in r]
    if not losses:
        return f"train: no step logged in {path}", False
    times = [r["time"] for r in losses]
    step_times = [b - a for a, b in zip(times, times[1:])]
    head, tail = losses[:20], losses[-20:]
    mean = lambda rs: sum(r["loss"] for r in rs) / len(rs)  # noqa: E731
    lines = [f"train: {losses[-1]['step']} of {steps} steps in {times[-1]:.0f} s"
             + ("" if losses[-1]["step"] >= steps else " (cut short)"),
             f"  loss: mean of steps 1-{len(head)} {mean(head):.4f}, of the last {len(tail)} {mean(tail):.4f}",
             f"  step time: first {times[0]:.1f} s (compiles the kernels), then median "
             + (f"{statistics.median(step_times) * 1e3:.0f} ms" if step_times else "-")]
    lines += [f"  validation IoU at step {r['step']}: {r['val_iou']:.3f}" for r in records if "val_iou" in r]
    return "\n".join(lines), True


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "gpu-tests":
        message, ok = gpu_tests(argv[1])
    elif len(argv) == 3 and argv[0] == "train" and argv[2].isdigit():
        message, ok = train(argv[1], int(argv[2]))
    else:
        print("usage: session_report.py gpu-tests JUNIT.xml | train METRICS.jsonl STEPS", file=sys.stderr)
        return 2
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
