"""Segmentation metrics: pixel error, IoU/Dice, Rand error and VI, and the ISBI 2012 challenge's scores.

Two families of segmentation scores live here; they differ, and the difference is large on thick membranes:
- adapted_rand, variation_of_information, per_image_sweep: scikit-image's definitions (SNEMI3D's adapted Rand):
  a prediction's membrane pixels are one segment like any other id, and each image gets its best threshold;
- challenge_rand_error, challenge_pixel_error, challenge_warping_error, challenge_variation_of_information,
  isbi2012_challenge: the ISBI 2012 challenge's, as Fiji's Trainable Segmentation computes them (the scores of
  the U-Net paper's Table 1): membrane pixels inside true cells are singletons, one threshold per stack,
  counts pooled over the slices, the pixel error is 1 - F1 and the warping error counts topological errors.

Conventions
- Class maps are integer (or bool) arrays of class indices; class 0 is the background. In the ISBI 2012
  data class 0 is membrane (black, 0 in the masks) and class 1 is cell interior (white, 255).
- Segmentations are integer arrays of object ids; in the ground truth, id 0 is the background
  (membrane), which the foreground-restricted scores leave out. In a prediction, 0 is an ordinary id.
- Every table is built with np.bincount / scipy.sparse over the pixels: O(pixels), never O(pixels^2).
- Scores that are undefined return NaN (documented per function), never a division-by-zero warning.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage, sparse

# per_image_sweep's default: 9 thresholds between 0 and 1 on the membrane probability (the challenge's own
# sweep is CHALLENGE_THRESHOLDS, below).
DEFAULT_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))

# 4-connectivity: objects touching only at a corner are separate, as in the challenge's Fiji script.
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


# ---------------------------------------------------------------------------------------------------
# input checks


def _as_integer_array(x, name):
    """x as a non-empty array of non-negative integers (bool becomes 0/1)."""
    a = np.asarray(x)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer (or bool) label array, got dtype {a.dtype}"
                        " (threshold or round probabilities first)")
    if a.size == 0:
        raise ValueError(f"{name}: empty array (shape {a.shape})")
    if np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
        raise ValueError(f"{name}: labels must be >= 0, found {a.min()}")
    return a


def _check_same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {name_a} {a.shape} vs {name_b} {b.shape}")


def _as_binary(x, name):
    a = _as_integer_array(x, name)
    if a.max() > 1:
        raise ValueError(f"{name}: expected a binary mask (bool or 0/1), found values up to {a.max()}")
    return a.astype(bool)


def _as_class_map(x, name, n_classes):
    a = _as_integer_array(x, name)
    if a.max() >= n_classes:
        raise ValueError(f"{name}: class index {a.max()} out of range for n_classes={n_classes}"
                         " (0/255 masks must be mapped to 0/1 first)")
    return a.astype(np.int64)


def _check_n_classes(n_classes):
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes: expected an int >= 1, got {n_classes!r}")
    return int(n_classes)


# ---------------------------------------------------------------------------------------------------
# pixel-wise scores


def pixel_error(pred_binary, truth_binary):
    """Fraction of pixels where two binary masks (bool or 0/1, same shape) disagree."""
    pred = _as_binary(pred_binary, "pred_binary")
    truth = _as_binary(truth_binary, "truth_binary")
    _check_same_shape(pred, truth, "pred_binary", "truth_binary")
    return float(np.count_nonzero(pred != truth)) / pred.size


def confusion_matrix(pred, truth, n_classes):
    """(n_classes, n_classes) int64 counts; row = true class, column = predicted class."""
    n_classes = _check_n_classes(n_classes)
    pred = _as_class_map(pred, "pred", n_classes)
    truth = _as_class_map(truth, "truth", n_classes)
    _check_same_shape(pred, truth, "pred", "truth")
    counts = np.bincount((truth * n_classes + pred).ravel(), minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def _per_class(pred, truth, n_classes, numerator_scale):
    table = confusion_matrix(pred, truth, n_classes)
    true_pos = np.diag(table).astype(np.float64)
    false_pos = table.sum(axis=0) - true_pos
    false_neg = table.sum(axis=1) - true_pos
    numerator = numerator_scale * true_pos
    denominator = numerator + false_pos + false_neg
    out = np.full(table.shape[0], np.nan)
    present = denominator > 0
    out[present] = numerator[present] / denominator[present]
    return out


def iou(pred, truth, n_classes):
    """Per-class intersection over union, shape (n_classes,).

    A class absent from both pred and truth has no IoU: its entry is NaN (use np.nanmean for a mean IoU).
    """
    return _per_class(pred, truth, n_classes, 1.0)


def dice(pred, truth, n_classes):
    """Per-class Dice (F1) = 2|P&T| / (|P| + |T|), shape (n_classes,); NaN for a class absent from both."""
    return _per_class(pred, truth, n_classes, 2.0)


def foreground_iou(pred, truth):
    """IoU of the foreground (every class but 0) of two class maps; NaN when both are all background."""
    pred = _as_integer_array(pred, "pred") != 0
    truth = _as_integer_array(truth, "truth") != 0
    _check_same_shape(pred, truth, "pred", "truth")
    union = np.count_nonzero(pred | truth)
    return float(np.count_nonzero(pred & truth)) / union if union else float("nan")


# ---------------------------------------------------------------------------------------------------
# segmentation scores: Rand error and variation of information, from one contingency table


class _Contingency(NamedTuple):
    counts: np.ndarray        # n_ij of every non-empty (truth segment i, pred segment j) pair
    truth_sizes: np.ndarray   # a_i, pixels of each truth segment (restricted)
    pred_sizes: np.ndarray    # b_j, pixels of each pred segment (restricted)
    row: np.ndarray           # i of each entry in counts
    col: np.ndarray           # j of each entry in counts
    n_pixels: int


def _contingency(pred_seg, truth_seg, ignore_truth_background):
    pred = _as_integer_array(pred_seg, "pred_segmentation")
    truth = _as_integer_array(truth_seg, "truth_segmentation")
    _check_same_shape(pred, truth, "pred_segmentation", "truth_segmentation")
    pred, truth = pred.ravel(), truth.ravel()
    if ignore_truth_background:
        keep = truth != 0
        pred, truth = pred[keep], truth[keep]
    if truth.size == 0:
        empty = np.zeros(0, np.int64)
        return _Contingency(empty, empty, empty, empty, empty, 0)
    # Ids can be anything (e.g. 2**40); compact them so the table is (segments x segments), not (ids x ids).
    _, truth_idx = np.unique(truth, return_inverse=True)
    _, pred_idx = np.unique(pred, return_inverse=True)
    shape = (int(truth_idx.max()) + 1, int(pred_idx.max()) + 1)
    table = sparse.coo_array((np.ones(truth.size, np.int64), (truth_idx.ravel(), pred_idx.ravel())), shape=shape)
    table = table.tocsr().tocoo()  # tocsr sums the duplicate (i, j) entries
    return _Contingency(table.data.astype(np.int64), np.bincount(truth_idx.ravel()), np.bincount(pred_idx.ravel()),
                        table.row, table.col, int(truth.size))


class RandScores(NamedTuple):
    error: float      # 1 - F-score of precision and recall
    precision: float  # of the pixel pairs predicted in one segment, the fraction truly in one (merges lower it)
    recall: float     # of the pixel pairs truly in one segment, the fraction predicted in one (splits lower it)


def _rand_from_table(c):
    if c.n_pixels == 0:
        return RandScores(float("nan"), float("nan"), float("nan"))
    n = c.n_pixels
    # Ordered pairs of distinct pixels sharing a segment: sum(s^2) - n. Integers, exact.
    same_both = int(np.dot(c.counts, c.counts)) - n
    same_truth = int(np.dot(c.truth_sizes, c.truth_sizes)) - n
    same_pred = int(np.dot(c.pred_sizes, c.pred_sizes)) - n
    # With no pair sharing a segment in one of them, that side makes no claim that could be wrong.
    precision = same_both / same_pred if same_pred else 1.0
    recall = same_both / same_truth if same_truth else 1.0
    denominator = same_truth + same_pred
    fscore = 2.0 * same_both / denominator if denominator else 1.0
    return RandScores(1.0 - fscore, precision, recall)


def adapted_rand(pred_segmentation, truth_segmentation):
    """Foreground-restricted adapted Rand error with its precision and recall, as a RandScores.

    Only pixels where the truth is foreground (id != 0) count; a pixel with prediction id 0 there is part
    of prediction segment 0 like any other id. Same as SNEMI3D's definition implemented by
    skimage.metrics.adapted_rand_error; NOT the ISBI 2012 challenge's, which makes each of those pixels a
    segment of its own (rand_counts, challenge_rand_error). NaN everywhere when the truth has no foreground.
    """
    return _rand_from_table(_contingency(pred_segmentation, truth_segmentation, True))


def adapted_rand_error(pred_segmentation, truth_segmentation):
    """scikit-image's adapted Rand error: 1 - F-score of adapted_rand's precision and recall; 0 is perfect."""
    return adapted_rand(pred_segmentation, truth_segmentation).error


class VariationOfInformation(NamedTuple):
    split: float  # H(pred | truth) in bits: over-segmentation, false splits
    merge: float  # H(truth | pred) in bits: under-segmentation, false merges
    total: float  # split + merge


def _vi_from_table(c):
    if c.n_pixels == 0:
        return VariationOfInformation(float("nan"), float("nan"), float("nan"))
    p_joint = c.counts / c.n_pixels
    split = float(-np.sum(p_joint * np.log2(c.counts / c.truth_sizes[c.row])))
    merge = float(-np.sum(p_joint * np.log2(c.counts / c.pred_sizes[c.col])))
    # a perfect match sums to -0.0 (or -1e-17 after rounding), which reads badly
    split, merge = (value if value > 0 else 0.0 for value in (split, merge))
    return VariationOfInformation(split, merge, split + merge)


def variation_of_information(pred_segmentation, truth_segmentation, ignore_truth_background=True):
    """Variation of information (split, merge, total) in bits between two segmentations.

    By default only pixels where the truth is foreground (id != 0) count, as the challenge's V_info does;
    ignore_truth_background=False scores every pixel. split/merge equal skimage's
    variation_of_information(truth, pred, ignore_labels=(0,)) [0] and [1]. NaN when no pixel counts.
    """
    return _vi_from_table(_contingency(pred_segmentation, truth_segmentation, ignore_truth_background))


# ---------------------------------------------------------------------------------------------------
# a per-image threshold sweep with scikit-image's scores (not the challenge's: see below)


def segment_cells(membrane_mask):
    """Label the 4-connected components of the non-membrane region 1, 2, ...; membrane pixels get 0."""
    labels, _ = ndimage.label(~np.asarray(membrane_mask, dtype=bool), structure=FOUR_CONNECTED)
    return labels


def _check_thresholds(thresholds):
    try:
        t = np.asarray(thresholds, dtype=np.float64).ravel() if thresholds is not None else np.zeros(0)
    except (TypeError, ValueError):
        t = np.zeros(0)
    if t.size == 0:
        raise ValueError("thresholds: expected a non-empty sequence of numbers in [0, 1]")
    if not np.all(np.isfinite(t)) or t.min() < 0 or t.max() > 1:
        raise ValueError(f"thresholds: every threshold must lie in [0, 1], got {t.tolist()}")
    return t


@dataclass(frozen=True)
class SweepScores:
    thresholds: np.ndarray     # the sweep, in the order given
    rand_errors: np.ndarray    # foreground-restricted adapted Rand error at each threshold
    pixel_errors: np.ndarray   # fraction of misclassified pixels (membrane vs not) at each threshold
    vi: np.ndarray             # foreground-restricted variation of information (bits) at each threshold
    rand_error: float          # the best (lowest) of each, and the threshold it was reached at
    rand_threshold: float
    pixel_error: float
    pixel_threshold: float
    vi_total: float
    vi_threshold: float

    def to_dict(self):
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


def _best(values, thresholds):
    if np.all(np.isnan(values)):
        return float("nan"), float("nan")
    k = int(np.nanargmin(values))  # ties: the first threshold in the sweep wins
    return float(values[k]), float(thresholds[k])


def per_image_sweep(membrane_probability, truth_membrane_mask, thresholds=DEFAULT_THRESHOLDS):
    """Score one 2D membrane probability map with scikit-image's scores over a threshold sweep, as SweepScores.

    Exactly what is done, for each threshold t of the sweep:
      1. membrane = membrane_probability > t;
      2. predicted cells = the 4-connected components of ~membrane (scipy.ndimage.label), membrane = id 0;
      3. true cells = the 4-connected components of ~truth_membrane_mask, computed once;
      4. Rand error = adapted_rand_error(predicted cells, true cells), restricted to true cell pixels;
         VI = variation_of_information(...).total, restricted the same way;
         pixel error = pixel_error(membrane, truth_membrane_mask), over all pixels.
    Each score's best (lowest) value over the sweep is reported with its threshold, chosen per score
    and per image (ties: the first threshold given). The challenge scored differently (membrane pixels
    as singletons, one threshold for the stack, pooled counts, pixel error as 1 - F1): isbi2012_challenge.
    """
    prob = np.asarray(membrane_probability)
    if not np.issubdtype(prob.dtype, np.floating):
        raise TypeError(f"membrane_probability: expected floats in [0, 1], got dtype {prob.dtype}"
                        " (divide 8-bit images by 255)")
    if prob.ndim != 2:
        raise ValueError(f"membrane_probability: expected one 2D image (H, W), got shape {prob.shape}")
    if prob.size == 0:
        raise ValueError(f"membrane_probability: empty image (shape {prob.shape})")
    if np.isnan(prob).any():
        raise ValueError(f"membrane_probability: contains NaN at {np.count_nonzero(np.isnan(prob))} pixels")
    if prob.min() < 0 or prob.max() > 1:
        raise ValueError(f"membrane_probability: values must lie in [0, 1], found [{prob.min()}, {prob.max()}]")
    truth_membrane = _as_binary(truth_membrane_mask, "truth_membrane_mask")
    _check_same_shape(prob, truth_membrane, "membrane_probability", "truth_membrane_mask")
    thresholds = _check_thresholds(thresholds)

    truth_cells = segment_cells(truth_membrane)
    rand_errors, pixel_errors, vi = (np.empty(thresholds.size) for _ in range(3))
    for k, t in enumerate(thresholds):
        membrane = prob > t
        table = _contingency(segment_cells(membrane), truth_cells, ignore_truth_background=True)
        rand_errors[k] = _rand_from_table(table).error
        vi[k] = _vi_from_table(table).total
        pixel_errors[k] = np.count_nonzero(membrane != truth_membrane) / membrane.size
    return SweepScores(thresholds, rand_errors, pixel_errors, vi,
                      *_best(rand_errors, thresholds), *_best(pixel_errors, thresholds), *_best(vi, thresholds))


# ---------------------------------------------------------------------------------------------------
# The ISBI 2012 challenge's own scores, as Fiji's Trainable Segmentation computes them
# (github.com/fiji/Trainable_Segmentation, src/main/java/trainableSegmentation/metrics/*.java), which the
# challenge's evaluation script called on the whole test stack:
#   RandError.getForegroundRestrictedRandIndexMaximalFScore(0.0, 1.0, 0.1)  (getRandIndexMaximalFScore before 2015)
#   PixelError.getPixelErrorMaximalFScore(0.0, 1.0, 0.1)
#   WarpingError.getMinimumSplitsAndMergersErrorValue(0.0, 0.9, 0.1, false, 20)
# Their conventions, kept here: the proposal is the probability of *cell* (white); at threshold t a pixel is
# cell when its float32 value > t; truth and proposed cells are the 4-connected components of the cell pixels;
# ONE threshold serves the whole stack and the counts of every slice are summed before the score is formed.


def fiji_thresholds(start, stop, step):
    """The thresholds of Fiji's `for (double th = start; th <= stop; th += step)`, rounding and all:
    0.0, 0.1, 0.2, 0.30000000000000004, ..., 0.9999999999999999 for (0.0, 1.0, 0.1): 11 of them."""
    out, th = [], float(start)
    while th <= stop:
        out.append(th)
        th += step
    return tuple(out)


CHALLENGE_THRESHOLDS = fiji_thresholds(0.0, 1.0, 0.1)  # Rand, pixel error, VI
WARPING_THRESHOLDS = fiji_thresholds(0.0, 0.9, 0.1)    # warping error: the script stops at 0.9
WARPING_RADIUS = 20                                     # the script's radius for classifying a mismatch
# The U-Net paper's Table 1 (Ronneberger et al. 2015): its ISBI 2012 test-set scores.
UNET_PAPER_TABLE1 = {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}


@dataclass(frozen=True)
class ChallengeScore:
    error: float        # the best error over the sweep (1 - max F-score, or the minimum)
    threshold: float    # the first threshold reaching it
    thresholds: tuple   # the sweep
    errors: np.ndarray  # the error at each threshold: the curve

    def to_dict(self):
        return {"error": self.error, "threshold": self.threshold, "thresholds": list(self.thresholds),
                "errors": self.errors.tolist()}


def _challenge_stack(cell_probability, truth_cells):
    """[(float32 cell probability, bool truth cells)] per slice, from 2D arrays, (S, H, W) stacks or lists."""
    def slices(x):  # a list may hold slices of different sizes: never make one array of it
        return list(x) if isinstance(x, (list, tuple)) or np.ndim(x) != 2 else [x]
    probs, truths = slices(cell_probability), slices(truth_cells)
    if len(probs) != len(truths) or not probs:
        raise ValueError(f"cell_probability has {len(probs)} slices but truth_cells has {len(truths)}; "
                         "give one 2D image each or two stacks of the same length")
    stack = []
    for k, (prob, truth) in enumerate(zip(probs, truths)):
        prob = np.asarray(prob)
        where = f" (slice {k})" if len(probs) > 1 else ""
        if not np.issubdtype(prob.dtype, np.floating) or prob.ndim != 2 or prob.size == 0:
            raise TypeError(f"cell_probability{where}: expected a non-empty 2D float image in [0, 1], got "
                            f"dtype {prob.dtype}, shape {prob.shape} (divide 8-bit images by 255)")
        if not np.all(np.isfinite(prob)) or prob.min() < 0 or prob.max() > 1:
            raise ValueError(f"cell_probability{where}: values must be finite and in [0, 1]")
        truth = _as_binary(truth, f"truth_cells{where}")
        _check_same_shape(prob, truth, f"cell_probability{where}", f"truth_cells{where}")
        # float32: what Fiji reads from a submitted TIFF; compared in float64, as Java promotes a float compared
        # with a double (numpy would round the threshold to float32 instead: 0.9999999999999999 -> 1.0)
        stack.append((prob.astype(np.float32).astype(np.float64), truth))
    return stack


def _fscore(tp, fp, fn):
    """F-score as Fiji's ClassificationStatistics forms it: no false positive = precision 1, no false negative =
    recall 1, precision + recall = 0 gives 0."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _best_max_fscore(fscores, thresholds):
    """1 - the maximal F-score and its threshold: Fiji keeps the first threshold that beats 0 strictly."""
    fscores = np.asarray(fscores, np.float64)
    k = int(np.argmax(fscores))  # the first of equal maxima, as Fiji's `if (fScore > best)`
    return ChallengeScore(float(1.0 - fscores[k]), float(thresholds[k]), tuple(thresholds), 1.0 - fscores)


