"""The ISBI 2012 challenge's scores (minunet.metrics.challenge_*), from their definitions in Fiji's
Trainable Segmentation: hand-computed cases, the singleton rule, pooling, one threshold per stack, the warping
error's splits and mergers, and the vectorised warping against a plain sequential loop."""
import numpy as np
import pytest
from scipy import ndimage

from minunet import metrics as M


def _f(tp, fp, fn):
    return 2 * tp / (2 * tp + fp + fn)


def _two_cells(h=7, w=9, membrane_col=4):
    """Two cells left and right of a one-pixel membrane column; cell = 1."""
    truth = np.ones((h, w), bool)
    truth[:, membrane_col] = False
    return truth


# ---------------------------------------------------------------------------------------------------
# the sweep


def test_thresholds_are_fijis_accumulated_doubles():
    assert len(M.CHALLENGE_THRESHOLDS) == 11 and len(M.WARPING_THRESHOLDS) == 10
    assert M.CHALLENGE_THRESHOLDS[3] == 0.1 + 0.1 + 0.1 != 0.3
    assert M.CHALLENGE_THRESHOLDS[-1] == sum([0.1] * 10) < 1.0
    # a float32 probability of exactly 1 is cell at the last threshold, 0.8 (float32) at 0.7999999999999999
    prob = np.array([[1.0, np.float32(0.8), 0.0]])
    truth = np.array([[1, 1, 0]])
    score = M.challenge_pixel_error(prob, truth)
    assert score.errors[-1] == pytest.approx(1 - _f(1, 0, 1)) and score.errors[8] == 0.0
    # warping [0 1 0] toward [1 0 0]: the cell cannot vanish first, it moves over in two passes
    warped, left = M.warp_truth(np.array([[0, 1, 0]]), prob, M.CHALLENGE_THRESHOLDS[-1])
    assert warped.tolist() == [[True, False, False]] and left.tolist() == []


# ---------------------------------------------------------------------------------------------------
# the Rand error


def test_rand_counts_hand_computed_both_forms():
    truth = np.array([[1, 1, 1, 0, 2, 2]])
    pred = np.array([[5, 5, 0, 0, 5, 7]])
    # truth-cell pixels (n = 5) as (truth, pred): (1,5) (1,5) (1,0) (2,5) (2,7); n_i0 = 1
    # N^2: tp = 2^2+1+1 + 1 = 7; fp = (3^2+1^2) + 1 - 7 = 4; fn = (3^2+2^2) - 7 = 6; tn = 25 - 17 = 8
    assert M.rand_counts(pred, truth) == (7, 4, 6, 8)
    # pairs: tp = C(2,2) = 1; fp = C(3,2) - 1 = 2; fn = C(3,2) + C(2,2) - 1 = 3; tn = C(5,2) - 6 = 4
    assert M.rand_counts(pred, truth, form="pairs") == (1, 2, 3, 4)
    # ids are only names
    assert M.rand_counts(np.where(pred > 0, pred * 2**40, 0), truth * 9) == (7, 4, 6, 8)
    with pytest.raises(ValueError, match="'n2'"):
        M.rand_counts(pred, truth, form="n^2")


def test_truth_against_itself_scores_zero_everywhere():
    truth = ~ndimage.binary_dilation(np.random.default_rng(3).random((40, 45)) < 0.03, iterations=1)
    scores = M.isbi2012_challenge(truth.astype(np.float32), truth)
    for name in ("rand_error", "pixel_error", "warping_error", "variation_of_information"):
        assert scores[name].error == 0.0, name
    assert M.challenge_rand_error(truth.astype(float), truth, form="pairs").error == 0.0
    # a binary prediction is the same at every threshold below 1
    assert np.all(scores["rand_error"].errors[:-1] == 0) and scores["rand_error"].threshold == 0.0


def test_one_pixel_gap_merges_two_cells():
    truth = _two_cells()
    pred = truth.copy()
    pred[3, 4] = True                                       # a gap in the predicted membrane
    a = b = 7 * 4
    # one predicted segment holds both cells: tp = a^2 + b^2, fp = 2ab, fn = 0
    assert M.rand_counts(M.segment_cells(~pred), M.segment_cells(~truth)) == (a * a + b * b, 2 * a * b, 0, 0)
    rand = M.challenge_rand_error(pred.astype(float), truth)
    assert rand.error == pytest.approx(1 - _f(a * a + b * b, 2 * a * b, 0)) == pytest.approx(1 / 3)
    assert M.challenge_pixel_error(pred.astype(float), truth).error == pytest.approx(1 - _f(56, 1, 0))
    assert M.challenge_warping_error(pred.astype(float), truth).error == pytest.approx(1 / pred.size)  # one merge


