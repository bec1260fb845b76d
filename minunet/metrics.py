"""Segmentation metrics: pixel error, IoU/Dice, and the ISBI 2012 challenge's Rand error and VI.

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

# The challenge's sweep: 9 thresholds between 0 and 1 (the script went 0.0:0.9 on the cell probability).
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
    of prediction segment 0 like any other id. Same as the ISBI 2012 / SNEMI3D definition implemented by
    skimage.metrics.adapted_rand_error. NaN everywhere when the truth has no foreground pixel.
    """
    return _rand_from_table(_contingency(pred_segmentation, truth_segmentation, True))


def rand_error(pred_segmentation, truth_segmentation):
    """1 - F-score of the foreground-restricted Rand split/merge scores (see adapted_rand); 0 is perfect."""
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
# the ISBI 2012 protocol: threshold sweep -> connected components -> best score


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
class IsbiScores:
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


def isbi_scores(membrane_probability, truth_membrane_mask, thresholds=DEFAULT_THRESHOLDS):
    """Score one 2D membrane probability map the way the ISBI 2012 challenge did, as an IsbiScores.

    Exactly what is done, for each threshold t of the sweep:
      1. membrane = membrane_probability > t (the challenge script binarized its cell probability q with
         q > threshold; on p = 1 - q that is p < 1 - threshold, so this sweep is that one mirrored);
      2. predicted cells = the 4-connected components of ~membrane (scipy.ndimage.label), membrane = id 0;
      3. true cells = the 4-connected components of ~truth_membrane_mask, computed once;
      4. Rand error = rand_error(predicted cells, true cells), restricted to true cell pixels;
         VI = variation_of_information(...).total, restricted the same way;
         pixel error = pixel_error(membrane, truth_membrane_mask), over all pixels.
    Each score's best (lowest) value over the sweep is reported with its threshold, chosen per score
    and per image (ties: the first threshold given). Not reproduced from the challenge: the later
    "thinned" variants (borders thinned to 1 pixel before scoring) and its pixel-error F-score.
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
    return IsbiScores(thresholds, rand_errors, pixel_errors, vi,
                      *_best(rand_errors, thresholds), *_best(pixel_errors, thresholds), *_best(vi, thresholds))