def _best_minimum(errors, thresholds):
    errors = np.asarray(errors, np.float64)
    k = int(np.nanargmin(errors)) if not np.all(np.isnan(errors)) else 0
    return ChallengeScore(float(errors[k]), float(thresholds[k]), tuple(thresholds), errors)


class _Overlap(NamedTuple):
    n: int               # truth-cell pixels
    n_i0: int            # of them, predicted membrane
    a: np.ndarray        # pixels of each truth cell
    b: np.ndarray        # truth-cell pixels of each predicted cell
    n_ij: np.ndarray     # truth-cell pixels of each (truth cell, predicted cell) pair, non-empty ones


def _compact(ids):
    """ids as 0, 1, 2, ... in the order of their values (np.unique's inverse, without a sort when they are small)."""
    top = int(ids.max()) if ids.size else 0
    if top > 4 * ids.size + 1024:
        return np.unique(ids, return_inverse=True)[1].ravel()
    present = np.zeros(top + 1, np.int64)
    present[ids] = 1
    return (np.cumsum(present) - 1)[ids]


def _overlap(pred_cells, truth_cells):
    """The table of Fiji's RandError and VariationOfInformation, restricted to the truth's cells (id != 0)."""
    pred = _as_integer_array(pred_cells, "pred_cells")
    truth = _as_integer_array(truth_cells, "truth_cells")
    _check_same_shape(pred, truth, "pred_cells", "truth_cells")
    keep = truth.ravel() != 0
    pred, truth = pred.ravel()[keep], truth.ravel()[keep]
    in_cell = pred != 0
    truth_idx, pred_idx = _compact(truth)[in_cell], _compact(pred[in_cell])
    pairs = truth_idx * (int(pred_idx.max(initial=0)) + 1) + pred_idx
    n_ij = np.bincount(_compact(pairs)) if pairs.size else np.zeros(0, np.int64)
    return _Overlap(int(truth.size), int(truth.size - np.count_nonzero(in_cell)),
                    np.bincount(_compact(truth)).astype(np.int64), np.bincount(pred_idx).astype(np.int64),
                    n_ij.astype(np.int64))


