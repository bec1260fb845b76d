"""minunet.data: synthetic cells, the paper's weight map, augmentation, tiles and the loaders."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import assert_close
from minunet.data import (augment, elastic_deform, elastic_displacement, find_isbi2012, instances_from_mask,
                          load_dataset, load_folder, load_isbi2012, mirror_pad, natural_key, random_augmented_tile,
                          random_tile, synthetic_cells, tile_at, two_nearest_cell_distances, weight_map)

ISBI_DIR, ISBI_LOOKED = find_isbi2012()


# -- synthetic cells ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cells():
    return synthetic_cells(6, 96, seed=3, cell_size=20)


def test_synthetic_shapes_and_determinism(cells):
    images, labels = cells
    assert images.shape == labels.shape == (6, 96, 96)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.min() >= 0 and images.max() <= 1
    again = synthetic_cells(6, 96, seed=3, cell_size=20)
    assert np.array_equal(again[0], images) and np.array_equal(again[1], labels)
    # image i depends on (seed, i) only
    first = synthetic_cells(2, 96, seed=3, cell_size=20)
    assert np.array_equal(first[0], images[:2]) and np.array_equal(first[1], labels[:2])
    other = synthetic_cells(2, 96, seed=4, cell_size=20)
    assert not np.array_equal(other[1], labels[:2]) and not np.allclose(other[0], images[:2])


def test_synthetic_cells_touch_and_are_separate_instances(cells):
    images, labels = cells
    touching = 0
    for image, lab in zip(images, labels):
        assert lab.max() >= 8, "too few cells"
        assert np.array_equal(np.unique(lab), np.arange(lab.max() + 1)), "labels not consecutive"
        # instances are exactly the 4-connected components of the foreground ...
        components, count = ndimage.label(lab > 0)
        assert count == lab.max()
        pairs = np.stack([components[lab > 0], lab[lab > 0]], axis=1)
        assert len(np.unique(pairs, axis=0)) == count
        # ... and no two different cells are 8-adjacent (a membrane always lies between them)
        big = np.where(lab > 0, lab, np.iinfo(np.int32).max)
        near_max = ndimage.maximum_filter(lab, size=3, mode="constant")
        near_min = ndimage.minimum_filter(big, size=3, mode="constant", cval=np.iinfo(np.int32).max)
        fg = lab > 0
        assert np.all(near_max[fg] == lab[fg]) and np.all(near_min[fg] == lab[fg])
        # touching: background pixels with two different cells within 2 px (membranes are 1-2 px)
        hi = ndimage.maximum_filter(lab, size=5)
        lo = ndimage.minimum_filter(big, size=5)
        touching += int(np.sum((lab == 0) & (lo < hi) & (hi > 0)))
        # the information is in the image: cells and membranes/background differ clearly in brightness
        boundary_mean = image[(lab == 0) & (hi > 0)].mean()
        assert abs(image[fg].mean() - boundary_mean) > 0.15
    assert touching > 100


def test_synthetic_bad_arguments():
    with pytest.raises(ValueError, match="n"):
        synthetic_cells(0, 64, 0)
    with pytest.raises(ValueError, match="size"):
        synthetic_cells(1, 8, 0)
    with pytest.raises(ValueError, match="seed"):
        synthetic_cells(1, 64, -1)
    with pytest.raises(TypeError, match="size"):
        synthetic_cells(1, 64.0, 0)
    with pytest.raises(ValueError, match="cell_size"):
        synthetic_cells(1, 32, 0, cell_size=40)


# -- weight map ----------------------------------------------------------------------------------------------
def two_rectangles():
    """Cells at columns 2..9 and 15..22 of rows 10..29: 6 px apart (pixel centres 9 -> 15)."""
    labels = np.zeros((40, 80), dtype=np.int32)
    labels[10:30, 2:10] = 1
    labels[10:30, 15:23] = 2
    return labels


def test_weight_map_known_distances():
    labels = two_rectangles()
    n_cell = int((labels > 0).sum())
    w_background = n_cell / (labels.size - n_cell)
    w = weight_map(labels, w0=10, sigma=5)
    assert w.dtype == np.float32 and w.shape == labels.shape
    # midpoint between the cells: d1 = d2 = 3
    assert_close(w[20, 12], w_background + 10 * np.exp(-36 / 50), atol=0, rtol=1e-6, name="midpoint")
    # next to cell 1: d1 = 1, d2 = 5
    assert_close(w[20, 10], w_background + 10 * np.exp(-36 / 50), atol=0, rtol=1e-6, name="d1=1,d2=5")
    # col 11: d1 = 2, d2 = 4, the same sum
    assert_close(w[20, 11], w_background + 10 * np.exp(-36 / 50), atol=0, rtol=1e-6, name="d1=2,d2=4")
    # far right: d1 = 76 - 22 = 54, d2 = 76 - 9 = 67: only w_c (float32 can't see exp(-580))
    assert w[20, 76] == np.float32(w_background)
    # cells weigh exactly 1 with class balance
    assert np.all(w[labels > 0] == 1)
    unbalanced = weight_map(labels, w0=10, sigma=5, class_balance=False)
    assert np.all(unbalanced[labels > 0] == 1) and unbalanced[20, 76] == 1
    assert_close(unbalanced[20, 12], 1 + 10 * np.exp(-36 / 50), atol=0, rtol=1e-6)


def test_weight_map_matches_brute_force(cells):
    labels = cells[1][1]
    maps = np.stack([ndimage.distance_transform_edt(labels != i) for i in range(1, labels.max() + 1)])
    maps.sort(axis=0)
    d1, d2 = maps[0], maps[1]
    for class_balance in (True, False):
        n_cell = int((labels > 0).sum())
        w_c = np.where(labels > 0, 1.0, n_cell / (labels.size - n_cell) if class_balance else 1.0)
        ref = w_c + np.where(labels == 0, 7 * np.exp(-(d1 + d2) ** 2 / (2 * 3.5 ** 2)), 0)
        out = weight_map(labels, w0=7, sigma=3.5, class_balance=class_balance)
        assert_close(out, ref, atol=7e-6, rtol=1e-6, name=f"weight map class_balance={class_balance}")
    exact1, exact2 = two_nearest_cell_distances(labels)
    assert_close(exact1, d1, atol=0, rtol=0, name="d1")
    assert_close(exact2, d2, atol=0, rtol=0, name="d2")


def test_weight_map_class_balance_and_edge_cases():
    labels = two_rectangles()
    n_cell = int((labels > 0).sum())
    w = weight_map(labels, w0=0)
    assert np.array_equal(np.unique(w), np.float32([n_cell / (labels.size - n_cell), 1.0]))
    assert np.all(weight_map(labels, w0=0, class_balance=False) == 1)
    # one cell: no second-nearest cell, no border term
    one = (labels == 1).astype(np.int32)
    assert np.array_equal(weight_map(one, w0=10), weight_map(one, w0=0))
    # only one class present: w_c = 1
    assert np.all(weight_map(np.zeros((5, 7), np.int32)) == 1)
    assert np.all(weight_map(np.full((5, 7), 3, np.int32)) == 1)
    # unused label numbers are fine
    for big in (9, 10 ** 12):
        assert np.array_equal(weight_map(np.where(labels == 2, big, labels.astype(np.int64))), weight_map(labels))


def test_weight_map_bad_arguments():
    labels = two_rectangles()
    with pytest.raises(ValueError, match="2D"):
        weight_map(labels[None])
    with pytest.raises(TypeError, match="integers"):
        weight_map(labels.astype(np.float32))
    with pytest.raises(ValueError, match="sigma"):
        weight_map(labels, sigma=-1)
    with pytest.raises(ValueError, match="sigma"):
        weight_map(labels, sigma=0)
    with pytest.raises(ValueError, match="w0"):
        weight_map(labels, w0=-2)
    with pytest.raises(ValueError, match=">= 0"):
        weight_map(labels - 1)


def test_instances_from_mask():
    mask = np.zeros((12, 12), np.uint8)
    mask[1:4, 1:4] = 255
    mask[6:10, 5:11] = 255
    mask[4, 4] = 255                       # diagonal touch only: stays separate (4-connectivity)
    labels = instances_from_mask(mask)
    assert labels.dtype == np.int32 and labels.max() == 3
    assert np.array_equal(instances_from_mask(mask > 0), labels)
    assert np.array_equal(instances_from_mask((mask > 0).astype(np.int64)), labels)
    with pytest.raises(ValueError, match=r"0, 128"):
        instances_from_mask(np.where(mask > 0, 128, 0))
    with pytest.raises(ValueError, match="2D"):
        instances_from_mask(mask[None])


# -- augmentation --------------------------------------------------------------------------------------------
def blocks(shape=(70, 90), seed=0, side=14):
    """Integer labels 0..3 made of large blocks, so that label edges are sparse."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, (shape[0] // side + 1, shape[1] // side + 1)).astype(np.int32)
    return np.kron(coarse, np.ones((side, side), np.int32))[:shape[0], :shape[1]]


