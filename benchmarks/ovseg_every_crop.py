"""`vocabseg bench` on an OVSeg checkpoint with fast mode's region policy sending every crop.

Synthetic or random weights make the policy send almost no crop (every proposal is sure of "no
object"), so fast mode's time there leaves out the CLIP pass that dominates OVSeg. With the policy
off, fast differs from exact only in its arithmetic (int8 or bf16 crop pass, fused attention,
last-layer heads): the worst case for fast mode's speed, with a real number of crops.

Usage: python benchmarks/ovseg_every_crop.py CHECKPOINT [vocabseg bench options, e.g. --clock cpu]
"""
from __future__ import annotations

import functools
import sys

from vocabseg.cli import main
from vocabseg.models.ovseg import model as ovseg_model
from vocabseg.models.ovseg.region_policy import plan_regions

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python benchmarks/ovseg_every_crop.py CHECKPOINT [vocabseg bench options]")
    # thresholds above any probability and IoU: every proposal with a mask sends its own crop
    ovseg_model.plan_regions = functools.partial(plan_regions, void_threshold=2.0, iou_threshold=2.0)
    defaults = ["--size", "512x512", "--vocab", "ade20k_150", "--modes", "exact,fast", "--tasks", "semantic"]
    sys.exit(main(["bench", "--checkpoint", sys.argv[1], *defaults, *sys.argv[2:]]))