def rand_counts(pred_cells, truth_cells, form="n2"):
    """(tp, fp, fn, tn) of the foreground-restricted Rand index of one slice, as Fiji's RandError counts them.

    pred_cells, truth_cells: label images, 0 = membrane. Only pixels where truth_cells != 0 count (n of
    them); each of those the prediction calls membrane (0) is a segment of its own (the singleton rule).
      form="n2" (the default; RandError.getForegroundRestrictedRandIndexStatsN2, January 2015 on): ordered
        pairs, a pixel paired with itself included: tp = sum n_ij^2 + n_i0, fp = sum b_j^2 + n_i0 - tp,
        fn = sum a_i^2 - tp, tn = n^2 - tp - fp - fn (i >= 1 truth cells, j >= 1 predicted cells, n_i0 the
        truth-cell pixels predicted membrane, a_i and b_j the row and column sums);
      form="pairs" (RandError.getRandIndexStats(ShortProcessor, ShortProcessor) as of 2012-2014): unordered
        pairs of distinct pixels: tp = sum C(n_ij, 2), fp = sum C(b_j, 2) - tp, fn = sum C(a_i, 2) - tp,
        tn = C(n, 2) - tp - fp - fn.
    Integers, exact (Fiji forms the N^2 counts in doubles from n_ij / n: the same to ~1e-16 relative).
    A slice without truth cells counts nothing (Fiji's N^2 form would divide by n = 0).
    """
    if form not in ("n2", "pairs"):
        raise ValueError(f"form: expected 'n2' (Fiji since January 2015) or 'pairs' (2012-2014), got {form!r}")
    t = _overlap(pred_cells, truth_cells)
    if form == "n2":
        tp = int(t.n_ij @ t.n_ij) + t.n_i0
        fp = int(t.b @ t.b) + t.n_i0 - tp
        fn = int(t.a @ t.a) - tp
        return tp, fp, fn, t.n * t.n - tp - fp - fn

    def pairs(sizes):
        return int(sizes @ (sizes - 1)) // 2
    tp = pairs(t.n_ij)
    fp, fn = pairs(t.b) - tp, pairs(t.a) - tp
    return tp, fp, fn, t.n * (t.n - 1) // 2 - tp - fp - fn


