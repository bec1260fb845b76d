"""Datasets: the embedded synthetic cells, ISBI 2012 (EM membranes), and any folder of images + masks.

Every loader returns a Dataset:
- images: float32 (n, H, W) in [0, 1] (a list of 2D arrays if the images differ in size). Colour images
  are converted to gray with the ITU-R 601 luma weights 0.299 R + 0.587 G + 0.114 B (alpha ignored).
  Intensities: 8-bit / 255, bool as 0/1, floats already in [0, 1] kept; anything else (16-bit, other floats)
  is stretched per image to [0, 1] by its min and max.
- labels: int32, same layout. When `instances` is True they are instance labels (0 = background/membrane,
  1..k = cells; weight_map needs them) and the task is binary (n_classes = 2); otherwise class indices
  0..n_classes-1. `class_labels(i)` gives the class indices in both cases.

Masks must hold class indices 0..K-1. Binary masks stored as 0/255 (the usual cause of all-black U-Net
predictions: 255 is read as class 255) are recognised and mapped to 0/1; any other value set is an error
that lists the values found and how to fix them.
"""
import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from .synthetic import synthetic_cells
from .weight_map import instances_from_mask

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
FOLDER_LAYOUTS = (("images", "masks"), ("image", "label"), ("images", "labels"), ("image", "mask"),
                  ("imgs", "masks"))
KINDS = ("synthetic", "isbi2012", "folder")


@dataclass
class Dataset:
    images: object          # float32 (n, H, W) in [0, 1], or a list of 2D arrays of different sizes
    labels: object          # int32, same layout: instance labels if `instances`, else class indices
    n_classes: int
    name: str
    instances: bool
    files: list = field(default_factory=list)   # the image files, when loaded from disk

    def __len__(self):
        return len(self.images)

    def class_labels(self, i):
        """Class indices (int32) of item i: 1 = cell wherever an instance label is > 0."""
        labels = self.labels[i]
        return (labels > 0).astype(np.int32) if self.instances else labels


def load_dataset(kind, data_dir=None, **options):
    """kind: "synthetic" (no files; options n, size, seed, cell_size), "isbi2012" (data_dir; option
    instances) or "folder" (data_dir holding images/ + masks/ or another FOLDER_LAYOUTS pair, or the
    options image_dir and mask_dir; options n_classes, mask_suffix, instances)."""
    if kind == "synthetic":
        if data_dir is not None:
            raise ValueError("the synthetic dataset is generated, it takes no data_dir")
        return load_synthetic(**options)
    if kind == "isbi2012":
        return load_isbi2012(_need_dir(data_dir, kind), **options)
    if kind == "folder":
        if data_dir is None and "image_dir" in options and "mask_dir" in options:
            return load_folder(**options)
        return load_folder(*_find_layout(_need_dir(data_dir, kind)), **options)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


ISBI_ENV = "MINUNET_ISBI_DIR"


def isbi2012_places():
    """Where find_isbi2012 looks, in order: $MINUNET_ISBI_DIR when set, then beside and inside a source
    checkout: <repository root>/../shared/data/isbi2012 (where CI keeps it), <root>/shared/data/isbi2012,
    <root>/data/isbi2012."""
    root = Path(__file__).resolve().parents[2]  # minunet/data/loaders.py -> the repository root
    env = [Path(os.environ[ISBI_ENV]).expanduser()] if os.environ.get(ISBI_ENV) else []
    return env + [root.parent / "shared" / "data" / "isbi2012", root / "shared" / "data" / "isbi2012",
                  root / "data" / "isbi2012"]


def find_isbi2012():
    """(the first folder of isbi2012_places(), or None; and a sentence naming every place looked)."""
    places = isbi2012_places()
    found = next((p for p in places if p.is_dir()), None)
    return found, f"looked for ISBI 2012 in {', '.join(map(str, places))} (set {ISBI_ENV} to its folder)"


def load_synthetic(n=32, size=256, seed=0, cell_size=32):
    images, labels = synthetic_cells(n, size, seed, cell_size=cell_size)
    return Dataset(images, labels, n_classes=2, name=f"synthetic(n={n}, size={size}, seed={seed})",
                   instances=True)


