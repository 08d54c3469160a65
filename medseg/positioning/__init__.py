"""Automatic slice positioning from the corpus callosum: angles, axial plan, measurements, QC."""
