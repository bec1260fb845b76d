"""Peak memory of `python -m minunet.predict` by image size: what it costs per pixel, and what it costs anyway.

    python benchmarks/predict_memory.py [--sizes 2000 4000] [--base-channels 4]

For each size, a random 8-bit PNG of size x size and a checkpoint of an untrained U-Net (depth 2, float32) are
written to a temporary folder, predict runs on them in a child process (numpy device, default tile and batch),
and the child's peak resident memory is read from the kernel (os.wait4's ru_maxrss). Printed: the peak per
size, the bytes per pixel between the two largest sizes (the part that grows with the image), and what is left
at zero pixels (the libraries, the network and one batch of tiles); with the CPU model and the load averages.
predict.py's docstring quotes its output.
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def peak_rss_bytes(command, log):
    with open(log, "w") as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {Path(log).read_text()[-2000:]}")
    return usage.ru_maxrss * 1024  # kilobytes on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000])
    parser.add_argument("--base-channels", type=int, default=4)
    args = parser.parse_args()
    from PIL import Image

    import minunet as mu
    from minunet import checkpoint
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"{cpu}, {os.cpu_count()} cores; load averages {os.getloadavg()} at the start")
    peaks = {}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        checkpoint.save(work / "checkpoint.npz", mu.UNet(depth=2, base_channels=args.base_channels, seed=1), step=0)
        for size in sorted(args.sizes):
            image = work / f"{size}.png"
            Image.fromarray((np.random.default_rng(size).random((size, size)) * 255).astype(np.uint8)).save(image)
            peaks[size] = peak_rss_bytes([sys.executable, "-m", "minunet.predict", "--checkpoint",
                                          str(work / "checkpoint.npz"), "--input", str(image), "--out",
                                          str(work / "out"), "--device", "numpy"], work / "predict.log")
            print(f"{size} x {size}: peak resident {peaks[size] / 2**20:.0f} MiB")
    if len(peaks) > 1:
        (small, a), (large, b) = sorted(peaks.items())[-2:]
        per_pixel = (b - a) / (large**2 - small**2)
        print(f"{per_pixel:.1f} bytes per pixel; {(a - per_pixel * small**2) / 2**20:.0f} MiB at zero pixels")
    print(f"load averages {os.getloadavg()} at the end")


if __name__ == "__main__":
    main()