def load_isbi2012(data_dir, instances=True):
    """ISBI 2012 EM segmentation training data (30 images 512x512; label 255 = cell, 0 = membrane).

    data_dir holds either the challenge's multi-page TIFF stacks train-volume.tif and train-labels.tif, or
    folders image/ and label/ of PNGs named 0.png, 1.png, ... (as in the data/membrane/train folder of
    github.com/zhixuhao/unet). instances=True: labels are the connected components of the cells (for
    weight_map); False: class masks 1 = cell, 0 = membrane.
    """
    data_dir = Path(data_dir)
    volume, label_volume = data_dir / "train-volume.tif", data_dir / "train-labels.tif"
    if volume.is_file() and label_volume.is_file():
        images = [_to_unit_float(frame, volume) for frame in read_tiff_stack(volume)]
        masks = [_to_integer_mask(frame, label_volume) for frame in read_tiff_stack(label_volume)]
        files = [f"{volume}[{i}]" for i in range(len(images))]
        if len(images) != len(masks):
            raise ValueError(f"{volume} has {len(images)} pages but {label_volume} has {len(masks)}")
        mask_names = [f"{label_volume}[{i}]" for i in range(len(masks))]
    elif (data_dir / "image").is_dir() and (data_dir / "label").is_dir():
        image_paths, mask_paths = pair_files(data_dir / "image", data_dir / "label")
        images = [read_image(p) for p in image_paths]
        masks = [read_mask(p) for p in mask_paths]
        files, mask_names = [str(p) for p in image_paths], [str(p) for p in mask_paths]
    else:
        raise FileNotFoundError(
            f"no ISBI 2012 data in {data_dir}: expected train-volume.tif + train-labels.tif (multi-page TIFF) "
            f"or folders image/ and label/ with 0.png, 1.png, ... (found: {_listing(data_dir)})")
    _check_same_sizes(images, masks, files, mask_names)
    for mask, name in zip(masks, mask_names):
        values = distinct_values(mask)
        if not set(values.tolist()) <= {0, 255}:
            raise ValueError(f"ISBI 2012 labels must be 0 (membrane) or 255 (cell); {name} has values "
                             f"{_show(values)}")
    labels = [instances_from_mask(m) if instances else (m == 255).astype(np.int32) for m in masks]
    return Dataset(_stack(images, np.float32), _stack(labels, np.int32), n_classes=2, name="isbi2012",
                   instances=bool(instances), files=files)


def load_folder(image_dir, mask_dir, n_classes=None, mask_suffix="", instances=False):
    """Images and masks paired by file stem (mask stem = image stem + mask_suffix), in natural order.

    n_classes=None infers it from the masks (whose values must then be 0..K-1 with no gaps, or 0/255);
    instances=True turns binary masks into instance labels (connected components) for weight_map.
    """
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer))
                                  or n_classes < 2):
        raise ValueError(f"n_classes must be None (infer) or an int >= 2, got {n_classes!r}")
    image_paths, mask_paths = pair_files(image_dir, mask_dir, mask_suffix)
    images = [read_image(p) for p in image_paths]
    masks = [read_mask(p) for p in mask_paths]
    _check_same_sizes(images, masks, image_paths, mask_paths)
    masks, n_classes = normalize_masks(masks, mask_paths, n_classes)
    if instances:
        if n_classes != 2:
            raise ValueError(f"instances=True needs binary masks (2 classes), the masks have {n_classes}")
        masks = [instances_from_mask(m) for m in masks]
    return Dataset(_stack(images, np.float32), _stack(masks, np.int32), n_classes=int(n_classes),
                   name=f"folder({Path(image_dir).name})", instances=bool(instances),
                   files=[str(p) for p in image_paths])