def test_erosion_makes_singletons_and_dilation_merges():
    truth = np.zeros((9, 9), bool)
    truth[1:8, 1:8] = True                                  # one 7x7 cell, membrane around
    eroded = ndimage.binary_erosion(truth, M.FOUR_CONNECTED)  # 5x5 left: 24 boundary pixels predicted membrane
    a, k = 49, 24
    n2 = ((a - k) ** 2 + k, 0, a * a - (a - k) ** 2 - k)   # the 24 are singletons: they pair only with themselves
    assert M.rand_counts(M.segment_cells(~eroded), M.segment_cells(~truth))[:3] == n2
    assert M.challenge_rand_error(eroded.astype(float), truth).error == pytest.approx(1 - _f(*n2))
    pairs = ((a - k) * (a - k - 1) // 2, 0, a * (a - 1) // 2 - (a - k) * (a - k - 1) // 2)
    assert M.challenge_rand_error(eroded.astype(float), truth, form="pairs").error == pytest.approx(1 - _f(*pairs))
    # scikit-image's rule makes the 24 one segment of their own, and counts their pairs
    assert M.adapted_rand_error(M.segment_cells(~eroded), M.segment_cells(~truth)) == pytest.approx(
        1 - _f(25 * 24 + 24 * 23, 0, 49 * 48 - 25 * 24 - 24 * 23))
    # erosion keeps the topology: no split, no merge
    assert M.challenge_warping_error(eroded.astype(float), truth).error == 0.0
    # two cells dilated into each other over their one-pixel membrane: one segment, as the gap
    two = _two_cells()
    dilated = np.ones_like(two)
    assert M.challenge_rand_error(dilated.astype(float), two).error == pytest.approx(1 / 3)
    assert M.challenge_warping_error(dilated.astype(float), two).error == pytest.approx(7 / two.size)


def test_pairs_form_with_singletons_is_scikit_images_adapted_rand(rng):
    skm = pytest.importorskip("skimage.metrics")
    for _ in range(5):
        truth = M.segment_cells(ndimage.binary_dilation(rng.random((30, 37)) < 0.05))
        pred = M.segment_cells(ndimage.binary_dilation(rng.random((30, 37)) < 0.06, iterations=2))
        singletons = np.where(pred == 0, pred.max() + 1 + np.arange(pred.size).reshape(pred.shape), pred)
        tp, fp, fn, _ = M.rand_counts(pred, truth, form="pairs")
        assert 1 - _f(tp, fp, fn) == pytest.approx(skm.adapted_rand_error(truth, singletons)[0], abs=1e-12)
        # and the VI: Fiji's is scikit-image's (bits) with the singletons, in nats
        split, merge = skm.variation_of_information(truth, singletons, ignore_labels=(0,))
        assert M.fiji_variation_of_information(pred, truth) == pytest.approx((split + merge) * np.log(2), abs=1e-10)


def test_counts_are_pooled_over_slices_at_one_threshold():
    truth = np.stack([_two_cells(), _two_cells()])          # two cells of 28 pixels in each slice
    prob = truth.astype(np.float32)
    prob[0, 3, 4] = 0.65   # slice 0: a weak membrane pixel, cell (a merge) below t = 0.65
    prob[1] *= 0.55        # slice 1: its cells are cells below t = 0.55 only
    score = M.challenge_rand_error(prob, truth)
    c = 28 * 28
    merged, right, all_membrane = (2 * c, 2 * c, 0), (2 * c, 0, 0), (56, 0, 2 * c - 56)  # (tp, fp, fn)
    for t, error in zip(M.CHALLENGE_THRESHOLDS, score.errors):
        slices = [merged if t < 0.65 else right, right if t < 0.55 else all_membrane]
        assert error == pytest.approx(1 - _f(*np.sum(slices, axis=0))), t
    # each slice alone scores 0 at its own threshold; no one threshold serves both
    assert [M.challenge_rand_error(p, t).error for p, t in zip(prob, truth)] == [0.0, 0.0]
    assert score.error == pytest.approx(1 - _f(4 * c, 2 * c, 0)) and score.threshold == 0.0
    # pooled counts, not the mean of the slices' errors (1/3 and 0)
    assert score.error == pytest.approx(0.2) != pytest.approx(np.mean([1 / 3, 0]))
    # slices of different sizes pool the same way
    smaller = [prob[0], prob[1][:, :7]]
    per_slice = [M.rand_counts(M.segment_cells(~(p > 0.0)), M.segment_cells(~t)) for p, t in
                 zip(smaller, [truth[0], truth[1][:, :7]])]
    assert M.challenge_rand_error(smaller, [truth[0], truth[1][:, :7]]).errors[0] == pytest.approx(
        1 - _f(*np.sum(per_slice, axis=0)[:3]))


# ---------------------------------------------------------------------------------------------------
# the pixel error


def test_pixel_error_is_one_minus_f1_of_cell_pixels_pooled():
    truth = np.array([[[1, 1, 0, 0]], [[1, 0, 0, 0]]])
    prob = np.array([[[0.9, 0.4, 0.6, 0.0]], [[0.2, 0.0, 0.0, 0.0]]])
    score = M.challenge_pixel_error(prob, truth)
    # (tp, fp, fn) summed over both slices, the values read as float32 as Fiji reads them: float32(0.2),
    # (0.4) and (0.6) lie above the doubles 0.2, 0.4, 0.6, and float32(0.9) below 0.8999999999999999
    counts = {0.0: (3, 1, 0), 0.1: (3, 1, 0), 0.2: (3, 1, 0), 0.3: (2, 1, 1), 0.4: (2, 1, 1), 0.5: (1, 1, 2),
              0.6: (1, 1, 2), 0.7: (1, 0, 2), 0.8: (1, 0, 2), 0.9: (0, 0, 3), 1.0: (0, 0, 3)}
    expected = [1 - _f(*c) if c[0] else 1.0 for c in counts.values()]
    np.testing.assert_allclose(score.errors, expected, rtol=0, atol=1e-15)
    assert score.error == pytest.approx(1 / 7) and score.threshold == 0.0
    # the fraction of wrong pixels is another number
    assert M.pixel_error(prob > 0.0, truth) == pytest.approx(1 / 8) != pytest.approx(score.error)


# ---------------------------------------------------------------------------------------------------
# the warping error


def test_boundary_shift_costs_nothing_while_a_split_and_a_merge_count():
    truth = _two_cells(24, 30, membrane_col=12)
    shifted = np.ones_like(truth)
    shifted[:, 13:15] = False                       # the membrane moved and thickened: the same topology
    assert M.challenge_warping_error(shifted.astype(float), truth).error == 0.0
    # warping moves a boundary only through pixels the two disagree on: a thin membrane that jumps over a
    # column both call cell cannot be warped there (each of its pixels would merge the cells)
    jumped = np.ones_like(truth)
    jumped[:, 14] = False
    assert M.challenge_warping_error(jumped.astype(float), truth).error > 0
    assert M.challenge_rand_error(shifted.astype(float), truth).error > 0  # while Rand and pixel error see it
    both = truth.copy()
    both[10, 12] = True                              # merge: a gap in the membrane
    both[5, 13:] = False                             # split: a line across the right cell
    warped, left = M.warp_truth(truth, both.astype(np.float32), 0.5)
    assert M.classify_mismatches(warped, left) == dict(object_addition=0, hole_deletion=0, merge=1, hole_addition=0,
                                                        object_deletion=0, split=1)
    assert M.challenge_warping_error(both.astype(float), truth).error == pytest.approx(2 / truth.size)
    assert M.challenge_warping_error(both.astype(float), truth, radius=3).error == pytest.approx(2 / truth.size)


def test_simple_points_are_those_whose_flip_keeps_the_topology(rng):
    table = M._simple_table()
    assert table.shape == (512,) and np.array_equal(table[:16], table[16:32])  # the centre plays no part

    def topology(image):  # cells 4-connected, membrane 8-connected, membrane around the image
        padded = np.pad(image, 1)
        return ndimage.label(padded, M.FOUR_CONNECTED)[1], ndimage.label(~padded, np.ones((3, 3), bool))[1]
    seen = set()
    for _ in range(60):
        image = rng.random((6, 6)) < rng.uniform(0.3, 0.7)
        before, padded = topology(image), np.pad(image, 1)
        for y in range(6):
            for x in range(6):
                code = int(padded[y:y + 3, x:x + 3].ravel() @ (1 << np.arange(9)))
                seen.add(code & ~16)
                image[y, x] ^= True
                assert (topology(image) == before) == table[code], (code, image)
                image[y, x] ^= True
    assert len(seen) > 200  # most of the 256 neighbourhoods met


def _warp_sequentially(truth, prob, threshold):
    """The warping as a plain loop, one pixel at a time, in the order Fiji visits them."""
    h, w = truth.shape
    source = np.pad(truth, 1).astype(bool)
    real = np.pad(prob.astype(np.float32), 1)
    target = real > threshold
    previous = None
    while True:
        wrong = [(x, y) for x in range(w + 2) for y in range(h + 2) if source[y, x] != target[y, x]]  # by column
        if not wrong or len(wrong) == previous:
            break
        previous = len(wrong)
        wrong.sort(key=lambda p: -np.float32(abs(float(real[p[1], p[0]]) - threshold)))  # stable
        for x, y in wrong:
            if M._is_simple(source[y - 1:y + 2, x - 1:x + 2]):
                source[y, x] = not source[y, x]
    return source[1:-1, 1:-1], sorted((y - 1) * w + x - 1 for x, y in wrong)


def _classify_one_by_one(warped, left, radius):
    """classify_mismatches' rules, pixel by pixel."""
    h, w = warped.shape
    cells = M.segment_cells(~warped)
    whole = radius < 1 or radius > w or radius > h
    counts = dict.fromkeys(M.MISMATCH_TYPES, 0)

    def ids_around(labels, y, x):
        return {labels[j, i] for j in range(y - 1, y + 2) for i in range(x - 1, x + 2)
                if (j, i) != (y, x) and 0 <= j < labels.shape[0] and 0 <= i < labels.shape[1]}
    for index in left:
        y, x = divmod(int(index), w)
        ids, cell = ids_around(cells, y, x), warped[y, x]
        if len(ids) == 1:
            kind = ("object_deletion" if cell else "object_addition") if ids == {0} else \
                   ("hole_addition" if cell else "hole_deletion")
        elif len(ids) == 2 and not cell:
            kind = "hole_addition"
        elif len(ids) == 2:
            if whole:
                image, cy, cx = warped.copy(), y, x
            else:
                image = np.zeros((2 * radius + 1,) * 2, bool)
                for j in range(2 * radius + 1):
                    for i in range(2 * radius + 1):
                        yy, xx = y - radius + j, x - radius + i
                        image[j, i] = 0 <= yy < h and 0 <= xx < w and warped[yy, xx]
                cy = cx = radius
            image[cy, cx] = False
            kind = "split" if len(ids_around(M.segment_cells(~image), cy, cx)) > 2 else "hole_deletion"
        else:
            kind = "split" if cell else "merge"
        counts[kind] += 1
    return counts


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_warping_equals_the_sequential_loop(seed):
    rng = np.random.default_rng(seed)
    for trial in range(10):
        h, w = rng.integers(6, 34, 2)
        truth = ~ndimage.binary_dilation(rng.random((h, w)) < 0.08, iterations=int(rng.integers(0, 2)))
        prob = np.clip(ndimage.gaussian_filter(truth.astype(float), rng.uniform(0.5, 2))
                       + rng.normal(0, 0.3, (h, w)), 0, 1)
        prob = [np.round(prob), np.round(prob * 4) / 4, prob][trial % 3]  # ties in the order, and none
        threshold = M.WARPING_THRESHOLDS[int(rng.integers(10))]
        warped, left = M.warp_truth(truth, prob, threshold)
        warped_ref, left_ref = _warp_sequentially(truth, prob, threshold)
        assert np.array_equal(warped, warped_ref) and sorted(left.tolist()) == left_ref
        for radius in (20, 3):  # the whole image below 20 px, windows above
            assert M.classify_mismatches(warped, left, radius) == _classify_one_by_one(warped, left_ref, radius)


# ---------------------------------------------------------------------------------------------------
# inputs


@pytest.mark.parametrize("prob, truth, error, words", [
    (np.zeros((2, 4, 4)), np.zeros((3, 4, 4), bool), ValueError, "2 slices but truth_cells has 3"),
    (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), TypeError, "255"),
    (np.full((4, 4), 1.5), np.zeros((4, 4), bool), ValueError, r"\[0, 1\]"),
    (np.full((4, 4), np.nan), np.zeros((4, 4), bool), ValueError, "finite"),
    (np.zeros((4, 4)), np.full((4, 4), 255), ValueError, "binary"),
    (np.zeros((4, 4)), np.zeros((4, 5), bool), ValueError, "shape mismatch"),
])
def test_bad_inputs_raise_clear_errors(prob, truth, error, words):
    with pytest.raises(error, match=words):
        M.isbi2012_challenge(prob, truth)