def near_edge(labels, width=1):
    """Pixels within `width` of a change of label value, and the frame of `width` pixels (an edge may lie
    just outside the warped view)."""
    size = 2 * width + 1
    edge = ndimage.maximum_filter(labels, size=size) != ndimage.minimum_filter(labels, size=size)
    edge[:width], edge[-width:], edge[:, :width], edge[:, -width:] = True, True, True, True
    return edge


def test_elastic_identity_when_std_is_zero():
    labels = blocks()
    image = np.random.default_rng(1).random(labels.shape).astype(np.float32)
    weights = labels * 0.5 + 1
    out_image, out_labels, out_weights = elastic_deform(image, labels, weights, np.random.default_rng(0), std=0)
    assert_close(out_image, image, atol=1e-5, rtol=0, name="image")
    assert np.array_equal(out_labels, labels) and out_labels.dtype == labels.dtype
    assert_close(out_weights, weights, atol=1e-6, rtol=0, name="weights")
    assert np.all(elastic_displacement((9, 13), np.random.default_rng(0), std=0) == 0)


@pytest.mark.parametrize("options", [dict(), dict(max_angle=0, right_angles=True, max_shift=5.5),
                                     dict(elastic_std=15, elastic_grid=4)])
def test_augment_keeps_image_labels_weights_aligned(options):
    labels = blocks()
    image = labels / 3.0                    # image = labels scaled, so thresholds recover the labels
    weights = labels.astype(np.float32)
    out_image, out_labels, out_weights = augment(image, labels, weights, np.random.default_rng(5),
                                                 gray=False, **options)
    assert out_image.dtype == np.float32 and out_weights.dtype == np.float32 and out_labels.dtype == np.int32
    assert set(np.unique(out_labels)) <= set(np.unique(labels))
    assert not np.array_equal(out_labels, labels), "nothing happened"
    edge = near_edge(out_labels)
    recovered = np.clip(np.round(out_image * 3), 0, 3).astype(np.int32)
    assert np.array_equal(recovered[~edge], out_labels[~edge])
    assert np.array_equal(np.round(out_weights[~edge]).astype(np.int32), out_labels[~edge])
    assert edge.mean() < 0.35