def fiji_variation_of_information(pred_cells, truth_cells):
    """Foreground-restricted variation of information of one slice in nats, as Fiji's
    VariationOfInformation.foregroundRestrictedVI: H(truth | pred) + H(pred | truth) over the truth-cell
    pixels, each of them predicted membrane a segment of its own. NaN without truth cells."""
    t = _overlap(pred_cells, truth_cells)
    if t.n == 0:
        return float("nan")

    def plogp(counts):
        p = counts[counts > 0] / t.n
        return float(p @ np.log(p))
    singletons = t.n_i0 / t.n * np.log(t.n)  # n_i0 segments of p = 1/n each: sum p log p = -(n_i0 / n) log n
    vi = plogp(t.a) + (plogp(t.b) - singletons) - 2 * (plogp(t.n_ij) - singletons)
    return max(vi, 0.0)  # a perfect match sums to -1e-17 after rounding


def segment_stack(cell_probability, truth_cells, thresholds=CHALLENGE_THRESHOLDS):
    """Yield [(predicted cells, true cells) per slice] for each threshold, as the challenge segments: cell where
    the float32 probability > threshold, the 4-connected components of the cells labelled 1, 2, ..."""
    stack = _challenge_stack(cell_probability, truth_cells)
    truths = [segment_cells(~truth) for _, truth in stack]
    for th in thresholds:
        yield [(segment_cells(~(prob > th)), cells) for (prob, _), cells in zip(stack, truths)]


