"""The U-Net paper's pixel-wise loss weights (Ronneberger et al. 2015, eq. 2), and instances from binary masks.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1, d2: distance from x to the nearest and second-nearest cell. The border term is added at background
pixels only (label 0: the membranes and gaps between cells), as in the paper's Fig. 3d, where it forces the
network to learn the thin separations between touching cells. Inside a cell d1 = 0 and the term would only
blur the cell's own weight, so cell pixels get w_c alone.

w_c balances the class frequencies: with class_balance=True each class gets the inverse of its pixel
frequency, scaled so that the cell (foreground) class weighs exactly 1, i.e.
w_c(background) = (#cell pixels) / (#background pixels), w_c(cell) = 1. An image that has only one class
gets w_c = 1 everywhere. class_balance=False: w_c = 1.
"""
import numpy as np
from scipy import ndimage

# Cells farther than this many sigmas change w by less than w0 * 1e-6 (exp(-R^2 / 2) < 1e-6 for R = 5.3),
# below float32 resolution of w, so each cell's distance map is computed only on its bounding box grown by it.
_REACH_SIGMAS = 5.3


def weight_map(instance_labels, w0=10.0, sigma=5.0, class_balance=True):
    """float32 weight map of a 2D instance label image (0 = background, 1..k = cells)."""
    labels = _check_labels(instance_labels, "instance_labels")
    w0 = _check_number(w0, "w0", allow_zero=True)
    sigma = _check_number(sigma, "sigma", allow_zero=False)
    if not isinstance(class_balance, (bool, np.bool_)):
        raise TypeError(f"class_balance must be a bool, got {type(class_balance).__name__}")

    cells = labels > 0
    weights = np.ones(labels.shape, dtype=np.float64)
    n_cell, n_background = int(cells.sum()), int((~cells).sum())
    if class_balance and n_cell > 0 and n_background > 0:
        weights[~cells] = n_cell / n_background
    if w0 > 0:
        d1, d2 = two_nearest_cell_distances(labels, reach=_REACH_SIGMAS * sigma)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma ** 2))   # exp(-inf) = 0 where < 2 cells are near
        weights[~cells] += border[~cells]
    return weights.astype(np.float32)


def two_nearest_cell_distances(instance_labels, reach=np.inf):
    """(d1, d2) float64: Euclidean distance from each pixel to its nearest and second-nearest cell.

    Only the two smallest distances are kept while the cells are visited, never one map per cell. Each
    cell's distance transform is computed on its bounding box grown by `reach` pixels; outside that window
    the distance is > reach and is left as inf (pass reach=inf for exact distances everywhere).
    """
    labels = _check_labels(instance_labels, "instance_labels")
    if labels.size and labels.max() > labels.size:   # sparse huge ids: renumber so find_objects stays small
        labels = np.searchsorted(np.union1d([0], labels), labels)
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    pad = labels.shape[0] + labels.shape[1] if np.isinf(reach) else int(np.ceil(reach))
    for cell_id, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:   # a label number that is not used
            continue
        window = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, labels.shape))
        # The whole cell lies in the window, so distances inside the window are exact.
        d = ndimage.distance_transform_edt(labels[window] != cell_id)
        old1, old2 = d1[window], d2[window]
        d2[window] = np.minimum(old2, np.maximum(old1, d))
        d1[window] = np.minimum(old1, d)
    return d1, d2


def instances_from_mask(mask):
    """Instance labels int32 from a binary cell mask: the 4-connected components of the cells.

    mask: 2D bool, or integers with values in {0, 1} or {0, 255} (ISBI 2012: 255 = cell, 0 = membrane).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D (H, W), got shape {mask.shape}")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.integer):
            raise TypeError(f"mask must be bool or integer, got dtype {mask.dtype}")
        values = (np.flatnonzero(np.bincount(mask.ravel())) if mask.dtype in (np.uint8, np.uint16)
                  else np.unique(mask))
        if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
            raise ValueError(f"mask must be binary with values {{0, 1}} or {{0, 255}}, found values "
                             f"{values.tolist()[:20]}; threshold it first, e.g. mask > 127")
        mask = mask > 0
    labels, _ = ndimage.label(mask)
    return labels.astype(np.int32)


def _check_labels(labels, name):
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be 2D (H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must hold integers (0 = background, 1..k = cells), got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} must be >= 0 (0 = background, 1..k = cells), found {labels.min()}")
    return labels


def _check_number(value, name, allow_zero):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}")
    return value
