"""Cascade-CLIP's fast mode against exact mode on a small Cascade-CLIP trained on synthetic shapes.

Trains the ``cascade_clip_tiny_cpu`` preset (a 64 x 64 ViT; its CLIP stays random, the prompts
and decoders learn; a few minutes on a 2-core CPU), then segments held-out synthetic images
(sliding 64 x 64 windows over 96-pixel images) and a few scikit-image photos in both modes and
prints: semantic-label agreement, mIoU of each mode against the synthetic ground truth, and
each mode's CPU time. Random-weight models say nothing here (their scores are near-ties). The
tiny model's layers are 32 wide: its times are per-op overheads (fast mode's activation
quantisation, bf16 casts), not what int8 saves on ViT-B/16 (``vocabseg bench`` measures that).

Fast mode is ``--precision fast``: int8 linear layers on x86 CPUs, bf16 only where native. Run
it under ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` for
an AVX2-only CPU, or natively.

Usage: python benchmarks/cascade_fast_agreement.py [--iters 400] [--images 16] [--all-seen] [--output DIR]
       python benchmarks/cascade_fast_agreement.py --checkpoint DIR/model_final.pth  (a model trained before)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from ovseg_region_policy import agreement, photos  # benchmarks/ is the script's folder

from vocabseg.cli.train import run_training
from vocabseg.eval.semantic import confusion_matrix, semantic_metrics
from vocabseg.models import get_family
from vocabseg.predictor import Predictor
from vocabseg.train.sources import SyntheticShapes
from vocabseg.train.transforms import VOID_ID

SIZE = 96  # held-out images' side: resized to min_size 96, so 2 x 2 overlapping 64 x 64 windows


def train(iters: int, images: int, output: Path, all_seen: bool) -> torch.nn.Module:
    seen = ["zero_shot.seen_classes=null"] if all_seen else []  # null: every class trained with its labels
    trainer = run_training(["--preset", "cascade_clip_tiny_cpu", f"output={output}", f"solver.max_iter={iters}",
                            f"data.num_images={images}", "solver.checkpoint_period=0",
                            f"solver.log_period={max(1, iters // 5)}", *seen])
    return trainer.model.eval()


def segment(model: torch.nn.Module, images: list[np.ndarray], precision: str, vocabulary) -> tuple[list, float]:
    """(predictions, CPU seconds per image over the process's threads) of ``images`` in one mode."""
    family = get_family("cascade_clip")
    settings = family.default_settings(model.config).override({"min_size": SIZE, "precision": precision})
    predictor = Predictor(model, model.config, settings, family=family)
    predictor.set_vocabulary(vocabulary, progress=False)
    predictor.predict(images[0], task="semantic")  # warm-up: int8 weights are packed on first use
    start = time.process_time()
    predictions = [predictor.predict(image, task="semantic") for image in images]
    seconds = (time.process_time() - start) / torch.get_num_threads() / len(images)
    return predictions, seconds


def miou(predictions: list, examples: list, num_classes: int) -> float:
    """mIoU in percent against the synthetic ground truth (void pixels ignored)."""
    conf = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    for pred, example in zip(predictions, examples):
        semantic = np.full(example.ids.shape, 255, dtype=np.int64)
        for s in example.segments:
            semantic[example.ids == s.id] = s.category
        semantic[example.ids == VOID_ID] = 255
        conf += confusion_matrix(semantic, np.maximum(pred.semantic, 0), num_classes)
    return semantic_metrics(conf)["miou"] * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=16)
    parser.add_argument("--output", default="/tmp/cascade_fast_agreement")
    parser.add_argument("--all-seen", action="store_true", help="train every class with its labels (the preset "
                        "holds the green disc out, zero-shot: a random CLIP cannot find it)")
    parser.add_argument("--checkpoint", help="a model this script trained before (its model_final.pth): no training")
    args = parser.parse_args()
    if args.checkpoint:
        model = Predictor.from_pretrained(args.checkpoint, progress=False).model
    else:
        started = time.perf_counter()
        model = train(args.iters, args.train_images, Path(args.output), args.all_seen)
        print(f"trained {args.iters} iterations in {time.perf_counter() - started:.0f} s")
    source = SyntheticShapes(num_images=args.images, size=SIZE, seed=1234)  # not the training images
    examples = [source[i] for i in range(args.images)]
    vocabulary = source.vocabulary
    results = {mode: segment(model, [e.image for e in examples], mode, vocabulary) for mode in ("fp32", "fast")}
    (exact, exact_s), (fast, fast_s) = results["fp32"], results["fast"]
    print(f"{args.images} held-out {SIZE}x{SIZE} synthetic images")
    print(f"semantic label agreement fast vs exact: {agreement(exact, fast):.3f} %")
    for name, predictions, seconds in (("exact", exact, exact_s), ("fast", fast, fast_s)):
        score = miou(predictions, examples, len(vocabulary))
        print(f"{name:5s}  mIoU {score:5.1f}  {seconds * 1e3:6.1f} ms/image (CPU)")
    pictures = photos()
    (exact, _), (fast, _) = (segment(model, pictures, mode, vocabulary) for mode in ("fp32", "fast"))
    print(f"{len(pictures)} scikit-image photos: semantic label agreement fast vs exact {agreement(exact, fast):.3f} %")


if __name__ == "__main__":
    main()