def test_augment_flips_and_right_angles_are_exact():
    labels = blocks((30, 30), seed=2) + 10 * np.arange(30, dtype=np.int32)[:, None]   # no symmetry
    image = labels.astype(np.float64)
    dihedral = [np.rot90(f, k) for f in (labels, labels[::-1]) for k in range(4)]
    seen = set()
    for seed in range(24):
        out_image, out_labels, _ = augment(image, labels, None, np.random.default_rng(seed), elastic=False,
                                           max_angle=0, right_angles=True, gray=False)
        match = [k for k, d in enumerate(dihedral) if np.array_equal(out_labels, d)]
        assert len(match) == 1, "result is not a flip/rotation of the input"
        assert_close(out_image, dihedral[match[0]], atol=1e-6, rtol=1e-7, name="image")
        seen.add(match[0])
    assert len(seen) >= 6
    # flips only, on a non-square image
    rect = blocks((20, 31), seed=3)
    flips = [rect, rect[::-1], rect[:, ::-1], rect[::-1, ::-1]]
    for seed in range(8):
        _, out, _ = augment(rect.astype(float), rect, None, np.random.default_rng(seed), elastic=False,
                            max_angle=0, gray=False)
        assert any(np.array_equal(out, f) for f in flips)


def test_augment_determinism_gray_values_and_errors():
    labels = blocks()
    image = np.random.default_rng(0).random(labels.shape)
    a = augment(image, labels, None, np.random.default_rng(7))
    b = augment(image, labels, None, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] is None
    assert a[0].min() >= 0 and a[0].max() <= 1
    # gray values only: labels untouched, image changed but monotonically (ranks kept)
    g_image, g_labels, _ = augment(image, labels, None, np.random.default_rng(3), elastic=False, max_angle=0,
                                   flip=False)
    assert np.array_equal(g_labels, labels) and not np.allclose(g_image, image)
    inside = (g_image > 0) & (g_image < 1)
    order = np.argsort(image[inside])
    assert np.all(np.diff(g_image[inside][order]) >= -1e-6)
    with pytest.raises(TypeError, match="rng"):
        augment(image, labels, None, None)
    with pytest.raises(ValueError, match="labels shape"):
        augment(image, labels[:-1], None, np.random.default_rng(0))
    with pytest.raises(ValueError, match="2D"):
        augment(image[None], None, None, np.random.default_rng(0))
    with pytest.raises(ValueError, match="std"):
        elastic_deform(image, rng=np.random.default_rng(0), std=-1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        augment(image * 255, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="gamma"):
        augment(image, rng=np.random.default_rng(0), gamma=(0, 1))


@pytest.mark.parametrize("geometry", [dict(), dict(elastic=False, max_angle=0, flip=False)])
def test_augment_windows_compute_only_what_is_cropped(geometry):
    labels = blocks()
    image, weights = np.random.default_rng(0).random(labels.shape), labels * 0.5 + 1
    image_window, label_window = (slice(3, 30), slice(5, 40)), (slice(10, 20), slice(0, 7))
    full = augment(image, labels, weights, np.random.default_rng(2), gray=False, **geometry)
    part = augment(image, labels, weights, np.random.default_rng(2), gray=False, **geometry,
                   windows=(image_window, label_window))
    assert np.array_equal(part[0], full[0][image_window])  # the same draws, and the same values, bit for bit
    assert np.array_equal(part[1], full[1][label_window]) and np.array_equal(part[2], full[2][label_window])
    assert part[0].dtype == part[2].dtype == np.float32 and part[1].dtype == labels.dtype
    with pytest.raises(TypeError, match="windows"):
        augment(image, rng=np.random.default_rng(0), windows=(slice(0, 3), slice(0, 3)))


# -- tiles ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pad", [0, 3, 17, (2, 40)])
def test_mirror_pad_matches_numpy_symmetric(pad):
    image = np.random.default_rng(0).random((13, 19))
    py, px = (pad, pad) if isinstance(pad, int) else pad
    assert np.array_equal(mirror_pad(image, pad), np.pad(image, ((py, py), (px, px)), mode="symmetric"))
    stack = np.stack([image, -image, 2 * image])
    assert np.array_equal(mirror_pad(stack, pad)[2], 2 * mirror_pad(image, pad))


def test_random_tile_alignment_and_border_mirroring():
    h, w = 37, 29
    index = np.arange(h * w, dtype=np.int32).reshape(h, w)        # every pixel distinct
    image = index.astype(np.float32)
    weights = index.astype(np.float32) * 2
    in_size, out_size = 25, 11
    margin = (in_size - out_size) // 2
    padded = mirror_pad(image, margin)
    rng = np.random.default_rng(0)
    corners = set()
    for _ in range(300):
        tile, label_tile, weight_tile = random_tile(image, index, weights, in_size, out_size, rng)
        assert tile.shape == (in_size, in_size) and label_tile.shape == weight_tile.shape == (out_size, out_size)
        centre = tile[margin:margin + out_size, margin:margin + out_size]
        assert np.array_equal(centre, label_tile.astype(np.float32))
        assert np.array_equal(weight_tile, 2 * label_tile.astype(np.float32))
        top, left = np.unravel_index(label_tile[0, 0], (h, w))
        assert np.array_equal(tile, padded[top:top + in_size, left:left + in_size])
        corners.update(name for name, hit in (("top", top == 0), ("bottom", top == h - out_size),
                                              ("left", left == 0), ("right", left == w - out_size)) if hit)
    assert corners == {"top", "bottom", "left", "right"}     # tiles at every image border were drawn
    with pytest.raises(ValueError, match="even"):
        random_tile(image, index, None, 24, 11, rng)
    with pytest.raises(ValueError, match="larger than the image"):
        random_tile(image, None, None, 50, 30, rng)
    with pytest.raises(ValueError, match="top"):
        tile_at(image, None, None, h - out_size + 1, 0, in_size, out_size)
    with pytest.raises(ValueError, match="labels shape"):
        random_tile(image, index[1:], None, in_size, out_size, rng)


def test_random_augmented_tile():
    labels = blocks((64, 80))
    image = labels / 3.0
    plain = dict(elastic=False, max_angle=0, flip=False, gray=False)
    a = random_augmented_tile(image, labels, None, 36, 20, np.random.default_rng(4), **plain)
    b = random_tile(image, labels, None, 36, 20, np.random.default_rng(4))
    assert_close(a[0], b[0], atol=1e-6, rtol=0, name="tile")
    assert np.array_equal(a[1], b[1]) and a[2] is None
    for seed in range(5):
        tile, label_tile, weight_tile = random_augmented_tile(image, labels, labels.astype(float), 36, 20,
                                                              np.random.default_rng(seed), gray=False)
        centre = np.clip(np.round(tile[8:28, 8:28] * 3), 0, 3).astype(np.int32)
        edge = near_edge(label_tile)
        assert np.array_equal(centre[~edge], label_tile[~edge])
        assert np.array_equal(np.round(weight_tile[~edge]).astype(np.int32), label_tile[~edge])


# -- loaders -------------------------------------------------------------------------------------------------
@pytest.mark.skipif(ISBI_DIR is None, reason=f"no ISBI 2012 copy: {ISBI_LOOKED}")
def test_isbi2012_png_folders():
    data = load_dataset("isbi2012", ISBI_DIR)
    assert data.images.shape == data.labels.shape == (30, 512, 512) and data.n_classes == 2
    assert data.images.dtype == np.float32 and 0 <= data.images.min() and data.images.max() <= 1
    assert Path(data.files[10]).name == "10.png" and Path(data.files[2]).name == "2.png"
    expected = np.asarray(Image.open(ISBI_DIR / "image" / "10.png").convert("L")) / 255.0
    assert_close(data.images[10], expected, atol=1e-6, rtol=0)
    mask = np.asarray(Image.open(ISBI_DIR / "label" / "10.png").convert("L"))
    assert np.array_equal(data.class_labels(10), (mask == 255).astype(np.int32))
    assert 0.6 < data.class_labels(10).mean() < 0.9                   # mostly cells, thin membranes
    assert data.instances and np.array_equal(data.labels[10], instances_from_mask(mask))
    assert data.labels[10].max() > 20


def test_the_isbi2012_copy_is_found_from_the_repository_root_or_the_environment(tmp_path, monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.delenv("MINUNET_ISBI_DIR", raising=False)
    found, looked = find_isbi2012()
    for place in (root.parent / "shared/data/isbi2012", root / "shared/data/isbi2012", root / "data/isbi2012"):
        assert str(place) in looked  # the skip reason names every place
    assert found is None or found.is_dir()
    monkeypatch.setenv("MINUNET_ISBI_DIR", str(tmp_path))
    found, looked = find_isbi2012()
    assert found == tmp_path and looked.startswith(f"looked for ISBI 2012 in {tmp_path}, ")


def save_stack(path, frames):
    pages = [Image.fromarray(f) for f in frames]
    pages[0].save(path, save_all=True, append_images=pages[1:])


def test_isbi2012_tiff_stacks(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 256, (3, 20, 24), dtype=np.uint8)
    labels = np.where(rng.random((3, 20, 24)) < 0.7, 255, 0).astype(np.uint8)
    labels[:, :, 11] = 0        # a membrane splits every frame into at least two cells
    save_stack(tmp_path / "train-volume.tif", volume)
    save_stack(tmp_path / "train-labels.tif", labels)
    data = load_isbi2012(tmp_path, instances=False)
    assert data.images.shape == (3, 20, 24) and len(data) == 3
    assert_close(data.images, volume / 255.0, atol=1e-7, rtol=0)
    assert np.array_equal(data.labels, (labels == 255).astype(np.int32))
    inst = load_isbi2012(tmp_path)
    for i in range(3):
        assert np.array_equal(inst.labels[i], instances_from_mask(labels[i]))
        assert inst.labels[i].max() >= 2
    save_stack(tmp_path / "train-labels.tif", labels[:2])
    with pytest.raises(ValueError, match="pages"):
        load_isbi2012(tmp_path)
    bad = labels.copy()
    bad[0, 0, 0] = 7
    save_stack(tmp_path / "train-labels.tif", bad)
    with pytest.raises(ValueError, match=r"0, 7, 255"):
        load_isbi2012(tmp_path)
    with pytest.raises(FileNotFoundError, match="train-volume.tif"):
        load_isbi2012(tmp_path / "nowhere")


def write_pair(root, stem, image, mask, image_suffix=".png", mask_suffix=".png"):
    (root / "images").mkdir(exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{stem}{image_suffix}")
    Image.fromarray(mask).save(root / "masks" / f"{stem}{mask_suffix}")


def test_folder_loader_rgb_binary_masks_and_natural_order(tmp_path):
    rng = np.random.default_rng(0)
    masks = {}
    for stem in ["2", "10", "1"]:
        rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
        mask = np.where(rng.random((9, 11)) < 0.5, 255, 0).astype(np.uint8)
        mask[0, 0], mask[0, 1] = 0, 255
        write_pair(tmp_path, stem, rgb, mask, mask_suffix=".tif")
        masks[stem] = (rgb, mask)
    data = load_dataset("folder", tmp_path)
    assert [Path(f).stem for f in data.files] == ["1", "2", "10"]
    assert data.n_classes == 2 and not data.instances
    for i, stem in enumerate(["1", "2", "10"]):
        rgb, mask = masks[stem]
        gray = rgb.astype(np.float64) @ [0.299, 0.587, 0.114] / 255
        assert_close(data.images[i], gray, atol=1e-6, rtol=0, name="gray")
        assert np.array_equal(data.labels[i], (mask == 255).astype(np.int32))
    inst = load_dataset("folder", tmp_path, instances=True)
    assert np.array_equal(inst.labels[0], instances_from_mask(masks["1"][1]))
    assert sorted(["a10", "a2", "b1", "a1"], key=natural_key) == ["a1", "a2", "a10", "b1"]


def test_folder_loader_class_indices_and_mask_value_errors(tmp_path):
    image = np.zeros((6, 7), np.uint8)
    write_pair(tmp_path, "a", image, np.tile(np.uint8([0, 1, 2, 2, 1, 0, 0]), (6, 1)))
    data = load_folder(tmp_path / "images", tmp_path / "masks")
    assert data.n_classes == 3 and data.labels.max() == 2
    write_pair(tmp_path, "b", image, np.tile(np.uint8([0, 128, 255, 0, 0, 0, 0]), (6, 1)))
    with pytest.raises(ValueError, match=r"\[0, 128, 255\].*b\.png|b\.png.*\[0, 128, 255\]") as error:
        load_folder(tmp_path / "images", tmp_path / "masks")
    assert "searchsorted" in str(error.value) and "0/255" in str(error.value)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        load_folder(tmp_path / "images", tmp_path / "masks", n_classes=3)
    # a gap in the values is refused unless n_classes says so
    write_pair(tmp_path, "b", image, np.tile(np.uint8([0, 4, 0, 0, 0, 0, 0]), (6, 1)))
    with pytest.raises(ValueError, match="without gaps"):
        load_folder(tmp_path / "images", tmp_path / "masks")
    assert load_folder(tmp_path / "images", tmp_path / "masks", n_classes=5).n_classes == 5


def test_folder_loader_pairing_and_size_errors(tmp_path):
    image, mask = np.zeros((6, 7), np.uint8), np.zeros((6, 7), np.uint8)
    mask[2, 2] = 1
    write_pair(tmp_path, "x1", image, mask)
    Image.fromarray(image).save(tmp_path / "images" / "x2.png")
    with pytest.raises(ValueError, match=r"1 images without a mask \[x2\]"):
        load_dataset("folder", tmp_path)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "masks" / "x2.png")
    with pytest.raises(ValueError, match="size mismatch.*x2"):
        load_dataset("folder", tmp_path)
    Image.fromarray(mask).save(tmp_path / "masks" / "x2.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "x3_mask.png")
    with pytest.raises(ValueError, match=r"masks without an image \[x3_mask\]"):
        load_dataset("folder", tmp_path)
    (tmp_path / "masks" / "x3_mask.png").unlink()
    assert len(load_dataset("folder", tmp_path)) == 2
    # mask_suffix pairing, 16-bit images stretched to [0, 1]
    (tmp_path / "m").mkdir()
    for stem in ("x1", "x2"):
        Image.fromarray(mask).save(tmp_path / "m" / f"{stem}_mask.png")
    Image.fromarray(np.arange(42, dtype=np.uint16).reshape(6, 7) * 1000).save(tmp_path / "images" / "x2.png")
    data = load_dataset("folder", image_dir=tmp_path / "images", mask_dir=tmp_path / "m", mask_suffix="_mask")
    assert data.images[1].min() == 0 and data.images[1].max() == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_folder(tmp_path / "empty", tmp_path / "masks")
    with pytest.raises(FileNotFoundError, match="images/ \\+ masks/"):
        load_dataset("folder", tmp_path / "empty")
    with pytest.raises(ValueError, match="kind"):
        load_dataset("cityscapes")
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("isbi2012")
    rgb_mask = np.zeros((6, 7, 3), np.uint8)
    rgb_mask[0, 0] = (255, 0, 0)
    Image.fromarray(rgb_mask).save(tmp_path / "masks" / "x1.png")
    with pytest.raises(ValueError, match="colour mask"):
        load_dataset("folder", tmp_path)


def test_synthetic_dataset():
    data = load_dataset("synthetic", n=3, size=64, seed=1, cell_size=16)
    assert len(data) == 3 and data.n_classes == 2 and data.instances
    images, labels = synthetic_cells(3, 64, 1, cell_size=16)
    assert np.array_equal(data.images, images) and np.array_equal(data.labels, labels)
    assert np.array_equal(data.class_labels(0), (labels[0] > 0).astype(np.int32))
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("synthetic", "somewhere")