def normalize_masks(masks, names, n_classes=None):
    """Validate masks and return (masks as int32 class indices, n_classes); 0/255 binary masks become 0/1."""
    out, values_per_mask = [], []
    for mask, name in zip(masks, names):
        values = set(distinct_values(mask).tolist())
        if 255 in values and values <= {0, 255} and n_classes in (None, 2):
            mask = (mask == 255)    # binary mask saved as 0/255: 255 would be read as class 255
            values = {v // 255 for v in values}
        if n_classes is not None and max(values) >= n_classes:
            raise ValueError(_mask_error(name, values, f"values must be class indices 0..{n_classes - 1} "
                                                       f"(n_classes={n_classes})"))
        values_per_mask.append(values)
        out.append(mask.astype(np.int32))
    if n_classes is None:
        union = set().union(*values_per_mask)
        k = max(union) + 1
        if union != set(range(k)):   # a gap: some value >= the number of distinct values
            bad = [(name, v) for name, v in zip(names, values_per_mask) if max(v) >= len(union)]
            name, values = bad[0]
            also = f" (and {len(bad) - 1} more masks)" if len(bad) > 1 else ""
            raise ValueError(_mask_error(f"{name}{also}", values, "values must be class indices 0..K-1 "
                                         f"without gaps (all masks together hold {_show(sorted(union))}), "
                                         f"or binary 0/255"))
        if k < 2:
            raise ValueError(f"all {len(names)} masks are background only (value 0); if that is intended, "
                             f"pass n_classes (--n-classes on the command line)")
        n_classes = k
    return out, int(n_classes)


def _mask_error(where, values, rule):
    values = np.array(sorted(values))
    fix = (f"map them to indices, e.g. mask = np.searchsorted({values.tolist()}, mask) "
           if len(values) <= 16 else "relabel them to indices 0..K-1 ")
    return (f"unexpected mask values {_show(values)} in {where}: {rule}. Masks must hold class indices "
            f"(0 = background, 1 = first class, ...); binary masks may also be 0/255. Values in between "
            f"usually come from anti-aliased drawing, resizing with interpolation or JPEG compression "
            f"(save masks as PNG, resize with nearest neighbour). To fix: {fix}"
            f"and save as 8-bit PNG, or pass n_classes (--n-classes on the command line) if the values are already "
            f"class indices.")


def pair_files(image_dir, mask_dir, mask_suffix=""):
    """(image paths, mask paths) paired by stem, natural order (2 before 10). Errors name unpaired files."""
    images, masks = files_by_stem(image_dir, "image_dir"), files_by_stem(mask_dir, "mask_dir")
    masks = {stem[:len(stem) - len(mask_suffix)] if mask_suffix else stem: path for stem, path in masks.items()
             if stem.endswith(mask_suffix)}
    lonely_images = sorted(set(images) - set(masks), key=natural_key)
    lonely_masks = sorted(set(masks) - set(images), key=natural_key)
    if lonely_images or lonely_masks:
        raise ValueError(
            f"images and masks are paired by file stem (mask = image stem + {mask_suffix!r}); "
            f"{len(lonely_images)} images without a mask {_show(lonely_images)} in {image_dir}, "
            f"{len(lonely_masks)} masks without an image {_show(lonely_masks)} in {mask_dir}")
    stems = sorted(images, key=natural_key)
    return [images[s] for s in stems], [masks[s] for s in stems]


def natural_key(text):
    """Sort key that orders embedded numbers by value: 'img2' < 'img10'."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", text) if part]


def files_grouped_by_stem(folder, suffixes=IMAGE_SUFFIXES):
    """{stem: [paths]} of the visible files in folder with one of suffixes, in name order. A folder that cannot
    be read, or a link among them to a file that is not there, is a ValueError naming it (never skipped)."""
    grouped = {}
    try:
        paths = sorted(Path(folder).iterdir())
    except OSError as e:
        raise ValueError(f"{folder} cannot be read ({e.strerror}): check its permissions") from None
    for path in paths:
        if path.name.startswith(".") or path.suffix.lower() not in suffixes:
            continue
        if path.is_symlink() and not path.exists():
            raise ValueError(f"{path} is a broken symbolic link (to {os.readlink(path)}, which does not exist): "
                             f"restore its target or remove the link")
        if path.is_file():
            grouped.setdefault(path.stem, []).append(path)
    return grouped


def files_by_stem(folder, name, suffixes=IMAGE_SUFFIXES):
    """{stem: path} of the files in folder with one of suffixes; two files with one stem are an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{name} {folder} is not a folder")
    found = {}
    for stem, paths in files_grouped_by_stem(folder, suffixes).items():
        if len(paths) > 1:
            raise ValueError(f"two files with the stem {stem!r} in {folder}: {paths[0].name} and {paths[1].name}")
        found[stem] = paths[0]
    if not found:
        raise ValueError(f"{name} {folder} has no image files ({', '.join(suffixes)})")
    return found


def read_tiff_stack(path):
    """Every page of a (multi-page) TIFF as a NumPy array."""
    with _open_image(path) as img:
        return [np.array(frame) for frame in ImageSequence.Iterator(img)]


@contextlib.contextmanager
def _open_image(path):
    """Image.open, with a one-line ValueError naming the file for one that is not an image or is truncated."""
    try:
        with Image.open(path) as img:
            yield img
    except FileNotFoundError:
        raise
    except OSError as e:  # PIL.UnidentifiedImageError is an OSError, and so is "image file is truncated"
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def read_image(path):
    """One 2D float32 image in [0, 1] (see the module doc for colour and intensity conversion)."""
    return _to_unit_float(_read_single(path), path)


def read_image_pages(path):
    """Yields every page of a (multi-page) TIFF, one at a time, as read_image reads one image."""
    with _open_image(path) as img:
        for k, frame in enumerate(ImageSequence.Iterator(img)):
            yield _to_unit_float(np.array(frame), f"{path} page {k}")


def read_mask(path):
    """One 2D integer mask, values as stored (palette PNGs give their palette indices)."""
    return _to_integer_mask(_read_single(path), path)


def _read_single(path):
    with _open_image(path) as img:
        if getattr(img, "n_frames", 1) > 1:
            raise ValueError(f"{path} has {img.n_frames} pages; the folder loader reads single images "
                             f"(for a stack use load_isbi2012 or split it)")
        if img.mode == "LA":
            img = img.convert("L")
        elif img.mode in ("RGBA", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
            img = img.convert("RGB")
        return np.array(img)


_UINT8_TO_UNIT = (np.arange(256) / 255.0).astype(np.float32)


def _to_unit_float(array, path):
    if array.ndim == 3:
        if array.shape[2] < 3:
            raise ValueError(f"{path}: expected a gray or RGB image, got shape {array.shape}")
        gray = array[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        array = gray / 255.0 if array.dtype == np.uint8 else gray
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2D image, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return _UINT8_TO_UNIT[array]  # (array / 255.0).astype(np.float32), bit for bit, without the float64 copy
    floating = np.issubdtype(array.dtype, np.floating)
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: the image holds NaN or infinite values")
    low, high = array.min(), array.max()
    if floating and low >= 0 and high <= 1:
        return array.astype(np.float32)
    return ((array - low) / (high - low) if high > low else np.zeros_like(array)).astype(np.float32)


def _to_integer_mask(array, path):
    if array.ndim == 3:
        color = array[..., :3]
        if not (np.array_equal(color[..., 0], color[..., 1]) and np.array_equal(color[..., 0], color[..., 2])):
            raise ValueError(f"{path} is a colour mask; masks must be single-channel class indices "
                             f"0..K-1 (map each colour to its index and save as an 8-bit gray PNG)")
        array = color[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2D mask, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(_mask_error(path, np.unique(array).tolist(), "values must be whole numbers"))
        array = array.astype(np.int64)
    if array.min() < 0:
        raise ValueError(_mask_error(path, np.unique(array).tolist(), "values must be >= 0"))
    return array


def _check_same_sizes(images, masks, image_names, mask_names):
    for image, mask, image_name, mask_name in zip(images, masks, image_names, mask_names):
        if image.shape != mask.shape:
            raise ValueError(f"size mismatch: image {image_name} is {image.shape[1]}x{image.shape[0]} (WxH) "
                             f"but its mask {mask_name} is {mask.shape[1]}x{mask.shape[0]}")


def distinct_values(array):
    """Sorted distinct values; a histogram for small non-negative integers (much faster than np.unique)."""
    array = np.asarray(array)
    if array.dtype in (np.uint8, np.uint16, bool):
        return np.flatnonzero(np.bincount(array.ravel().astype(np.intp, copy=False)))
    return np.unique(array)


def _stack(arrays, dtype):
    arrays = [np.asarray(a, dtype=dtype) for a in arrays]
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    return arrays


def _find_layout(data_dir):
    for images, masks in FOLDER_LAYOUTS:
        if (data_dir / images).is_dir() and (data_dir / masks).is_dir():
            return data_dir / images, data_dir / masks
    raise FileNotFoundError(f"{data_dir} has none of the folder pairs "
                            f"{', '.join(f'{a}/ + {b}/' for a, b in FOLDER_LAYOUTS)} "
                            f"(found: {_listing(data_dir)}); or pass image_dir= and mask_dir= (train: --image-dir and "
                            f"--mask-dir)")


def _need_dir(data_dir, kind):
    if data_dir is None:
        raise ValueError(f"load_dataset({kind!r}) needs data_dir, the folder holding the data")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir {data_dir} is not a folder")
    return data_dir


def _listing(folder):
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(folder).iterdir())
    except OSError:
        return "nothing: not a readable folder"
    return _show(names) if names else "an empty folder"


def _show(items, limit=12):
    items = list(np.asarray(items).tolist()) if isinstance(items, np.ndarray) else list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"
