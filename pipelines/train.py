"""Train a 2D sagittal network (corpus callosum or brain mask) from a YAML config (resumable).

Usage: python pipelines/train.py -c configs/cc_attention_unet.yaml [--fresh]
       python pipelines/train.py -c configs/skullstrip_attention_unet.yaml
"""

from __future__ import annotations

import argparse
import logging

from medseg.segment.train import load_training_config, train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    best = train(load_training_config(args.config), resume=not args.fresh)
    print(best)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
