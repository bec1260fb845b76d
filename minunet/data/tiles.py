"""Tiles for the U-Net's valid convolutions: an input tile larger than its output tile, mirrored at borders.

The U-Net sees in_size x in_size pixels and predicts the out_size x out_size centre (the paper: 572 -> 388).
To predict pixels at the image border, the missing context is mirrored (the paper's Fig. 2). Mirroring here
repeats the edge pixel (... c b a | a b c ...: numpy's 'symmetric', scipy.ndimage's 'reflect', the same
convention as augment.py), and extends periodically when the pad is wider than the image.
"""
import numpy as np

from .augment import augment


def mirror_pad(image, pad):
    """Mirror-pad the last two axes of image by pad (int, or (pad_y, pad_x)) pixels on each side."""
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (..., H, W), got shape {image.shape}")
    pad_y, pad_x = _check_pad(pad)
    h, w = image.shape[-2:]
    if h == 0 or w == 0:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    rows = mirror_index(np.arange(-pad_y, h + pad_y), h)
    cols = mirror_index(np.arange(-pad_x, w + pad_x), w)
    return image[..., rows[:, None], cols[None, :]]


def mirror_index(index, n):
    """Map any integer positions onto 0..n-1 by mirroring with the edge repeated (period 2n)."""
    index = np.mod(np.asarray(index), 2 * n)
    return np.where(index < n, index, 2 * n - 1 - index)


def tile_at(image, labels, weights, top, left, in_size, out_size):
    """The tiles whose OUTPUT window starts at (top, left) of the image.

    Returns (input tile (in_size, in_size) of image, centred on the output window and mirrored where it
    leaves the image; labels and weights (out_size, out_size) at (top, left)); None stays None.
    """
    image, labels, weights = _check_arrays(image, labels, weights)
    margin = _check_sizes(in_size, out_size, image.shape)
    h, w = image.shape
    for name, value, limit in (("top", top, h - out_size), ("left", left, w - out_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= limit:
            raise ValueError(f"{name} must be an int in [0, {limit}] for an output tile of {out_size} px, "
                             f"got {value!r}")
    rows = mirror_index(np.arange(top - margin, top + out_size + margin), h)
    cols = mirror_index(np.arange(left - margin, left + out_size + margin), w)
    image_tile = image[rows[:, None], cols[None, :]]
    window = (slice(top, top + out_size), slice(left, left + out_size))
    return (image_tile, None if labels is None else labels[window].copy(),
            None if weights is None else weights[window].copy())


def random_tile(image, labels, weights, in_size, out_size, rng):
    """Tiles at a uniformly random output position; any output pixel, the image border included, can be drawn."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    image, labels, weights = _check_arrays(image, labels, weights)
    _check_sizes(in_size, out_size, image.shape)
    top = int(rng.integers(0, image.shape[0] - out_size + 1))
    left = int(rng.integers(0, image.shape[1] - out_size + 1))
    return tile_at(image, labels, weights, top, left, in_size, out_size)


def random_augmented_tile(image, labels, weights, in_size, out_size, rng, **augment_options):
    """random_tile followed by augment(**augment_options), done on a window around the tile only.

    The window is the input tile grown by what a rotation (x sqrt 2), the shift and the elastic field
    (3 std) can pull in, so the cost follows the tile, not the image; within the window only the tiles
    themselves are interpolated (augment's `windows`). Labels and weights are mirrored at
    the image border like the image, since a rotated or deformed tile can look past it.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    image, labels, weights = _check_arrays(image, labels, weights)
    margin = _check_sizes(in_size, out_size, image.shape)
    reach = (np.sqrt(2) - 1) * in_size / 2 + 3 * float(augment_options.get("elastic_std", 10.0)) \
        + float(augment_options.get("max_shift", 0.0)) + 2
    grow = margin + int(np.ceil(reach))
    top = int(rng.integers(0, image.shape[0] - out_size + 1))
    left = int(rng.integers(0, image.shape[1] - out_size + 1))
    rows = mirror_index(np.arange(top - grow, top + out_size + grow), image.shape[0])[:, None]
    cols = mirror_index(np.arange(left - grow, left + out_size + grow), image.shape[1])[None, :]
    context = [None if a is None else a[rows, cols] for a in (image, labels, weights)]
    inner = slice(grow - margin, grow - margin + in_size)
    out = slice(grow, grow + out_size)
    return augment(*context, rng=rng, windows=((inner, inner), (out, out)), **augment_options)


def _check_pad(pad):
    pads = (pad, pad) if isinstance(pad, (int, np.integer)) and not isinstance(pad, bool) else pad
    try:
        pad_y, pad_x = pads
    except (TypeError, ValueError):
        raise TypeError(f"pad must be an int or a pair (pad_y, pad_x), got {pad!r}") from None
    for p in (pad_y, pad_x):
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0:
            raise ValueError(f"pad must be non-negative ints, got {pad!r}")
    return int(pad_y), int(pad_x)


def _check_sizes(in_size, out_size, shape):
    for name, value in (("in_size", in_size), ("out_size", out_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if in_size < out_size or (in_size - out_size) % 2:
        raise ValueError(f"in_size - out_size must be even and >= 0 (the output is the input's centre), "
                         f"got in_size={in_size}, out_size={out_size}")
    if out_size > min(shape):
        raise ValueError(f"out_size {out_size} is larger than the image {shape}; use a smaller tile")
    return (in_size - out_size) // 2


def _check_arrays(image, labels, weights):
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2D (H, W), got shape {image.shape}")
    arrays = [image]
    for name, array in (("labels", labels), ("weights", weights)):
        if array is not None:
            array = np.asarray(array)
            if array.shape != image.shape:
                raise ValueError(f"{name} shape {array.shape} must equal image shape {image.shape}")
        arrays.append(array)
    return tuple(arrays)
