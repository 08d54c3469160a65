"""Screenshots of a run's review pages (README figures) and the pages' sizes.

    python pipelines/review_figures.py RUN_OUTPUT [-o docs/figures]

Rebuilds RUN_OUTPUT/index.html (and any missing view.html) from every study.json, opens the index,
the first positioned 3D volume's view and the first composite's view in headless Chromium, and
writes review_index.png, review_view.png and review_spine.png. Prints each page's size and
drawing time.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

from PIL import Image

from medseg.batch.triage import write_index
from medseg.report.browser import Browser


def _save(png: bytes, path: Path, width: int) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=128).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    studies = [json.loads(p.read_text()) for p in sorted(args.run.glob("*/study.json"))]
    index = write_index(studies, args.run)
    views = sorted(args.run.glob("*/*/view.html"))
    volume = next(v for v in views if json.loads((v.parent / "result.json").read_text()
                                                 if (v.parent / "result.json").exists() else "{}")
                  .get("midsagittal", {}).get("kind") == "volume")
    spine = next(v for v in views if (v.parent / "stitch.json").exists())
    args.output.mkdir(parents=True, exist_ok=True)
    for page in [index, *views]:
        print(f"{page.relative_to(args.run)}: {page.stat().st_size / 1e6:.2f} MB")
    with Browser(1300, 700) as browser:
        for page, name, width in [(index, "review_index.png", 900), (volume, "review_view.png", 900),
                                  (spine, "review_spine.png", 700)]:
            start = time.perf_counter()
            browser.open(page.as_uri(), ready="document.body.dataset.ready === '1'", timeout=120)
            print(f"{name}: drawn in {time.perf_counter() - start:.1f} s (software WebGL)")
            _save(browser.screenshot(), args.output / name, width)


if __name__ == "__main__":
    main()
