"""How much a cheaper N4 moves the plan of a 35-slice localizer, against N4 fitted on every slice.

A 35-slice sagittal localizer (256 x 256, 4 mm) of the ICBM152 head (nilearn) is planned at
pitches -12..+12 deg with the fast N4 profile fitted on all slices ("full") and with each choice
given (``slab``: the fit on the slices the CC search reads only; ``off``: no N4, the pipeline's
default for a localizer without skull stripping; ``levels=N,iterations=M``). Printed: the final angle
of each, the difference to "full", and the N4 CPU seconds. The 5-slice rotated localizers of
``evaluate_rotated_localizers.py`` lie wholly inside the slab, so this script is the one that
measures the slab.

Usage: python pipelines/evaluate_localizer_n4.py [--choices slab off] [--pitches -12 -6 0 8 12]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys

from medseg.demo import scan_localizer
from medseg.examples import icbm152_head
from medseg.positioning.pipeline import position_volume
from medseg.segment.infer import CCSegmenter

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from evaluate_rotated_localizers import n4_choice  # noqa: E402


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plan(volume, segmenter, choice: str) -> tuple[float, float]:
    """(final angle, CPU seconds of the whole positioning) with one N4 choice."""
    cpu = _cpu()
    result = position_volume(volume, segmenter, **n4_choice(choice))
    return result.localization.final.angle_deg, _cpu() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choices", nargs="+", default=["slab", "off"])
    parser.add_argument("--pitches", nargs="+", type=float, default=[-12.0, -6.0, 0.0, 8.0, 12.0])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    head = icbm152_head()
    if head is None:
        raise SystemExit("pip install nilearn (the ICBM152 head) to run this evaluation")
    segmenter = CCSegmenter()
    worst = {c: 0.0 for c in args.choices}
    for pitch in args.pitches:
        volume = scan_localizer(head, slices=35, pitch_deg=pitch)
        reference, cpu = plan(volume, segmenter, "full")
        line = [f"pitch {pitch:+5.1f}: full {reference:+7.2f} ({cpu:.2f} CPU-s)"]
        for choice in args.choices:
            angle, cpu = plan(volume, segmenter, choice)
            worst[choice] = max(worst[choice], abs(angle - reference))
            line.append(f"{choice} {angle - reference:+.3f} ({cpu:.2f} CPU-s)")
        print("; ".join(line), flush=True)
    for choice, value in worst.items():
        print(f"{choice}: worst |angle - full| {value:.3f} deg over {len(args.pitches)} pitches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
