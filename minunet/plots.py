"""PNG figures of a training run: loss and validation curves; an input / truth / prediction / weights panel."""
import json

import matplotlib

matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .atomic_file import atomic_file  # noqa: E402


def plot_metrics(metrics_path, out_path, note=None):
    """The loss per step, and the validation scores; note: a title above both (the CuPy stand-in's)."""
    steps, losses, val_steps, val_iou, challenge = [], [], [], [], {"val_rand_error": [], "val_pixel_error": []}
    for line in open(metrics_path):
        record = json.loads(line)
        if "loss" in record:
            steps.append(record["step"])
            losses.append(record["loss"])
        if "val_iou" in record:
            val_steps.append(record["step"])
            val_iou.append(record["val_iou"])
            for key, values in challenge.items():
                values.append(record.get(key, np.nan))
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(steps, losses, lw=0.6, alpha=0.5, label="per step")
    if len(losses) >= 20:
        k = max(len(losses) // 50, 5)
        ax[0].plot(steps[k - 1:], np.convolve(losses, np.ones(k) / k, mode="valid"), label=f"mean of {k}")
    ax[0].set(xlabel="step", ylabel="weighted cross-entropy", yscale="log", title="training loss")
    ax[0].legend()
    ax[1].plot(val_steps, val_iou, "o-", label="foreground IoU")
    for (key, values), title in zip(challenge.items(), ("challenge Rand error", "challenge pixel error")):
        if not np.all(np.isnan(values)):  # the ISBI 2012 challenge's scores (two classes)
            ax[1].plot(val_steps, values, "s--", label=title)
    ax[1].set(xlabel="step", ylim=(0, 1), title="validation")
    ax[1].legend()
    ax[1].grid(alpha=0.3)
    _save(fig, out_path, note)


def plot_panel(out_path, image, truth, prediction, weights, titles=("input", "truth", "prediction", "weight map"),
               note=None):
    """Four images side by side (the paper's Fig. 3 layout with the prediction added); note as in plot_metrics."""
    image = image[0] if image.ndim == 3 else image
    fig, ax = plt.subplots(1, 4, figsize=(14, 3.8))
    for a, data, title, cmap in zip(ax, (image, truth, prediction, weights), titles, ("gray", "gray", "gray", "jet")):
        shown = a.imshow(data, cmap=cmap)
        a.set_title(title)
        a.axis("off")
    fig.colorbar(shown, ax=ax[3], fraction=0.046)
    _save(fig, out_path, note)


def _save(fig, out_path, note=None):
    """Written whole or not at all (a full disk leaves the previous figure, not half of a new one). A note is
    the figure's title, in red, and the PNG's Title."""
    if note:
        fig.suptitle(note, color="red")
    fig.tight_layout()
    try:
        with atomic_file(out_path) as f:
            fig.savefig(f, format="png", dpi=100, metadata={"Title": note} if note else None)
    finally:
        plt.close(fig)