def challenge_rand_error(cell_probability, truth_cells, form="n2", thresholds=CHALLENGE_THRESHOLDS):
    """The challenge's Rand error: 1 - the maximal F-score of the foreground-restricted Rand index, TP, FP and
    FN summed over the slices at each threshold (RandError.getForegroundRestrictedRandIndexMaximalFScore, or
    with form="pairs" the 2012-2014 getRandIndexMaximalFScore; see rand_counts). A ChallengeScore."""
    fscores = []
    for slices in segment_stack(cell_probability, truth_cells, thresholds):
        tp, fp, fn, _ = np.sum([rand_counts(pred, truth, form) for pred, truth in slices], axis=0)
        fscores.append(_fscore(tp, fp, fn))
    return _best_max_fscore(fscores, thresholds)


def challenge_pixel_error(cell_probability, truth_cells, thresholds=CHALLENGE_THRESHOLDS):
    """The challenge's pixel error: 1 - the maximal F-score of the cell pixels (positive = cell), counts summed
    over the slices (PixelError.getPixelErrorMaximalFScore, precisionRecallStats). Not the fraction of
    misclassified pixels (that is pixel_error). A ChallengeScore."""
    stack = _challenge_stack(cell_probability, truth_cells)
    fscores = []
    for th in thresholds:
        tp = fp = fn = 0
        for prob, truth in stack:
            pred = prob > th
            tp += int(np.count_nonzero(pred & truth))
            fp += int(np.count_nonzero(pred & ~truth))
            fn += int(np.count_nonzero(~pred & truth))
        fscores.append(_fscore(tp, fp, fn))
    return _best_max_fscore(fscores, thresholds)


