"""Inference cost of a zoo model (any family): seconds per image for each stage, and peak memory.

Random weights unless --weights is given (speed does not depend on the values). Cascade-CLIP:
``--model cascade_clip_vitb16_coco171_inductive --vocab cascade_coco_stuff_171`` (sliding windows
batched by the ``window_batch`` setting, ``--set window_batch=N``).
Usage: python benchmarks/inference.py [--model fcclip_convnext_large_coco] [--height 800 --width 1199]
       [--vocab ade20k_150] [--device cpu] [--repeats 2]
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from vocabseg.cli.common import setting
from vocabseg.models import get_family
from vocabseg.models.cascade_clip.model import window_boxes
from vocabseg.predictor import Predictor
from vocabseg.testing import synthetic_photo
from vocabseg.zoo import get_variant


def timed(label: str, fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"  {label:28s} {time.perf_counter() - start:7.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fcclip_convnext_large_coco")
    parser.add_argument("--weights")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1199)
    parser.add_argument("--vocab", default="ade20k_150")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", dest="settings", action="append", default=[], type=setting, metavar="KEY=VALUE",
                        help="a test-time setting, e.g. window_batch=2 (Cascade-CLIP)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.weights:
        predictor = Predictor.from_pretrained(args.model, weights=args.weights, device=args.device)
    else:
        variant = get_variant(args.model)
        family = get_family(variant.family)
        predictor = Predictor(family.build(variant.config), variant.config, variant.settings, family=family,
                              train_vocabulary=variant.train_vocabulary, device=device)
    predictor.with_settings(dict(args.settings))
    start = time.perf_counter()
    predictor.set_vocabulary(args.vocab)
    print(f"{args.model} ({predictor.family.title}) on {device} ({torch.get_num_threads()} threads), "
          f"{args.height}x{args.width}, vocabulary {args.vocab} ({len(predictor.vocabulary)} classes): "
          f"text classifier {time.perf_counter() - start:.1f} s (cached after the first run)")
    image = synthetic_photo(args.height, args.width)
    for repeat in range(args.repeats):
        print(f"run {repeat + 1}")
        raw = timed("resize + model inference", lambda: predictor.run([image])[0], device)
        if "region_valid" in raw.details:  # OVSeg: crops classified by the CLIP, in batches of region_batch
            print(f"  ({int(raw.details['region_valid'].sum())} region crops through the CLIP, "
                  f"{predictor.settings.family.region_batch} per batch)")
        windows = getattr(predictor.settings.family, "window_batch", None)
        if windows is not None:  # Cascade-CLIP: sliding windows, window_batch per forward pass
            own, (height, width) = predictor.settings.family, raw.input_size
            count = len(window_boxes(height, width, own.window, own.stride))
            print(f"  ({count} windows of {own.window} px over the {height}x{width} resized image, "
                  f"{own.window_batch} per batch)")
        for task in predictor.family.tasks:
            timed(f"{task} post-processing", lambda t=task, r=raw: predictor.postprocess(r, (t,)), device)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


if __name__ == "__main__":
    main()
