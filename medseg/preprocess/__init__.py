"""Preprocessing stages: bias-field correction, foreground masks, intensity normalisation."""

from medseg.preprocess.n4 import N4Options, correct_bias_field
from medseg.preprocess.normalize import foreground_mask, normalize_intensity

__all__ = ["N4Options", "correct_bias_field", "foreground_mask", "normalize_intensity"]
