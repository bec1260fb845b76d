"""Data augmentation of the U-Net paper: elastic deformation, shifts, rotations, flips, gray values.

All geometric changes (flip, rotation, shift, elastic) are composed into ONE sampling map, applied once to
the image (bicubic, order 3), the labels (nearest, order 0, so no new label values appear) and the weight
map (linear, order 1): the three stay aligned, and the image is interpolated only once.
Outside the image, values are mirrored (scipy mode 'reflect': ... c b a | a b c ..., the edge pixel
repeated, the same convention as tiles.mirror_pad), as the paper does at the image border.
Images are expected in [0, 1] (gray-value changes clip to it).
"""
import functools

import numpy as np
from scipy import ndimage

_MODE = "reflect"


def elastic_displacement(shape, rng, std=10.0, grid=3):
    """Smooth displacement field (2, H, W), in pixels: Gaussian vectors (std pixels) on a grid x grid set of
    control points spread over the image, interpolated bicubically to every pixel (the paper: 3x3, 10 px)."""
    shape = _check_shape(shape)
    rng = _check_rng(rng)
    std = _check_nonnegative(std, "std")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"grid must be an int >= 2 (control points per side), got {grid!r}")
    coarse = rng.normal(0.0, std, size=(2, grid, grid)) if std > 0 else np.zeros((2, grid, grid))
    # Cubic-spline interpolation is linear and separable: field = B_y @ coarse @ B_x^T, where B's columns
    # interpolate the unit vectors. Control points sit at rows/cols linspace(0, H-1, grid).
    b_y, b_x = _spline_matrix(shape[0], grid), _spline_matrix(shape[1], grid)
    return np.stack([b_y @ c @ b_x.T for c in coarse])


@functools.lru_cache(maxsize=16)  # one per tile size: training asks for the same few every step
def _spline_matrix(n, grid):
    """(n, grid): row i holds the weights of the grid values at position i * (grid-1)/(n-1), cubic spline."""
    positions = np.linspace(0, grid - 1, n)[None, :]
    matrix = np.stack([ndimage.map_coordinates(unit, positions, order=3, mode="nearest")
                       for unit in np.eye(grid)], axis=1)
    matrix.flags.writeable = False  # shared by every caller
    return matrix


def elastic_deform(image, labels=None, weights=None, rng=None, std=10.0, grid=3):
    """Elastic deformation only: (image, labels, weights) warped through the same smooth random field."""
    image, labels, weights = _check_arrays(image, labels, weights)
    rng = _check_rng(rng)
    coords = _identity(image.shape) + elastic_displacement(image.shape, rng, std, grid)
    return _warp_all(image, labels, weights, coords)


def augment(image, labels=None, weights=None, rng=None, *, elastic=True, elastic_std=10.0, elastic_grid=3,
            max_angle=180.0, right_angles=False, max_shift=0.0, flip=True,
            gray=True, contrast=(0.8, 1.25), brightness=(-0.1, 0.1), gamma=(0.7, 1.4), windows=None):
    """One random augmentation of a 2D image and its aligned labels and weight map (either may be None).

    Geometry: random flips (flip), rotation by an angle uniform in [-max_angle, max_angle] degrees (plus a
    random multiple of 90 degrees when right_angles), a shift uniform in [-max_shift, max_shift] pixels per
    axis, and the paper's elastic deformation (elastic, elastic_std px on an elastic_grid^2 grid).
    Gray values (image only): x^gamma, then (x - mean) * contrast + mean + brightness, clipped to [0, 1].
    windows: None, or (image_window, label_window), each a pair of slices (rows, cols): only these windows of
    the augmented image and of the augmented labels and weights are computed and returned, so a caller that
    needs the context around a tile (random_augmented_tile) pays only for the tile. The random draws are the
    same; the gray-value change sees the image window.
    Returns (image float32, labels with their dtype, weights float32); None stays None.
    """
    image, labels, weights = _check_arrays(image, labels, weights)
    rng = _check_rng(rng)
    if gray and image.size and (image.min() < 0 or image.max() > 1):
        raise ValueError(f"gray-value changes expect an image in [0, 1], got values in "
                         f"[{image.min()}, {image.max()}] (divide 8-bit images by 255, or pass gray=False)")
    max_angle = _check_nonnegative(max_angle, "max_angle")
    max_shift = _check_nonnegative(max_shift, "max_shift")
    contrast, brightness, gamma = (_check_range(contrast, "contrast", positive=True),
                                   _check_range(brightness, "brightness", positive=False),
                                   _check_range(gamma, "gamma", positive=True))

    coords = _identity(image.shape)
    geometric = False
    if flip:
        for axis in (0, 1):
            if rng.random() < 0.5:
                coords[axis] = (image.shape[axis] - 1) - coords[axis]
                geometric = True
    angle = rng.uniform(-max_angle, max_angle) if max_angle > 0 else 0.0
    if right_angles:
        angle += 90.0 * rng.integers(4)
    if angle != 0.0:
        coords = _rotate(coords, image.shape, np.deg2rad(angle))
        geometric = True
    if max_shift > 0:
        coords += rng.uniform(-max_shift, max_shift, size=2)[:, None, None]
        geometric = True
    if elastic:
        coords += elastic_displacement(image.shape, rng, elastic_std, elastic_grid)
        geometric = True
    image_window, label_window = _check_windows(windows)
    if geometric:
        image, labels, weights = _warp_all(image, labels, weights, coords, image_window, label_window)
    else:
        image = image[image_window].astype(np.float32)
        labels = None if labels is None else labels[label_window]
        weights = None if weights is None else weights[label_window].astype(np.float32)
    if gray:
        image = gray_value_change(image, rng, contrast, brightness, gamma)
    return image, labels, weights


