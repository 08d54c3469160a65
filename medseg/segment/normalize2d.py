"""Plane normalisation for training: :mod:`medseg.infer.normalize2d` (training and inference
normalise planes with the same code; inference takes the percentiles from ``model.json``)."""

from medseg.infer.normalize2d import (
                                      MIN_TEXTURE,
                                      NORMALIZATION,
                                      TRAINING_PERCENTILES,
                                      has_anatomy,
                                      head_mask_2d,
                                      normalize_slice,
                                      slice_percentiles,
                                      texture,
)

__all__ = ["MIN_TEXTURE", "NORMALIZATION", "TRAINING_PERCENTILES", "has_anatomy", "head_mask_2d",
           "normalize_slice", "slice_percentiles", "texture"]
