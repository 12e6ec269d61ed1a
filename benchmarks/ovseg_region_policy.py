"""OVSeg's fast-mode region policy against exact mode: fewer CLIP crops, how much the answer moves.

Trains the ``ovseg_tiny_cpu`` preset on synthetic shapes (its CLIP stays random), segments
held-out synthetic images exactly and in fast mode, and prints the CLIP crops sent, semantic
label agreement, and PQ / mIoU of each mode against the ground truth; then the same crop
counts and agreement on real photos (scikit-image's samples) with that model. Run it with
``ATEN_CPU_CAPABILITY=avx2`` to see the policy alone (fast mode's float32 recipe), or natively
to include bf16.

Usage: python benchmarks/ovseg_region_policy.py [--iters 300] [--images 16] [--output /tmp/ovseg_policy]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from fast_mode_agreement import scores  # benchmarks/ is the script's folder

from vocabseg.cli.train import run_training
from vocabseg.models import get_family
from vocabseg.predictor import Predictor
from vocabseg.train.sources import SyntheticShapes


def train(iters: int, output: Path) -> torch.nn.Module:
    trainer = run_training(["--preset", "ovseg_tiny_cpu", f"output={output}", f"solver.max_iter={iters}",
                            f"solver.steps=[{int(iters * 0.8)},{int(iters * 0.93)}]", "data.num_images=16",
                            "solver.checkpoint_period=0", f"solver.log_period={max(1, iters // 5)}"])
    return trainer.model.eval()


def segment(model: torch.nn.Module, images: list[np.ndarray], precision: str, vocabulary,
            size: int) -> tuple[list, int, int]:
    """(predictions, CLIP crops sent, proposal regions) over ``images``."""
    family = get_family("ovseg")
    settings = family.default_settings(model.config).override({"min_size": size, "max_size": 2 * size,
                                                                "precision": precision})
    predictor = Predictor(model, model.config, settings, family=family)
    predictor.set_vocabulary(vocabulary, progress=False)
    predictions, sent, regions = [], 0, 0
    for image in images:
        raw = predictor.run([image])[0]
        sent += int(raw.details["region_sent"].sum())
        regions += int(raw.details["region_valid"].sum())
        predictions.append(predictor.postprocess(raw, ("panoptic", "semantic")))
    return predictions, sent, regions


def agreement(exact: list, fast: list) -> float:
    same = sum(int((e.semantic == f.semantic).sum()) for e, f in zip(exact, fast))
    return 100 * same / sum(e.semantic.size for e in exact)


def photos() -> list[np.ndarray]:
    import skimage.data

    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
    return [np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]) for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--output", default="/tmp/ovseg_policy")
    args = parser.parse_args()
    model = train(args.iters, Path(args.output))
    source = SyntheticShapes(num_images=args.images, size=128, seed=1234)  # not the training images
    examples = [source[i] for i in range(args.images)]
    vocabulary = source.vocabulary
    things = [c.is_thing for c in vocabulary.classes]
    exact, exact_sent, regions = segment(model, [e.image for e in examples], "fp32", vocabulary, 128)
    fast, fast_sent, _ = segment(model, [e.image for e in examples], "fast", vocabulary, 128)
    print(f"{args.images} held-out 128x128 synthetic images, model trained {args.iters} iterations")
    print(f"CLIP crops: exact {exact_sent}, fast {fast_sent} ({exact_sent / max(fast_sent, 1):.2f}x fewer) "
          f"of {regions} proposal regions")
    print(f"semantic label agreement fast vs exact: {agreement(exact, fast):.3f} %")
    for name, predictions in (("exact", exact), ("fast", fast)):
        pq, miou = scores(predictions, examples, len(vocabulary), things)
        print(f"{name:5s}  PQ {pq:5.1f}  mIoU {miou:5.1f}")
    real = photos()
    exact, exact_sent, regions = segment(model, real, "fp32", vocabulary, 256)
    fast, fast_sent, _ = segment(model, real, "fast", vocabulary, 256)
    print(f"{len(real)} scikit-image photos at 256 px: CLIP crops exact {exact_sent}, fast {fast_sent} "
          f"({exact_sent / max(fast_sent, 1):.2f}x fewer); semantic label agreement {agreement(exact, fast):.3f} %")


if __name__ == "__main__":
    main()
