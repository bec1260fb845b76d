"""Synthetic microscopy: touching, clustered cells separated by thin membranes (the embedded default data).

How one image is made (all seeded, NumPy/SciPy only, ~20 ms for 256x256):
1. Seeds on a jittered grid of `cell_size` px; each seed gets its own elliptical metric (random orientation,
   aspect ratio, size), and each pixel goes to the seed with the smallest metric distance: a weighted Voronoi
   packing with curved walls.
2. Pixels farther than a cut-off from their seed are background, so cells facing empty space are round;
   seeds under a smooth random field are dropped, which leaves gaps between clusters of touching cells.
3. Membranes: a pixel is a boundary pixel when a neighbour belongs to another cell (or to the background).
   Boundary pixels are labelled 0, like the membranes of the ISBI 2012 EM data, so touching cells are
   separate instances; instances are the 4-connected components of what is left.
4. Rendering: per-cell brightness, smooth texture, granules, some nuclei, dark (EM-like) or bright
   (phase-contrast-like) membranes, then blur, uneven illumination and noise.
"""
import numpy as np
from scipy import ndimage

# The 3x3 neighbourhood search of _assign_pixels is exact only while these bounds hold (see there).
_JITTER = 0.35          # seed offset from its grid-cell centre, in cell sizes
_MAX_ASPECT = 1.5       # ellipse axis ratio of a seed's metric
_SCALE_RANGE = (0.88, 1.12)
_CUT = 0.72             # pixels with metric distance above this (in cell sizes) are background


