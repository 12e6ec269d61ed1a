"""Peak memory of `Predictor.predict` on large photos: peak RSS per (photo size, task), each case in a
fresh process (ru_maxrss only grows). Random weights; the network input stays ~800 px, so the
cost measured is post-processing at the photo's full size.

Usage: python benchmarks/memory.py [--model fcclip_rn50_coco] [--vocab "car; person; road [stuff]; sky [stuff]"]
       [--sizes 3024x4032 1500x2000] [--tasks panoptic semantic instance all]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch

DEFAULT_VOCAB = "car; person; bicycle; tree [stuff]; road [stuff]; sky [stuff]"


def measure(model: str, vocab: str, height: int, width: int, task: str) -> None:
    """One case in this process: prints seconds and peak RSS in GiB as one line."""
    from vocabseg.models import get_family
    from vocabseg.predictor import Predictor
    from vocabseg.testing import synthetic_photo
    from vocabseg.zoo import get_variant

    variant = get_variant(model)
    family = get_family(variant.family)
    torch.manual_seed(0)
    predictor = Predictor(family.build(variant.config), variant.config, variant.settings, family=family,
                          train_vocabulary=variant.train_vocabulary)
    predictor.set_vocabulary(vocab, progress=False)
    image = synthetic_photo(height, width)
    start = time.perf_counter()
    predictor.predict(image, task=task)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"{height}x{width} ({height * width / 1e6:.1f} MP)  {task:9s} {seconds:7.1f} s  peak RSS {peak:5.2f} GiB",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fcclip_rn50_coco")
    parser.add_argument("--vocab", default=DEFAULT_VOCAB)
    parser.add_argument("--sizes", nargs="+", default=["3024x4032", "1500x2000"], help="HxW photos")
    parser.add_argument("--tasks", nargs="+", default=["panoptic", "semantic", "instance", "all"])
    parser.add_argument("--case", nargs=2, metavar=("HxW", "TASK"), help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args()
    if args.case:
        height, width = map(int, args.case[0].split("x"))
        measure(args.model, args.vocab, height, width, args.case[1])
        return
    print(f"{args.model}, vocabulary of {len(args.vocab.split(';'))} classes, {torch.get_num_threads()} threads")
    for size in args.sizes:
        for task in args.tasks:
            subprocess.run([sys.executable, __file__, "--model", args.model, "--vocab", args.vocab,
                            "--case", size, task], check=True)


if __name__ == "__main__":
    main()
