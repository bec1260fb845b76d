"""The roofline chart (--plot): every timed implementation at its arithmetic intensity and achieved rate,
under the roofs of the peaks the report assumed or measured."""
from pathlib import Path

import numpy as np


def plot_roofline(rows, peaks, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.5))
    intensity = np.logspace(-1, 4, 200)
    for name, peak, style in (("FP32", peaks["fp32"], "-"), ("TF32", peaks["tf32"], "--")):
        if peak is None:  # a CPU has no TF32 roof
            continue
        ax.plot(intensity, np.minimum(peak, intensity * peaks["bandwidth"]) / 1e9, "k" + style, lw=1, label=f"{name} roof")
    groups = {}
    for r in rows:
        if r.get("seconds"):
            kind = "PyTorch" if r["impl"].startswith("torch") else ("minunet TF32" if r.get("tf32") else "minunet")
            groups.setdefault(kind, []).append((r["flops"] / r["bytes"], r["gflops"]))
    for (kind, points), marker in zip(sorted(groups.items()), "os^v"):
        xs, ys = zip(*points)
        ax.scatter(xs, ys, marker=marker, s=14, alpha=0.6, label=kind)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte, minimum traffic)",
           ylabel="achieved GFLOP/s", title=title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
