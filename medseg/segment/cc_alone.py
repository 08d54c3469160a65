"""The corpus callosum alone: a CC mask on a mid-sagittal plane reduced to the CC itself.

Hand-written (no library separates the CC from the fornix): FreeSurfer's CC label, and a network
trained on it, take in the fornix hanging under the body, the septum and CSF of the ventricles
under the body. The rules, in mm on the plane:
- voxels darker than the midpoint of white matter and CSF go (the mask's own white-matter level);
- thin attachments (fornix columns, septum strands) are opened away;
- in the body and splenium, where the fornix runs below a gap, only each column's uppermost run
  stays; what hangs below the body's smooth lower edge goes, and the body is at most 8 mm thick
  below its upper surface (a fornix fused under it); the genu and rostrum are left as they are.
Training uses it to clean FreeSurfer's label (``medseg.segment.data``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Lengths in mm (converted to pixels of the plane).
CC_INTENSITY_FRACTION = 0.6  # of the label's white-matter level: the WM/CSF midpoint in T1.mgz
CC_OPENING_MM = 2  # thinner attachments (fornix columns, septum strands) are cut
CC_FRONT_FRACTION = 0.2  # the genu and rostrum (under the genu, behind a gap): every run kept
CC_EDGE_MM, CC_EDGE_WINDOW_MM = 2, 25  # the body's lower edge (see corpus_callosum_alone)
CC_BODY = (0.2, 0.8)  # the body's columns, as fractions of the CC's extent from the genu
CC_BODY_MAX_MM, CC_BODY_CAP = 8, (0.3, 0.75)  # adult body about 5-7 mm, plus the partial-volume rim


def corpus_callosum_alone(label: np.ndarray, image: np.ndarray, spacing_mm: float = 1.0, *,
                          opening_mm: float = CC_OPENING_MM) -> np.ndarray:
    """The CC alone from a CC mask on a mid-sagittal plane of square ``spacing_mm`` pixels (rows
    superior -> inferior, columns anterior -> posterior, ``image`` the T1 on the same plane).
    ``opening_mm``: the opening's radius (attachments up to about twice as thick are cut)."""
    label = np.asarray(label, bool)
    if label.sum() < 20:
        return label

    def px(mm: float) -> int:
        return max(1, int(round(mm / spacing_mm)))

    wm = float(np.percentile(image[label], 75))
    mask = label & (image > CC_INTENSITY_FRACTION * wm)
    cross = ndimage.generate_binary_structure(2, 1)
    opened = ndimage.binary_opening(mask, structure=cross, iterations=px(opening_mm))
    mask = ndimage.binary_dilation(opened, structure=cross) & mask  # restore the border
    cols = np.nonzero(mask.any(axis=0))[0]
    if cols.size == 0:
        return mask
    extent = cols.max() - cols.min()
    start = cols.min() + CC_FRONT_FRACTION * extent
    for c in cols[cols >= start]:  # body and splenium: the fornix lies below a gap
        rows = np.nonzero(mask[:, c])[0]
        gaps = np.nonzero(np.diff(rows) > 1)[0]
        if gaps.size:
            mask[rows[gaps[0] + 1]:, c] = False
    # The body's lower edge is smooth: what hangs more than CC_EDGE_MM below the running median
    # of that edge (over CC_EDGE_WINDOW_MM) is septum or fornix attached without a gap.
    body = cols[(cols >= cols.min() + CC_BODY[0] * extent) & (cols <= cols.min() + CC_BODY[1] * extent)]
    if body.size >= 5:
        bottoms = np.array([np.nonzero(mask[:, c])[0].max() for c in body], float)
        edge = ndimage.median_filter(bottoms, size=min(px(CC_EDGE_WINDOW_MM), body.size), mode="nearest")
        for c, limit in zip(body, edge):
            mask[int(limit) + px(CC_EDGE_MM) + 1:, c] = False
    # A fornix fused under the whole body moves that edge too: the body (away from genu and
    # splenium) is at most CC_BODY_MAX_MM thick, counted down from its upper surface.
    for c in cols[(cols >= cols.min() + CC_BODY_CAP[0] * extent) & (cols <= cols.min() + CC_BODY_CAP[1] * extent)]:
        rows = np.nonzero(mask[:, c])[0]
        if rows.size:
            mask[rows.min() + px(CC_BODY_MAX_MM):, c] = False
    components, n = ndimage.label(mask)
    if n > 1:
        mask = components == 1 + int(np.argmax(ndimage.sum(mask, components, range(1, n + 1))))
    filled = ndimage.binary_fill_holes(mask)
    holes, n = ndimage.label(filled & ~mask)  # pinholes only: the ventricle between CC and
    for i in range(1, n + 1):                 # fornix stays out
        if (holes == i).sum() * spacing_mm ** 2 <= 12:
            mask |= holes == i
    return mask