def challenge_variation_of_information(cell_probability, truth_cells, thresholds=CHALLENGE_THRESHOLDS):
    """The foreground-restricted VI (nats) averaged over the slices, minimal over the sweep, as Fiji's
    VariationOfInformation.getMinimumForegroundRestrictedMetricValue (slices without truth cells left out of
    the average; Fiji's would be NaN). Not one of the challenge's three ranked scores. A ChallengeScore."""
    curve = []
    for slices in segment_stack(cell_probability, truth_cells, thresholds):
        curve.append(_nanmean([fiji_variation_of_information(pred, truth) for pred, truth in slices]))
    return _best_minimum(curve, thresholds)


def _nanmean(values):
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


# --- the warping error (Jain et al., "Boundary learning by optimization with topological constraints",
# CVPR 2010), as Fiji's WarpingError computes it: the truth is warped toward the prediction by flipping
# simple points only (pixels whose flip changes no topology), then the mismatches left are classified.

# the 3x3 patch of a pixel as a 9-bit code: bit 3*dy + dx is the pixel at (y + dy - 1, x + dx - 1)
_PATCH_BITS = 1 << np.arange(9)
_FOUR = ((0, 1), (1, 0), (1, 2), (2, 1))


def _is_simple(patch):
    """Whether flipping the centre of a 3x3 binary patch keeps the topology, cells (1) 4-connected and
    membrane (0) 8-connected: the cell pixels 4-adjacent to the centre lie in one 4-connected component of the
    patch without its centre, and the membrane pixels in one 8-connected component of it. (Bertrand and
    Malandain's topological numbers T4 = T8 = 1. Fiji's simple2DBertrand(patch, 4), a 3D test on the patch
    in the middle plane of an empty 3x3x3 cube, decides the same on each of the 512 patches: we compared them
    while writing this; tests/test_challenge_metrics.py checks the topology on random images.)"""
    patch = np.array(patch, bool).reshape(3, 3)
    patch[1, 1] = False
    cells = ndimage.label(patch, FOUR_CONNECTED)[0]
    t4 = len({cells[p] for p in _FOUR} - {0})
    membrane = ndimage.label(~patch, np.ones((3, 3), bool))[0]
    membrane[1, 1] = 0
    t8 = len(set(membrane.ravel().tolist()) - {0})
    return t4 == 1 and t8 == 1


