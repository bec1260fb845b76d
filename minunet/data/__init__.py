"""Data for the U-Net: synthetic cells, ISBI 2012 and folder loaders, the paper's weight map,
augmentation (elastic deformation) and mirrored tiles. Pure NumPy/SciPy/Pillow; runs on any machine."""
from .augment import augment, elastic_deform, elastic_displacement, gray_value_change
from .loaders import (Dataset, find_isbi2012, load_dataset, load_folder, load_isbi2012, load_synthetic,
                      natural_key, normalize_masks, pair_files, read_image, read_mask, read_tiff_stack)
from .synthetic import synthetic_cells
from .tiles import mirror_index, mirror_pad, random_augmented_tile, random_tile, tile_at
from .weight_map import instances_from_mask, two_nearest_cell_distances, weight_map

__all__ = [
    "augment", "elastic_deform", "elastic_displacement", "gray_value_change",
    "Dataset", "find_isbi2012", "load_dataset", "load_folder", "load_isbi2012", "load_synthetic", "natural_key",
    "normalize_masks", "pair_files", "read_image", "read_mask", "read_tiff_stack",
    "synthetic_cells", "mirror_index", "mirror_pad", "random_augmented_tile", "random_tile", "tile_at",
    "instances_from_mask", "two_nearest_cell_distances", "weight_map",
]