def gray_value_change(image, rng, contrast=(0.8, 1.25), brightness=(-0.1, 0.1), gamma=(0.7, 1.4)):
    """Random gamma, contrast (around the mean) and brightness of an image in [0, 1]; result clipped to [0, 1]."""
    rng = _check_rng(rng)
    contrast, brightness, gamma = (_check_range(contrast, "contrast", positive=True),
                                   _check_range(brightness, "brightness", positive=False),
                                   _check_range(gamma, "gamma", positive=True))
    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    image = image ** rng.uniform(*gamma)
    mean = image.mean()
    image = (image - mean) * rng.uniform(*contrast) + mean + rng.uniform(*brightness)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _identity(shape):
    return np.indices(shape, dtype=np.float64)


def _rotate(coords, shape, radians):
    """Sample the input rotated about the image centre: output pixel p reads input R (p - c) + c."""
    centre = (np.array(shape, dtype=np.float64) - 1) / 2
    y, x = coords[0] - centre[0], coords[1] - centre[1]
    cos, sin = np.cos(radians), np.sin(radians)
    return np.stack([cos * y - sin * x + centre[0], sin * y + cos * x + centre[1]])


def _warp_all(image, labels, weights, coords, image_window=(slice(None),) * 2, label_window=(slice(None),) * 2):
    """Sample the three arrays at coords (2, H, W): the image within image_window, the others within label_window."""
    at_image, at_labels = coords[(slice(None), *image_window)], coords[(slice(None), *label_window)]
    image = ndimage.map_coordinates(image.astype(np.float64), at_image, order=3, mode=_MODE).astype(np.float32)
    if labels is not None:
        labels = ndimage.map_coordinates(labels, at_labels, order=0, mode=_MODE, output=labels.dtype)
    if weights is not None:
        weights = ndimage.map_coordinates(weights.astype(np.float64), at_labels, order=1,
                                          mode=_MODE).astype(np.float32)
    return image, labels, weights


def _check_arrays(image, labels, weights):
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2D (H, W), got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
        raise TypeError(f"image must be a real-valued array, got dtype {image.dtype}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != image.shape:
            raise ValueError(f"labels shape {labels.shape} must equal image shape {image.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            hint = " (convert a boolean mask with .astype(np.int32))" if labels.dtype == bool else ""
            raise TypeError(f"labels must hold integers, got dtype {labels.dtype}{hint}")
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != image.shape:
            raise ValueError(f"weights shape {weights.shape} must equal image shape {image.shape}")
    return image, labels, weights


def _check_windows(windows):
    everything = (slice(None),) * 2
    if windows is None:
        return everything, everything
    try:
        image_window, label_window = (tuple(w) for w in windows)
        ok = all(len(w) == 2 and all(isinstance(s, slice) for s in w) for w in (image_window, label_window))
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(f"windows must be None or (image_window, label_window), each a pair of slices (rows, cols), "
                        f"got {windows!r}")
    return image_window, label_window


def _check_shape(shape):
    if len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
        raise ValueError(f"shape must be two positive ints (H, W), got {shape!r}")
    return tuple(int(s) for s in shape)


def _check_rng(rng):
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(rng)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)) or an int seed, "
                        f"got {type(rng).__name__}")
    return rng


def _check_nonnegative(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 and finite, got {value}")
    return float(value)


def _check_range(pair, name, positive):
    try:
        low, high = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair of numbers, got {pair!r}") from None
    if not (low <= high) or (positive and low <= 0):
        raise ValueError(f"{name} must be (low, high) with low <= high{' and low > 0' if positive else ''}, "
                         f"got {pair!r}")
    return low, high