def synthetic_cells(n, size=256, seed=0, *, cell_size=32):
    """n synthetic microscopy images and their instance labels.

    Returns (images float32 (n, size, size) in [0, 1], labels int32 (n, size, size)), where label 0 is
    background or membrane and 1..k are the cells of that image. Image i depends only on (seed, i), so
    the first images are the same whatever n is.
    """
    n = _check_int(n, "n", minimum=1)
    size = _check_int(size, "size", minimum=16)
    seed = _check_int(seed, "seed", minimum=0)
    cell_size = _check_int(cell_size, "cell_size", minimum=8)
    if cell_size > size:
        raise ValueError(f"cell_size must be at most size ({size}), got {cell_size}")
    images = np.empty((n, size, size), dtype=np.float32)
    labels = np.empty((n, size, size), dtype=np.int32)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        images[i], labels[i] = _one_image(size, cell_size, rng)
    return images, labels


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _one_image(size, cell, rng):
    seeds = _random_seeds(size, cell, rng)
    region, dist = _assign_pixels(size, cell, seeds)
    boundary = _membranes(region, two_px=rng.random() < 0.5)
    labels = _instances(region, boundary, min_area=max(8, cell * cell // 20))
    nucleus_radius = np.where(rng.random(seeds["y"].size) < 0.6,
                              rng.uniform(0.22, 0.38, seeds["y"].size) * cell, 0.0)
    nucleus = (labels > 0) & (dist < nucleus_radius[np.maximum(region - 1, 0)])
    return _render(labels, boundary, nucleus, rng), labels


def _random_seeds(size, cell, rng):
    """One seed per grid cell; grid cell (a, b) covers pixels [(a-1)c, ac) x [(b-1)c, bc), one spare ring."""
    g = size // cell + 3
    a, b = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    y = (a - 0.5 + rng.uniform(-_JITTER, _JITTER, (g, g))) * cell
    x = (b - 0.5 + rng.uniform(-_JITTER, _JITTER, (g, g))) * cell
    theta = rng.uniform(0, np.pi, (g, g))
    aspect = rng.uniform(1.0, _MAX_ASPECT, (g, g))
    scale = rng.uniform(*_SCALE_RANGE, (g, g))
    # Metric of an ellipse with axis ratio `aspect` along (cos, sin) and unit area: q = dp^T M dp.
    cos, sin = np.cos(theta), np.sin(theta)
    m_yy = cos ** 2 / aspect + sin ** 2 * aspect
    m_xx = sin ** 2 / aspect + cos ** 2 * aspect
    m_xy = cos * sin * (1 / aspect - aspect)
    # Clusters: drop the seeds where a smooth random field is low (10-35% of them).
    field = ndimage.gaussian_filter(rng.standard_normal((g, g)), 1.2, mode="wrap")
    kept = field > np.quantile(field, rng.uniform(0.1, 0.35))
    flat = lambda v: v.ravel()
    return dict(g=g, y=flat(y), x=flat(x), m_yy=flat(m_yy), m_xx=flat(m_xx), m_xy=flat(m_xy),
                scale=flat(scale), kept=flat(kept))


def _assign_pixels(size, cell, s):
    """Region id (seed index + 1, 0 = background) and metric distance to the winning seed, per pixel.

    Only the seeds of the 3x3 neighbouring grid cells are searched. That is exact where it matters: a seed
    two cells away is >= (1.5 - _JITTER) cells away, i.e. metric distance >= 1.15 / (sqrt(1.5) * 1.12) = 0.84
    cells > _CUT, so it can't beat a winner that is closer than the cut; farther pixels are background anyway.
    """
    # Work on blocks of cell x cell pixels: every pixel of a block shares the same 9 candidate seeds,
    # so the seed parameters broadcast as (blocks, 1, blocks, 1) instead of being gathered per pixel.
    nb = -(-size // cell)
    coord = np.arange(nb * cell, dtype=np.float64).reshape(nb, cell)
    y, x = coord[:, :, None, None], coord[None, None, :, :]
    best = np.full((nb, cell, nb, cell), np.inf)
    best_seed = np.zeros((nb, cell, nb, cell), dtype=np.int64)
    grid_index = np.arange(s["g"] * s["g"]).reshape(s["g"], s["g"])
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            window = (slice(1 + oy, 1 + oy + nb), slice(1 + ox, 1 + ox + nb))
            idx = grid_index[window][:, None, :, None]
            param = lambda name: s[name].reshape(s["g"], s["g"])[window][:, None, :, None]
            dy, dx = y - param("y"), x - param("x")
            q = param("m_yy") * dy * dy + 2 * param("m_xy") * dy * dx + param("m_xx") * dx * dx
            d = np.sqrt(q) / param("scale")
            closer = d < best
            best = np.where(closer, d, best)
            best_seed = np.where(closer, idx, best_seed)
    best = best.reshape(nb * cell, nb * cell)[:size, :size]
    best_seed = best_seed.reshape(nb * cell, nb * cell)[:size, :size]
    inside = (best < _CUT * cell) & s["kept"][best_seed]
    region = np.where(inside, best_seed + 1, 0).astype(np.int32)
    return region, best


def _membranes(region, two_px):
    """A pixel is membrane if an 8-neighbour has a larger region id (1 px walls that still separate cells
    in 8-connectivity: of two 8-adjacent pixels of different regions the smaller-id one is always marked);
    two_px also marks pixels with a smaller-id 4-neighbour, for thicker walls."""
    boundary = ndimage.maximum_filter(region, size=3, mode="nearest") > region
    if two_px:
        cross = ndimage.generate_binary_structure(2, 1)
        boundary |= ndimage.minimum_filter(region, footprint=cross, mode="nearest") < region
    return boundary


def _instances(region, boundary, min_area):
    """Connected components of the cell pixels; fragments smaller than min_area become background."""
    labels, count = ndimage.label((region > 0) & ~boundary)
    area = np.bincount(labels.ravel(), minlength=count + 1)
    keep = area >= min_area
    keep[0] = False
    new_id = np.zeros(count + 1, dtype=np.int32)
    new_id[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_id[labels]


def _smooth_noise(shape, sigma, rng):
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise / (noise.std() + 1e-12)


def _render(labels, boundary, nucleus, rng):
    shape = labels.shape
    cells = labels > 0
    if rng.random() < 0.65:   # EM-like: bright cells, dark membranes, mid-dark background
        cell_range, membrane, background = (0.5, 0.85), rng.uniform(0.02, 0.15), rng.uniform(0.2, 0.33)
    else:                     # phase-contrast-like: bright halo membranes, dark background
        cell_range, membrane, background = (0.4, 0.62), rng.uniform(0.88, 1.0), rng.uniform(0.06, 0.2)
    brightness = rng.uniform(*cell_range, labels.max() + 1)
    image = np.where(cells, brightness[labels], background)
    # Textures: cytoplasm and background differ in grain so the network can't rely on brightness alone.
    image *= np.where(cells, 1 + 0.07 * _smooth_noise(shape, 2.0, rng), 1 + 0.12 * _smooth_noise(shape, 4.0, rng))
    granules = ndimage.gaussian_filter((rng.random(shape) < 0.01).astype(np.float64), 0.8) * 4
    image += np.where(cells, 0.15 * granules, 0.0)
    image = np.where(nucleus, image * rng.uniform(0.72, 0.85), image)
    image[boundary] = membrane
    image = ndimage.gaussian_filter(image, rng.uniform(0.5, 1.0))
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    angle = rng.uniform(0, 2 * np.pi)
    image *= 1 + rng.uniform(0, 0.12) * ((np.cos(angle) * yy + np.sin(angle) * xx) - 0.5)
    image += rng.normal(0.0, rng.uniform(0.015, 0.04), shape)
    return np.clip(image, 0.0, 1.0)
