"""OVSeg's fast-mode region policy against exact mode: fewer CLIP crops, how much the answer moves.

Trains the ``ovseg_tiny_cpu`` preset on synthetic shapes (its CLIP stays random), segments
held-out synthetic images exactly and in fast mode, and prints the CLIP crops sent, semantic
label agreement, and PQ / mIoU of each mode against the ground truth; then the same crop
counts and agreement on real photos (scikit-image's samples) with that model. Each mode's time
is the median over ``--repeats`` passes (after a warm-up batch) of run + post-processing, images
in batches of ``--batch`` (fast mode sends a batch's crops through the CLIP together), by the
process's CPU seconds per thread (``vocabseg bench --clock cpu``: fair on a shared machine). Run
it with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` to see
the policy alone (fast mode's float32 recipe), or natively to include bf16; ``--checkpoint`` reuses
the model a first run saved (``OUTPUT/model_final.pth``) instead of training again;
``--void-threshold`` / ``--iou-threshold`` try other region-policy thresholds (the defaults:
``vocabseg.models.ovseg.region_policy``'s constants).

Usage: python benchmarks/ovseg_region_policy.py [--iters 300] [--images 16] [--batch 4] [--repeats 3]
       [--threads N] [--output /tmp/ovseg_policy] [--checkpoint /tmp/ovseg_policy/model_final.pth]
       [--void-threshold 0.9] [--iou-threshold 0.7]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from fast_mode_agreement import scores  # benchmarks/ is the script's folder

from vocabseg.bench import cpu_clock
from vocabseg.checkpoints import load_model
from vocabseg.cli.train import run_training
from vocabseg.models import get_family
from vocabseg.models.ovseg import region_policy
from vocabseg.precision import choose_recipe
from vocabseg.predictor import Prediction, Predictor, RawOutput
from vocabseg.train.sources import SyntheticShapes


class Segmented(NamedTuple):
    predictions: list[Prediction]
    sent: int  # CLIP crops
    regions: int  # proposals with a region
    seconds: float  # median pass over the images (CPU seconds per thread)


def train(iters: int, output: Path) -> torch.nn.Module:
    trainer = run_training(["--preset", "ovseg_tiny_cpu", f"output={output}", f"solver.max_iter={iters}",
                            f"solver.steps=[{int(iters * 0.8)},{int(iters * 0.93)}]", "data.num_images=16",
                            "solver.checkpoint_period=0", f"solver.log_period={max(1, iters // 5)}"])
    return trainer.model.eval()


def segment(model: torch.nn.Module, images: list[np.ndarray], precision: str, vocabulary, size: int,
            batch: int, repeats: int) -> Segmented:
    """Predictions, CLIP crops sent, proposal regions and the median seconds of a pass over ``images``."""
    family = get_family("ovseg")
    settings = family.default_settings(model.config).override({"min_size": size, "max_size": 2 * size,
                                                                "precision": precision})
    predictor = Predictor(model, model.config, settings, family=family)
    predictor.set_vocabulary(vocabulary, progress=False)
    batches = [images[s:s + batch] for s in range(0, len(images), batch)]
    _predict(predictor, batches[0])  # warm-up: first-call costs (the bf16 text tower, allocations)
    times = []
    for _ in range(repeats):
        start = cpu_clock()
        results = [r for b in batches for r in _predict(predictor, b)]
        times.append(cpu_clock() - start)
    sent = sum(int(raw.details["region_sent"].sum()) for raw, _ in results)
    regions = sum(int(raw.details["region_valid"].sum()) for raw, _ in results)
    return Segmented([p for _, p in results], sent, regions, statistics.median(times))


def _predict(predictor: Predictor, images: list[np.ndarray]) -> list[tuple[RawOutput, Prediction]]:
    return [(raw, predictor.postprocess(raw, ("panoptic", "semantic"))) for raw in predictor.run(images)]


def agreement(exact: list, fast: list) -> float:
    same = sum(int((e.semantic == f.semantic).sum()) for e, f in zip(exact, fast))
    return 100 * same / sum(e.semantic.size for e in exact)


def photos() -> list[np.ndarray]:
    import skimage.data

    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
    return [np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]) for name in names]


def compare(model: torch.nn.Module, images: list[np.ndarray], vocabulary, size: int,
            args: argparse.Namespace) -> tuple[Segmented, Segmented]:
    """Exact and fast mode on ``images``; prints crops, label agreement and times."""
    exact = segment(model, images, "fp32", vocabulary, size, args.batch, args.repeats)
    fast = segment(model, images, "fast", vocabulary, size, args.batch, args.repeats)
    print(f"CLIP crops: exact {exact.sent}, fast {fast.sent} ({exact.sent / max(fast.sent, 1):.2f}x fewer) "
          f"of {exact.regions} proposal regions")
    print(f"semantic label agreement fast vs exact: {agreement(exact.predictions, fast.predictions):.3f} %")
    ratio = fast.seconds / exact.seconds
    print(f"time per pass (CPU s / thread, {torch.get_num_threads()} threads, median of {args.repeats}, "
          f"batches of {args.batch}): exact {exact.seconds:.2f} s, fast {fast.seconds:.2f} s ({ratio:.2f}x)")
    return exact, fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="/tmp/ovseg_policy")
    parser.add_argument("--checkpoint", help="a model this benchmark trained before (skips training)")
    parser.add_argument("--threads", type=int, help="intra-op threads (1: no time spent waiting for a busy core)")
    parser.add_argument("--void-threshold", type=float, default=region_policy.VOID_THRESHOLD,
                        help="fast mode: proposals at least this void send no crop")
    parser.add_argument("--iou-threshold", type=float, default=region_policy.IOU_THRESHOLD,
                        help="fast mode: masks overlapping this much share one crop")
    args = parser.parse_args()
    region_policy.VOID_THRESHOLD, region_policy.IOU_THRESHOLD = args.void_threshold, args.iou_threshold
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint).model.eval() if args.checkpoint else train(args.iters, Path(args.output))
    print(f"fast mode: {choose_recipe('fast', torch.device('cpu')).describe()}; region policy: void >= "
          f"{args.void_threshold} sends no crop, IoU >= {args.iou_threshold} shares one")
    source = SyntheticShapes(num_images=args.images, size=128, seed=1234)  # not the training images
    examples = [source[i] for i in range(args.images)]
    vocabulary = source.vocabulary
    things = [c.is_thing for c in vocabulary.classes]
    print(f"{args.images} held-out 128x128 synthetic images, model "
          f"{args.checkpoint or f'trained {args.iters} iterations'}")
    results = compare(model, [e.image for e in examples], vocabulary, 128, args)
    for name, result in zip(("exact", "fast"), results):
        pq, miou = scores(result.predictions, examples, len(vocabulary), things)
        print(f"{name:5s}  PQ {pq:5.1f}  mIoU {miou:5.1f}")
    print("6 scikit-image photos at 256 px:")
    compare(model, photos(), vocabulary, 256, args)


if __name__ == "__main__":
    main()
