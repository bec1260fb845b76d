"""Everything the trainer needs from a dataset: a seeded train/validation split and the weight maps."""
from dataclasses import dataclass

import numpy as np

from .loaders import load_dataset
from .weight_map import weight_map


@dataclass
class TrainingData:
    train_images: list   # 2D float32 arrays in [0, 1]
    train_labels: list   # 2D int32 class indices
    train_weights: list  # 2D float32 weight maps
    val_images: list
    val_labels: list
    val_weights: list
    n_classes: int
    in_channels: int = 1
    name: str = ""


def class_balance_map(labels, n_classes):
    """w_c alone, for masks without instances: each class weighted by its inverse frequency, the most
    frequent class weighing 1 (weight_map's class_balance term, generalised to K classes)."""
    counts = np.bincount(labels.ravel(), minlength=n_classes).astype(np.float64)
    w = np.divide(counts.max(), counts, out=np.zeros(n_classes), where=counts > 0)
    return w[labels].astype(np.float32)


MAX_SYNTHETIC_SIZE = 2048


def prepare_training_data(kind, data_dir=None, n_synthetic=40, val_fraction=0.2, seed=0, w0=10.0, sigma=5.0,
                          weights=True, min_size=256):
    """Load `kind`, hold out val_fraction of the images (seeded), and precompute the paper's weight maps
    (weights=False skips them; for masks without instances only the class-balance term w_c is used).
    Synthetic images are made at least min_size px (the output tile must fit inside an image)."""
    if kind == "synthetic":
        if data_dir is not None:
            raise ValueError("--data synthetic is generated; it takes no --data-dir")
        if min_size > MAX_SYNTHETIC_SIZE:  # n_synthetic images of min_size^2 would not fit in memory
            raise ValueError(f"an output tile of {min_size} px needs synthetic images at least that large; they are "
                             f"made up to {MAX_SYNTHETIC_SIZE} px: choose a smaller --tile")
        data = load_dataset("synthetic", n=n_synthetic, size=max(256, int(min_size)), seed=seed)
    elif kind == "folder":
        data = load_dataset("folder", data_dir, instances=False)
        if data.n_classes == 2:
            data = load_dataset("folder", data_dir, instances=True)
    else:
        data = load_dataset(kind, data_dir)
    n = len(data)
    n_val = int(round(n * val_fraction))
    if n < 2 or not 1 <= n_val < n:
        raise ValueError(f"{data.name}: {n} image(s) cannot be split into training and validation with "
                         f"val_fraction={val_fraction}; need at least one image on each side")
    order = np.random.default_rng([seed, 2]).permutation(n)
    val, train = order[:n_val], order[n_val:]

    def maps(indices):
        if not weights:
            return [None] * len(indices)
        if data.instances:
            return [weight_map(data.labels[i], w0=w0, sigma=sigma) for i in indices]
        return [class_balance_map(data.class_labels(i), data.n_classes) for i in indices]

    return TrainingData(
        train_images=[data.images[i] for i in train], train_labels=[data.class_labels(i) for i in train],
        train_weights=maps(train), val_images=[data.images[i] for i in val],
        val_labels=[data.class_labels(i) for i in val], val_weights=maps(val), n_classes=data.n_classes,
        name=data.name)
