"""The adult range of mid-sagittal CC measurements: the plausibility gate of
:func:`medseg.positioning.morphometry.plausibility_problems` and the batch's triage flags."""

# Adult mid-sagittal CC, with margins (FreeSurfer labels of adults cleaned to the CC alone:
# 570-860 mm2, mean thickness 5-7.5 mm including the partial-volume rim; published adult means
# about 600-750 mm2 with SD about 100). An over-segmentation that takes in the fornix, septum
# or ventricle CSF gives larger areas and a thick body.
ADULT_AREA_MM2 = (300.0, 1200.0)
ADULT_MEAN_THICKNESS_MM = (2.5, 10.0)
# Thickness profile: genu (thickest point of the first fifth) and splenium (of the last fifth) are
# both at least the body's median thickness, and the thicker of them END_TO_BODY times it
# (adults: about 1.3-2; a fornix fused under the body makes the body as thick as the ends).
BODY_SPAN, END_SPAN, END_TO_BODY = (0.35, 0.65), 0.2, 1.2