_SIMPLE = None


def _simple_table():
    global _SIMPLE
    if _SIMPLE is None:
        _SIMPLE = np.array([_is_simple((code >> np.arange(9)) & 1) for code in range(512)])
    return _SIMPLE


def _flips_of_one_pass(source, listed, width):
    """Which of the listed pixels (flat indices into the padded image, in Fiji's processing order) Fiji's
    sequential pass flips: each is flipped when simple in the image as it is at its turn, i.e. with the flips
    of the listed pixels before it. A pixel's test reads its 8 neighbours only, so the sequential result is
    the fixed point of: flip[p] = simple(patch of p, with the flips of its neighbours listed before p). It is
    reached by re-testing, round after round, only the pixels a changed decision can affect (each round one
    vectorised step); the decisions are a function of the earlier ones alone, so the fixed point is unique
    and equals the sequential loop's."""
    m = listed.size
    rank = np.full(source.size, m, np.int64)  # m: not listed, never flipped in this pass
    rank[listed] = np.arange(m)
    offsets = np.array([(dy - 1) * width + dx - 1 for dy in range(3) for dx in range(3)])
    neighbours = listed[:, None] + offsets[None, :]
    neighbour_rank = rank[neighbours]                               # (m, 9), the centre's own rank included
    earlier = neighbour_rank < np.arange(m)[:, None]                # decided before this pixel
    before = source[neighbours].astype(np.int64)
    flip = np.zeros(m + 1, bool)                                    # flip[m]: the unlisted, False
    table = _simple_table()
    active = np.arange(m)
    while active.size:
        now = before[active] ^ (earlier[active] & flip[neighbour_rank[active]])
        decided = table[now @ _PATCH_BITS]
        changed = active[decided != flip[active]]
        flip[active] = decided
        # the later listed neighbours of a changed pixel must be tested again
        later = neighbour_rank[changed]
        active = np.unique(later[(later > changed[:, None]) & (later < m)])
    return flip[:m]


def warp_truth(truth_cells, cell_probability, threshold):
    """(warped truth, mismatches) as Fiji's WarpingError.simplePointWarp2d(truth, proposal, null, threshold).

    The truth's cells (1, 4-connected) are warped toward the binarized proposal (cell where > threshold):
    pass after pass, the mismatched pixels are visited in descending order of |proposal - threshold| (ties:
    column by column, top to bottom, as Fiji lists them; a stable sort) and each is flipped if it is a simple
    point at its turn; it stops when a pass flips nothing. The image is padded with one pixel of membrane, as
    Fiji pads its canvas. mismatches: the flat indices (into the H x W image) of the pixels left different.
    """
    truth = _as_binary(truth_cells, "truth_cells")
    prob = np.asarray(cell_probability, np.float32).astype(np.float64)  # float32 values, compared as doubles
    _check_same_shape(prob, truth, "cell_probability", "truth_cells")
    h, w = truth.shape
    source = np.zeros((h + 2, w + 2), np.uint8)
    source[1:-1, 1:-1] = truth
    source = source.ravel()
    real = np.zeros((h + 2, w + 2))
    real[1:-1, 1:-1] = prob
    real = real.ravel()
    target = (real > threshold).astype(np.uint8)
    distance = np.abs(real - threshold).astype(np.float32)  # Fiji's (float) Math.abs(target - threshold)
    previous = -1
    while True:
        listed = np.flatnonzero(source != target)
        if listed.size == 0 or listed.size == previous:
            break
        previous = listed.size
        y, x = np.divmod(listed, w + 2)
        listed = listed[np.lexsort((y, x, -distance[listed]))]
        flips = _flips_of_one_pass(source, listed, w + 2)
        source[listed[flips]] ^= 1
    warped = source.reshape(h + 2, w + 2)[1:-1, 1:-1].astype(bool)
    y, x = np.divmod(listed, w + 2)
    return warped, (y - 1) * w + (x - 1)


MISMATCH_TYPES = ("object_addition", "hole_deletion", "merge", "hole_addition", "object_deletion", "split")


