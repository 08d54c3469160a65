"""Localization angles of the positioning stage: box, subcallosal line and final line of the CC.

The fit itself is :mod:`medseg.cc_line` (the segmenter's canonical second pass uses it too, and
segmentation comes before positioning); this module is the positioning stage's name for it.
"""

from medseg.cc_line import (
                            LineEstimate,
                            Localization,
                            NoCorpusCallosumError,
                            box_estimate,
                            clean_mask,
                            localize,
                            smooth_outline,
                            subcallosal_line,
)

__all__ = ["Localization", "LineEstimate", "NoCorpusCallosumError", "box_estimate", "clean_mask",
           "localize", "smooth_outline", "subcallosal_line"]
