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
                          weights=True, min_size=256, val_data_dir=None, image_dir=None, mask_dir=None,
                          n_classes=None):
    """Load `kind`, hold out val_fraction of the images (seeded) or, with val_data_dir, validate on that second
    folder of the same layout, and precompute the paper's weight maps (weights=False skips them; for masks
    without instances only the class-balance term w_c is used). min_size: the output tile, which must fit inside
    every training image (synthetic images are made that large). Errors name the options of python -m minunet.train."""
    if kind == "synthetic":
        if any(v is not None for v in (data_dir, val_data_dir, image_dir, mask_dir, n_classes)):
            raise ValueError("--data synthetic is generated; it takes no --data-dir, --val-data-dir, --image-dir, "
                             "--mask-dir or --n-classes (its validation images are --val-fraction of the "
                             "generated ones)")
        if min_size > MAX_SYNTHETIC_SIZE:  # n_synthetic images of min_size^2 would not fit in memory
            raise ValueError(f"an output tile of {min_size} px needs synthetic images at least that large; they are "
                             f"made up to {MAX_SYNTHETIC_SIZE} px: choose a smaller --tile")
        data = load_dataset("synthetic", n=n_synthetic, size=max(256, int(min_size)), seed=seed)
    else:
        data = _load_files(kind, data_dir, image_dir, mask_dir, n_classes)
    if val_data_dir is not None:
        _check_sizes(data, range(len(data)), min_size)
        val_data = _load_files(kind, val_data_dir, None, None, data.n_classes)  # class indices as in training
        return _training_data(data, range(len(data)), val_data, range(len(val_data)), w0, sigma, weights)
    n = len(data)
    n_val = int(round(n * val_fraction))
    if n < 2 or not 1 <= n_val < n:
        raise ValueError(f"{data.name}: {n} image(s) cannot be split into training and validation with "
                         f"val_fraction={val_fraction}; need at least one image on each side")
    order = np.random.default_rng([seed, 2]).permutation(n)
    _check_sizes(data, order[n_val:], min_size)
    return _training_data(data, order[n_val:], data, order[:n_val], w0, sigma, weights)


def _load_files(kind, data_dir, image_dir, mask_dir, n_classes):
    """isbi2012 or folder data from disk, with errors that name the command-line options."""
    if kind == "folder" and image_dir is not None and mask_dir is not None and data_dir is None:
        found = dict(image_dir=image_dir, mask_dir=mask_dir)
    elif image_dir is not None or mask_dir is not None:
        raise ValueError("--image-dir and --mask-dir go together, with --data folder and instead of --data-dir")
    elif data_dir is None:
        raise ValueError(f"--data {kind} needs --data-dir, the folder holding the data ({DATA_DIR_LAYOUT[kind]})")
    else:
        found = dict(data_dir=data_dir)
    if kind == "isbi2012":
        if n_classes not in (None, 2):
            raise ValueError(f"--n-classes {n_classes}: ISBI 2012 has 2 classes (membrane, cell)")
        return load_dataset(kind, found["data_dir"])
    data = load_dataset("folder", **found, n_classes=n_classes, instances=False)
    return load_dataset("folder", **found, n_classes=2, instances=True) if data.n_classes == 2 else data


def _check_sizes(data, train, min_size):
    """Training tiles are cut from inside an image: one smaller than the output tile is an error naming it (before
    anything is written), not a failure at the step that draws it. Validation images may be any size."""
    for i in train:
        h, w = np.shape(data.images[i])[-2:]
        if min(h, w) < min_size:
            name = data.files[i] if data.files else f"image {i}"
            raise ValueError(f"{name} is {w}x{h} px, smaller than the {min_size} px output tile that training cuts "
                             f"from it: choose a smaller --tile or --depth, or leave the image out")


# What --data-dir must hold, for the errors and the command line's --help.
DATA_DIR_LAYOUT = {
    "isbi2012": "the ISBI 2012 challenge's train-volume.tif and train-labels.tif, or folders image/ and label/ "
                "of PNGs 0.png, 1.png, ... as in github.com/zhixuhao/unet's data/membrane/train",
    "folder": "images/ and masks/ (or image/ + label/, images/ + labels/, image/ + mask/, imgs/ + masks/) with "
              "files paired by name; or give --image-dir and --mask-dir instead",
}


def _training_data(train_set, train, val_set, val, w0, sigma, weights):
    def maps(data, indices):
        if not weights:
            return [None] * len(indices)
        if data.instances:
            return [weight_map(data.labels[i], w0=w0, sigma=sigma) for i in indices]
        return [class_balance_map(data.class_labels(i), data.n_classes) for i in indices]

    return TrainingData(
        train_images=[train_set.images[i] for i in train], train_labels=[train_set.class_labels(i) for i in train],
        train_weights=maps(train_set, train), val_images=[val_set.images[i] for i in val],
        val_labels=[val_set.class_labels(i) for i in val], val_weights=maps(val_set, val),
        n_classes=train_set.n_classes, name=train_set.name)