def classify_mismatches(warped, mismatches, radius=WARPING_RADIUS):
    """{type: count} of the mismatches left by warp_truth, as Fiji's WarpingError.classifyMismatches2d and
    clusterMismatchesByType (counting pixels), from the 4-connected cells of the warped truth and the ids in
    each mismatch's 8 neighbours (inside the image):
      only membrane around: object deletion (the pixel is cell) or addition (it is membrane);
      one cell only: hole addition (cell) or deletion (membrane);
      two ids: hole addition if membrane, else the pixel is set to membrane in the (2 radius + 1)^2 window
        around it (membrane outside the image; the whole image when radius < 1 or exceeds a side, and then
        only neighbours inside the image count) and cut into 3 or more ids around it: split, else hole deletion;
      three or more (and, as in Fiji, none at all): merge (membrane) or split (cell).
    Merges are the prediction joining two true cells; splits the prediction cutting one."""
    warped = np.asarray(warped, bool)
    h, w = warped.shape
    y, x = np.divmod(np.asarray(mismatches, np.int64), w)
    cells = np.pad(ndimage.label(warped, FOUR_CONNECTED)[0].astype(np.int64), 1, constant_values=-1)  # -1: outside
    around = np.stack([cells[y + dy, x + dx] for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)], 1)
    ids = _count_distinct(around)
    only = np.where(around >= 0, around, np.iinfo(np.int64).max).min(1)  # the id when there is one
    centre = warped[y, x]
    kind = np.where(centre, "split", "merge").astype(object)
    one = ids == 1
    kind[one & (only == 0)] = np.where(centre, "object_deletion", "object_addition")[one & (only == 0)]
    kind[one & (only != 0)] = np.where(centre, "hole_addition", "hole_deletion")[one & (only != 0)]
    two = ids == 2
    kind[two & ~centre] = "hole_addition"
    test = np.flatnonzero(two & centre)
    if test.size:
        cut = _cut_apart(warped, y[test], x[test], radius)
        kind[test] = np.where(cut, "split", "hole_deletion")
    return {name: int(np.count_nonzero(kind == name)) for name in MISMATCH_TYPES}


def _count_distinct(ids):
    """Distinct values >= 0 in each row."""
    s = np.sort(ids, axis=1)
    fresh = np.concatenate([s[:, :1] >= 0, (s[:, 1:] != s[:, :-1]) & (s[:, 1:] >= 0)], axis=1)
    return fresh.sum(1)


def _cut_apart(warped, y, x, radius):
    """For each (y, x), a cell pixel: whether setting it to membrane leaves 3 or more distinct ids (membrane 0
    among them) in its 8 neighbours, in Fiji's window (or whole image) around it."""
    h, w = warped.shape
    if radius < 1 or radius > w or radius > h:  # Fiji: radiusToUse = -1, the whole image
        out = []
        for yy, xx in zip(y, x):
            image = warped.copy()
            image[yy, xx] = False
            cells = np.pad(ndimage.label(image, FOUR_CONNECTED)[0], 1, constant_values=-1)
            out.append(_count_distinct(cells[yy:yy + 3, xx:xx + 3].ravel()[[0, 1, 2, 3, 5, 6, 7, 8]][None])[0] > 2)
        return np.array(out, bool)
    size = 2 * radius + 1
    padded = np.pad(warped, radius)  # membrane outside the image, as ImageJ's getPixel returns 0 there
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))[y, x].copy()
    windows[:, radius, radius] = False
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = FOUR_CONNECTED  # label every window at once, never across windows
    cells = ndimage.label(windows, in_plane)[0]
    around = cells[:, radius - 1:radius + 2, radius - 1:radius + 2].reshape(-1, 9)[:, [0, 1, 2, 3, 5, 6, 7, 8]]
    return _count_distinct(around) > 2


def challenge_warping_error(cell_probability, truth_cells, thresholds=WARPING_THRESHOLDS, radius=WARPING_RADIUS):
    """The challenge's warping error: the splits and mergers left after warping the truth toward the
    prediction (warp_truth, classify_mismatches), summed over the slices and divided by the number of pixels
    of the stack, minimal over the sweep (WarpingError.getMinimumSplitsAndMergersErrorValue(0.0, 0.9, 0.1,
    false, 20): mismatches clustered by type, i.e. every pixel counted). A ChallengeScore."""
    stack = _challenge_stack(cell_probability, truth_cells)
    pixels = sum(truth.size for _, truth in stack)
    errors = []
    for th in thresholds:
        count = 0
        for prob, truth in stack:
            kinds = classify_mismatches(*warp_truth(truth, prob, th), radius)
            count += kinds["split"] + kinds["merge"]
        errors.append(count / pixels)
    return _best_minimum(errors, thresholds)


def isbi2012_challenge(cell_probability, truth_cells, rand_form="n2", warping=True):
    """The challenge's scores of a stack (2D image, (S, H, W) stack or list of slices), as a dict of
    ChallengeScore: 'rand_error', 'pixel_error', 'warping_error' (unless warping=False: it costs the most) and
    'variation_of_information' (nats; Fiji's, not ranked by the challenge). cell_probability: floats in [0, 1],
    1 = cell; truth_cells: binary, 1 = cell (ISBI's 255)."""
    scores = {"rand_error": challenge_rand_error(cell_probability, truth_cells, rand_form),
              "pixel_error": challenge_pixel_error(cell_probability, truth_cells)}
    if warping:
        scores["warping_error"] = challenge_warping_error(cell_probability, truth_cells)
    scores["variation_of_information"] = challenge_variation_of_information(cell_probability, truth_cells)
    return scores
