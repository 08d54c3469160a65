"""``medseg run``: the batch job over study folders (routing, per-study outputs, reports)."""
